"""`diffrepro mdm train` / `mdm evaluate` end to end on tiny data (smoke params), and their bad-input errors."""
import json
import math

import numpy as np
import pytest
import yaml

from diffrepro.cli import main
from diffrepro.config import REPO_ROOT


@pytest.fixture
def workspace(tmp_path):
    rng = np.random.default_rng(0)
    angles = rng.integers(0, 8, 400) * math.pi / 4
    x = (np.stack([np.cos(angles), np.sin(angles)], 1) + 0.05 * rng.standard_normal((400, 2))).astype(np.float32)
    np.savez(tmp_path / "toy.npz", x_train=x[:300], y_train=np.zeros(300), x_test=x[300:], y_test=np.zeros(100))
    digits = (rng.integers(0, 17, (40, 1, 8, 8)) / 16 * 2 - 1).astype(np.float32)
    np.savez(tmp_path / "digits.npz", x_train=digits[:30], y_train=np.zeros(30), x_test=digits[30:],
             y_test=np.zeros(10))
    cfg = yaml.safe_load((REPO_ROOT / "params" / "smoke.yaml").read_text())
    cfg["mdm"]["studies"]["toy2d"].update(diffusions=["vp", "cld", "learned2"], seeds=[0, 1])
    cfg["mdm"]["studies"]["digits"] = {
        "diffusions": ["vp", "learned2"], "seeds": [0],
        "network": {"arch": "unet", "unet": {"channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1}},
        "train": {"steps": 3, "batch_size": 8, "lr": 1e-3},
        "eval": {"n_test": 10, "draws": 1, "batch_size": 10, "n_samples": 16, "sample_steps": 3}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(cfg))
    return tmp_path


def train(ws, dataset, diffusion, seed, data):
    out = ws / "m" / dataset / diffusion / f"seed{seed}" / "model.pt"
    code = main(["mdm", "train", "--params", str(ws / "p.yaml"), "--dataset", dataset, "--diffusion", diffusion,
                 "--seed", str(seed), "--data", str(ws / data), "--out", str(out), "--threads", "1"])
    return code, out


def refstats(ws, dataset, data):
    """The dataset's reference statistics, as the workflow makes them (a small feature classifier for digits)."""
    out, extra = ws / "refstats" / f"{dataset}.pt", []
    if dataset == "digits":
        clf = ws / "clf" / "classifier.pt"
        assert main(["train-classifier", "--params", str(ws / "p.yaml"), "--dataset", dataset, "--data", str(ws / data),
                     "--out", str(clf), "--threads", "1"]) == 0
        extra = ["--classifier", str(clf)]
    assert main(["reference-stats", "--params", str(ws / "p.yaml"), "--dataset", dataset, "--data", str(ws / data),
                 *extra, "--out", str(out)]) == 0
    return ["--refstats", str(out), *extra]


def test_train_and_evaluate_write_section(workspace):
    models = []
    for diffusion in ["vp", "cld", "learned2"]:
        for seed in [0, 1]:
            code, out = train(workspace, "toy2d", diffusion, seed, "toy.npz")
            assert code == 0 and out.exists() and out.with_name("model.pt.prov.json").exists()
            models.append(str(out))
    out_dir = workspace / "eval"
    assert main(["mdm", "evaluate", "--params", str(workspace / "p.yaml"), "--dataset", "toy2d", "--models", *models,
                 "--data", str(workspace / "toy.npz"), *refstats(workspace, "toy2d", "toy.npz"),
                 "--out-dir", str(out_dir), "--threads", "1"]) == 0
    rows = json.loads((out_dir / "evaluation.json").read_text())
    assert [(r["diffusion"], r["seed"]) for r in rows] == [(d, s) for d in ["vp", "cld", "learned2"] for s in [0, 1]]
    assert all(math.isfinite(r["value_no_offset"]) for r in rows)
    section = json.loads((out_dir / "section.json").read_text())
    assert section["paper"] == "MDM" and 60 <= section["order"] < 80
    table = section["tables"][0]
    assert [row[0] for row in table["rows"]] == ["VP", "CLD", "Learned-2"]
    vp = [r["value_no_offset"] for r in rows if r["diffusion"] == "vp"]
    assert table["rows"][0][3] == pytest.approx(np.mean(vp), abs=1e-4)
    assert table["rows"][0][4] == pytest.approx(np.std(vp, ddof=1), abs=1e-4)
    assert any("Learned-2 ≤ VP" in t for t in section["text"])
    # samples scored by the sweep's scorer: the vector-data columns, mean ± std over seeds
    scored = next(t for t in section["tables"] if t["id"] == "mdm_toy2d_samples")
    assert scored["columns"] == ["diffusion", "swd", "std", "mmd", "std", "energy", "std"]
    assert all(r["sample_metrics"]["swd"] > 0 and r["n_samples"] == 64 for r in rows)
    cld = [r["sample_metrics"]["energy"] for r in rows if r["diffusion"] == "cld"]
    assert scored["rows"][1][5] == pytest.approx(np.mean(cld), abs=1e-5)
    samples = np.load(out_dir / "samples.npz")
    assert samples["vp__seed0"].shape == (64, 2)
    assert (out_dir / "samples.png").exists()


def test_digits_bits_per_dim_with_unet(workspace):
    models = [str(train(workspace, "digits", d, 0, "digits.npz")[1]) for d in ["vp", "learned2"]]
    out_dir = workspace / "eval_digits"
    assert main(["mdm", "evaluate", "--params", str(workspace / "p.yaml"), "--dataset", "digits", "--models", *models,
                 "--data", str(workspace / "digits.npz"), *refstats(workspace, "digits", "digits.npz"),
                 "--out-dir", str(out_dir), "--threads", "1"]) == 0
    rows = json.loads((out_dir / "evaluation.json").read_text())
    assert all(r["metric"] == "bpd" and 0 < r["value_no_offset"] < 100 for r in rows)
    # images are scored in the run's feature space (the digits classifier), like the sweep's samples
    assert all(r["sample_metrics"]["fid_digits_classifier"] > 0 and "kid_digits_classifier" in r["sample_metrics"]
               for r in rows)
    section = json.loads((out_dir / "section.json").read_text())
    assert any(t["source"] == "paper" for t in section["tables"])
    assert np.load(out_dir / "samples.npz")["vp__seed0"].shape == (16, 1, 8, 8)


@pytest.mark.parametrize("args,message", [
    (["--dataset", "toy2d", "--diffusion", "alda", "--seed", "0"], "not in mdm.studies.toy2d.diffusions"),
    (["--dataset", "toy2d", "--diffusion", "vp", "--seed", "7"], "not in mdm.studies.toy2d.seeds"),
    (["--dataset", "gmm", "--diffusion", "vp", "--seed", "0"], "mdm.studies has no entry 'gmm'"),
])
def test_bad_input_names_the_key(workspace, capsys, args, message):
    code = main(["mdm", "train", "--params", str(workspace / "p.yaml"), *args, "--data", str(workspace / "toy.npz"),
                 "--out", str(workspace / "x" / "model.pt")])
    assert code == 2 and message in capsys.readouterr().err
    assert not (workspace / "x" / "model.pt").exists()


def test_evaluate_refuses_refstats_of_another_dataset(workspace, capsys):
    code, model = train(workspace, "toy2d", "vp", 0, "toy.npz")
    wrong = refstats(workspace, "digits", "digits.npz")
    code = main(["mdm", "evaluate", "--params", str(workspace / "p.yaml"), "--dataset", "toy2d", "--models", str(model),
                 "--data", str(workspace / "toy.npz"), *wrong, "--out-dir", str(workspace / "bad"), "--threads", "1"])
    assert code == 2 and "reference statistics of 'digits'" in capsys.readouterr().err
    assert not (workspace / "bad").exists()


def test_resized_images_are_refused(workspace, capsys):
    np.savez(workspace / "bad.npz", x_train=np.full((4, 1, 8, 8), 0.123, np.float32), x_test=np.zeros((2, 1, 8, 8)))
    code, out = train(workspace, "digits", "vp", 0, "bad.npz")
    assert code == 2 and "17-level grid" in capsys.readouterr().err and not out.exists()


def test_bench_mdm_prints_every_diffusion_and_a_verdict(workspace, capsys):
    """`diffrepro bench mdm` runs on the study's networks and prints one row per diffusion plus the goal verdict
    (timings are printed, never asserted)."""
    assert main(["bench", "mdm", "--params", str(workspace / "p.yaml"), "--dataset", "toy2d", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("toy2d")]
    assert [r[1] for r in rows] == ["vp", "cld", "learned2"]
    assert all(r[5].endswith("%") and r[7].endswith("%") for r in rows)
    assert "goal met on every row" in out or "goal missed on" in out

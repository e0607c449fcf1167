"""Real data: the real Fashion-MNIST files through torchvision's own class (checksums, class counts, known labels), a
truncated or altered copy failing with the file's name and no outputs, installation into an empty cache, and the
reduced real-data pipeline (params/real_smoke.yaml) end to end.

The files come from the Debian package dataset-fashion-mnist (`diffrepro assets datasets`, run by `make test`); a
test skips only when they are absent and this process cannot install them, saying why."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffrepro import data
from diffrepro.data import assets, images
from diffrepro.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fashion_root() -> Path:
    """`<cache>/datasets` holding the verified Fashion-MNIST files, installing them when missing."""
    try:
        assets.ensure("fashion_mnist")
    except UserError as exc:
        pytest.skip(f"real Fashion-MNIST files absent and this process cannot install them: {exc}")
    return assets.datasets_root()


def test_real_fashion_mnist_counts_and_first_labels(fashion_root):
    arrays, meta = data.prepare("fashion", {"kind": "fashion_mnist", "root": str(fashion_root)}, seed=0)
    assert arrays["x_train"].shape == (60000, 1, 28, 28) and arrays["x_test"].shape == (10000, 1, 28, 28)
    assert arrays["x_train"].dtype == np.float32
    assert arrays["x_train"].min() == -1.0 and arrays["x_train"].max() == 1.0
    assert np.bincount(arrays["y_train"]).tolist() == [6000] * 10
    assert np.bincount(arrays["y_test"]).tolist() == [1000] * 10
    assert arrays["y_train"][:8].tolist() == [9, 0, 0, 3, 0, 2, 7, 2]
    assert meta["num_classes"] == 10 and meta["source"] == "torchvision.datasets.FashionMNIST"
    assert meta["raw_files"]["md5"] == images.RAW_FILES["fashion_mnist"]


def _copy_raw(src_root: Path, dest_root: Path) -> Path:
    """A private copy of the raw folder (symlinks: only the file a test alters is a real copy)."""
    src, dest = images.raw_dir("fashion_mnist", src_root), images.raw_dir("fashion_mnist", dest_root)
    dest.mkdir(parents=True)
    for f in src.iterdir():
        (dest / f.name).symlink_to(f)
    return dest


def test_truncated_copy_fails_naming_the_file_without_outputs(fashion_root, tmp_path):
    raw = _copy_raw(fashion_root, tmp_path / "root")
    victim = raw / "train-images-idx3-ubyte"
    original = victim.resolve()
    victim.unlink()
    victim.write_bytes(original.read_bytes()[:1_000_000])  # truncated mid-image
    cfg = yaml.safe_load((ROOT / "params" / "real_smoke.yaml").read_text())
    cfg["datasets"]["fashion"]["root"] = str(tmp_path / "root")
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "diffrepro", "prepare", "--params", str(params), "--dataset",
                           "fashion", "--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert str(victim) in proc.stderr and "truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]  # no partial outputs


def test_altered_or_missing_file_is_a_user_error_naming_it(fashion_root, tmp_path):
    raw = _copy_raw(fashion_root, tmp_path)
    labels = raw / "t10k-labels-idx1-ubyte"
    content = bytearray(labels.resolve().read_bytes())
    content[100] ^= 1  # same size, one label changed
    labels.unlink()
    labels.write_bytes(bytes(content))
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.*MD5"):
        data.prepare("fashion", {"kind": "fashion_mnist", "root": str(tmp_path)}, seed=0)
    (raw / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(UserError, match="missing file .*train-labels-idx1-ubyte"):
        data.prepare("fashion", {"kind": "fashion_mnist", "root": str(tmp_path)}, seed=0)


def test_assets_step_installs_into_an_empty_cache(fashion_root, tmp_path):
    env = {**os.environ, "DIFFREPRO_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "diffrepro", "assets", "datasets", "--only", "fashion_mnist"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    raw = tmp_path / "cache" / "datasets" / "FashionMNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(images.RAW_FILES["fashion_mnist"])  # no temp files
    assert images.verify_raw_files("fashion_mnist", tmp_path / "cache" / "datasets")
    again = subprocess.run([sys.executable, "-m", "diffrepro", "assets", "datasets", "--only", "fashion_mnist"],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "present" in again.stdout


def test_root_expands_home_and_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("DIFFREPRO_TEST_ROOT", str(tmp_path))
    assert images.resolve_root("mnist", "$DIFFREPRO_TEST_ROOT/x") == tmp_path / "x"
    assert images.resolve_root("mnist", "~/d") == Path.home() / "d"
    monkeypatch.setenv("DIFFREPRO_CACHE", str(tmp_path / "c"))
    assert images.resolve_root("fashion_mnist", None) == tmp_path / "c" / "datasets"
    assert images.resolve_root("cifar10", None) is None


def test_trend_verdicts_and_high_order_rows():
    from diffrepro.reports import realdata

    assert realdata.trend([30.0, 20.0, 10.0]) == "falls"
    assert realdata.trend([30.0, 35.0, 10.0]) == "falls overall"
    assert realdata.trend([10.0, 20.0, 30.0]) == "does not fall"
    assert realdata.is_high_order("heun") and realdata.is_high_order("dpmpp2m") and realdata.is_high_order("ni_tuned")
    assert not realdata.is_high_order("euler") and not realdata.is_high_order("ddim")
    cells = [{"sampler": s, "grid": "edm", "nfe": n, "fid": f}
             for s, fids in {"heun": [9.0, 5.0, 2.0], "ddim": [8.0, 6.0, 4.0], "unipc": [3.0, 4.0, 5.0]}.items()
             for n, f in zip([4, 8, 16], fids)]
    nfes, rows = realdata.nfe_rows(cells)
    assert nfes == [4, 8, 16]
    assert rows == [["heun", "edm", 9.0, 5.0, 2.0, "falls"], ["unipc", "edm", 3.0, 4.0, 5.0, "does not fall"]]
    assert "1 of 2" in realdata.trend_summary(rows) and "`unipc` on `edm`" in realdata.trend_summary(rows)
    _, rows = realdata.nfe_rows(cells, reference=5.5)  # unipc rises away from 3 but towards the converged 5.5
    assert rows[1][-2:] == ["does not fall", "falls"] and rows[0][-2:] == ["falls", "does not fall"]


def test_real_section_labels_detector_samples_and_split():
    from diffrepro.reports import realdata
    from diffrepro.reports.sections import check_section

    space = {"name": "inception_ts", "extractor": "inception-2015-12-05", "dim": 2048, "n_samples": 300,
             "n_reference": 10000, "anchors": {"n": 300, "train": {"fid": 5.0, "kid": 0.001},
                                               "noise": {"fid": 400.0, "kid": 0.5}},
             "cells": {"m": [{"sampler": "heun", "grid": "logsnr", "nfe": n, "fid": f} for n, f in [(4, 80.0), (8, 40.0)]]}}
    sec = realdata.build_section(dataset="fashion", kind="fashion_mnist", models=["m"],
                                 split={"train": 60000, "test": 10000}, spaces=[space], config_label="p.yaml",
                                 scale="default")
    check_section(sec, "section.json", {})
    text = " ".join(sec["text"])
    assert "Fashion-MNIST" in text and "test split" in text and "Inception" in text and "80× higher" in text
    fid_table = sec["tables"][1]
    assert "300 generated samples" in fid_table["caption"] and "10000-image test split" in fid_table["caption"]
    assert fid_table["rows"] == [["heun", "logsnr", 80.0, 40.0, "falls"]]


@pytest.mark.slow
def test_real_smoke_pipeline_end_to_end(fashion_root, tmp_path):
    """Real files → train a few hundred steps → a few sampler cells → real-Inception FID (the TorchScript detector)
    against the real test split, our classifier's space beside it → report."""
    import json

    import polars as pl
    from conftest import copy_worktree, run_snakemake

    from diffrepro.metrics import inception

    if inception.problem(inception.default_path()):
        pytest.skip(f"TorchScript Inception detector absent ({inception.problem(inception.default_path())}); "
                    "`make assets-inception` fetches it")
    ws = copy_worktree(ROOT, tmp_path / "repo")
    cfg = yaml.safe_load((ws / "params" / "real_smoke.yaml").read_text())
    assert cfg["metrics"]["feature_extractor"]["fashion"] == "inception_ts"
    r = run_snakemake(ws, "--configfile", "params/real_smoke.yaml", timeout=1200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]

    meta = json.loads((ws / "results/data/fashion/data.json").read_text())
    assert meta["source"] == "torchvision.datasets.FashionMNIST" and meta["raw_files"]["md5"]
    df = pl.read_parquet(ws / "results/tables/metrics.parquet")
    fid = [c for c in df.columns if c.startswith("fid_") and c != "fid_protocol"]  # fid_protocol: the row's label
    assert len(fid) == 1 and df.height == len(cfg["sampling"]["samplers"]) * len(cfg["sampling"]["nfe"])
    assert df[fid[0]].is_finite().all() and (df[fid[0]] > 0).all()
    for sampler in cfg["sampling"]["samplers"]:  # the solvers converge to the PF-ODE reference as NFE grows
        rmse = df.filter(pl.col("sampler") == sampler).sort("nfe")["traj_rmse"].to_list()
        assert rmse[-1] < rmse[0], (sampler, rmse)
    spaces = {s["name"]: s for s in json.loads((ws / "results/real/fashion/anchors.json").read_text())}
    assert sorted(spaces) == ["fashion_classifier", "inception_ts"]  # the sweep's space, then our classifier's
    for name, space in spaces.items():  # real train images score far closer to the test split than noise does
        assert space["n_reference"] == cfg["datasets"]["fashion"]["n_test"], name
        assert space["anchors"]["noise"]["fid"] > 3 * space["anchors"]["train"]["fid"], (name, space["anchors"])
    print("anchors:", {n: (s["anchors"]["train"]["fid"], s["anchors"]["noise"]["fid"]) for n, s in spaces.items()})
    report = (ws / "reports/report.md").read_text()
    assert "Real data: Fashion-MNIST FID against the real test split" in report
    assert f"{cfg['sampling']['n_samples']} generated samples per cell" in report and "test split" in report

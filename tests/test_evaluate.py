"""The train-classifier → reference-stats → evaluate steps on params/smoke.yaml, with fake sample files in the
format `diffrepro sample` writes (S.npz cells `GRID/nfeN/seedK`, S.json manifest, _reference.npz `seedK`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from diffrepro.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "smoke.yaml"


def cli(*argv) -> int:
    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Prepared digits + toy2d, the digits classifier and both reference statistics (smoke params)."""
    w = tmp_path_factory.mktemp("eval")
    for d in ("digits", "toy2d"):
        assert cli("prepare", "--params", SMOKE, "--dataset", d, "--out-dir", w / "data" / d) == 0
    clf = w / "classifiers" / "digits" / "classifier.pt"
    assert cli("train-classifier", "--params", SMOKE, "--dataset", "digits", "--data", w / "data/digits/data.npz",
               "--out", clf, "--threads", 1) == 0
    assert cli("reference-stats", "--params", SMOKE, "--dataset", "digits", "--data", w / "data/digits/data.npz",
               "--classifier", clf, "--out", w / "refstats/digits.pt") == 0
    assert cli("reference-stats", "--params", SMOKE, "--dataset", "toy2d", "--data", w / "data/toy2d/data.npz",
               "--out", w / "refstats/toy2d.pt") == 0
    return w


def write_fake_samples(folder: Path, model: str, x: np.ndarray, n: int, noise_levels=(0.0, 0.3, 1.0)):
    """Cells `logsnr/nfe{N}/seed0`: the reference plus noise that shrinks with NFE (noise 0 ↔ the reference)."""
    rng = np.random.default_rng(0)
    ref = x[:n].astype(np.float32)
    arrays, cells = {}, []
    for nfe, level in zip((50, 10, 4), noise_levels):
        key = f"logsnr/nfe{nfe}/seed0"
        arrays[key] = np.clip(ref + level * rng.standard_normal(ref.shape), -1, 1).astype(np.float32) \
            if ref.ndim == 4 else (ref + level * rng.standard_normal(ref.shape)).astype(np.float32)
        cells.append({"key": key, "grid": "logsnr", "nfe": nfe, "nfe_measured": nfe + 1, "seed": 0, "wall_s": 0.5,
                      "t_grid": [1.0, 0.5, 0.0]})
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "ddim.npz", **arrays)
    (folder / "ddim.json").write_text(json.dumps({"model": model, "sampler": "ddim", "cells": cells}))
    np.savez(folder / "_reference.npz", seed0=ref)
    return folder / "ddim.npz", folder / "_reference.npz"


def evaluate(work, model, dataset, samples, reference, out, params=SMOKE):
    return cli("evaluate", "--params", params, "--model", model, "--sampler", "ddim", "--samples", samples,
               "--reference", reference, "--refstats", work / f"refstats/{dataset}.pt", "--out", out, "--threads", 1)


def test_classifier_accuracy_in_provenance(work):
    prov = json.loads((work / "classifiers/digits/classifier.pt.prov.json").read_text())
    assert 0.1 < prov["test_accuracy"] <= 1.0 and prov["dataset"] == "digits"


def test_evaluate_digits_rows(work):
    x = np.load(work / "data/digits/data.npz")["x_train"]
    samples, reference = write_fake_samples(work / "samples/digits", "digits", x, 64)
    out = work / "metrics/digits/ddim.json"
    assert evaluate(work, "digits", "digits", samples, reference, out) == 0
    rows = json.loads(out.read_text())
    assert [r["nfe"] for r in rows] == [50, 10, 4]
    for r in rows:
        assert {"dataset", "model", "sampler", "grid", "nfe", "nfe_measured", "seed", "wall_s", "traj_rmse",
                "fid_digits_classifier", "kid_digits_classifier", "kid_digits_classifier_std"} <= set(r)
        assert r["dataset"] == "digits" and r["nfe_measured"] == r["nfe"] + 1
    assert rows[0]["traj_rmse"] == 0.0 < rows[1]["traj_rmse"] < rows[2]["traj_rmse"]
    assert rows[0]["fid_digits_classifier"] < rows[2]["fid_digits_classifier"]
    prov = json.loads((out.parent / "ddim.json.prov.json").read_text())
    assert prov["kid_subset_size"] == [32] and prov["n_samples"] == [64] and prov["notes"] == []


def test_kid_subset_clamped_with_note(work, capsys):
    x = np.load(work / "data/digits/data.npz")["x_train"]
    samples, reference = write_fake_samples(work / "samples/small", "digits", x, 20)
    out = work / "metrics/small/ddim.json"
    assert evaluate(work, "digits", "digits", samples, reference, out) == 0
    assert all(r["kid_digits_classifier"] is not None for r in json.loads(out.read_text()))
    assert "kid_subset_size = 32" in capsys.readouterr().err
    prov = json.loads((out.parent / "ddim.json.prov.json").read_text())
    assert prov["kid_subset_size"] == [20] and "KID used subsets of 20" in prov["notes"][0]


def test_evaluate_toy2d_vector_metrics(work):
    x = np.load(work / "data/toy2d/data.npz")["x_test"]
    samples, reference = write_fake_samples(work / "samples/toy2d", "toy2d", x, 128)
    out = work / "metrics/toy2d/ddim.json"
    assert evaluate(work, "toy2d", "toy2d", samples, reference, out) == 0
    rows = json.loads(out.read_text())
    for key in ("swd", "mmd", "energy"):
        assert rows[0][key] < rows[2][key], key
    assert rows[0]["traj_rmse"] == 0.0 and not any(k.startswith("fid") for k in rows[0])


def test_bad_inputs_fail_without_output(work, tmp_path, capsys):
    x = np.load(work / "data/digits/data.npz")["x_train"]
    samples, reference = write_fake_samples(tmp_path / "s", "digits", x, 64)
    out = tmp_path / "out.json"
    # refstats of another dataset
    assert evaluate(work, "digits", "toy2d", samples, reference, out) == 2
    assert "toy2d" in capsys.readouterr().err
    # a classifier other than the one the reference statistics were made with
    import torch

    other = tmp_path / "other.pt"
    torch.save({**torch.load(work / "classifiers/digits/classifier.pt"), "note": "retrained"}, other)
    assert cli("evaluate", "--params", SMOKE, "--model", "digits", "--sampler", "ddim", "--samples", samples,
               "--reference", reference, "--refstats", work / "refstats/digits.pt", "--classifier", other,
               "--out", out) == 2
    assert "rerun `diffrepro reference-stats`" in capsys.readouterr().err
    # a manifest cell missing from the npz
    manifest = json.loads(samples.with_suffix(".json").read_text())
    manifest["cells"].append({**manifest["cells"][0], "key": "logsnr/nfe99/seed0"})
    samples.with_suffix(".json").write_text(json.dumps(manifest))
    assert evaluate(work, "digits", "digits", samples, reference, out) == 2
    assert "nfe99" in capsys.readouterr().err
    # a manifest cell without its NFE count
    manifest["cells"] = [{k: v for k, v in manifest["cells"][0].items() if k != "nfe_measured"}]
    samples.with_suffix(".json").write_text(json.dumps(manifest))
    assert evaluate(work, "digits", "digits", samples, reference, out) == 2
    assert "nfe_measured" in capsys.readouterr().err
    # the classifier is vector-only data's wrong tool
    assert cli("train-classifier", "--params", SMOKE, "--dataset", "toy2d", "--data", work / "data/toy2d/data.npz",
               "--out", tmp_path / "c.pt") == 2
    assert not out.exists() and not (tmp_path / "c.pt").exists()
    assert not list(tmp_path.glob(".*.tmp*"))


def test_missing_inception_weights_fail_fast(work, tmp_path, capsys):
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["datasets"]["cifar"] = {"kind": "cifar10", "root": str(tmp_path / "nowhere")}
    cfg["models"]["cifar"] = {**cfg["models"]["digits"], "dataset": "cifar"}
    missing = tmp_path / "weights" / "inception.pth"
    cfg["metrics"]["feature_extractor"]["cifar"] = "inception"
    cfg["metrics"]["inception_weights"] = str(missing)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "m.json"
    # none of the other inputs exist: the weights check comes first
    assert cli("evaluate", "--params", params, "--model", "cifar", "--sampler", "ddim", "--samples", tmp_path / "s.npz",
               "--reference", tmp_path / "r.npz", "--refstats", tmp_path / "cifar.pt", "--out", out) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "weights-inception-2015-12-05-6726825d.pth" in err and not out.exists()
    assert cli("reference-stats", "--params", params, "--dataset", "cifar", "--data", tmp_path / "d.npz",
               "--out", tmp_path / "cifar.pt") == 2
    assert "weights-inception-2015-12-05-6726825d.pth" in capsys.readouterr().err


def test_inception_feature_space_end_to_end(tmp_path, monkeypatch):
    """The Inception branch with a randomly initialised weights file in the right format (never downloaded)."""
    import torch
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    with monkeypatch.context() as patch:  # build the module once without any weights to get a state dict
        patch.setattr(inception, "load_state_dict_from_url", lambda *a, **k: None)
        patch.setattr(inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        torch.manual_seed(0)
        state = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(state, weights)

    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x_train=images, y_train=np.zeros(2, np.int64), x_test=images,
             y_test=np.zeros(2, np.int64))
    cfg = yaml.safe_load(SMOKE.read_text())
    cfg["datasets"]["cifar"] = {"kind": "cifar10", "root": str(tmp_path)}
    cfg["models"]["cifar"] = {**cfg["models"]["digits"], "dataset": "cifar"}
    cfg["metrics"].update(feature_extractor={"cifar": "inception"}, inception_weights=str(weights), isc=True)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg))
    refstats = tmp_path / "refstats" / "cifar.pt"
    assert cli("reference-stats", "--params", params, "--dataset", "cifar", "--data", tmp_path / "data.npz",
               "--out", refstats, "--threads", 1) == 0
    samples, reference = write_fake_samples(tmp_path / "s", "cifar", images, 2, noise_levels=(0.0,))
    out = tmp_path / "m.json"
    assert cli("evaluate", "--params", params, "--model", "cifar", "--sampler", "ddim", "--samples", samples,
               "--reference", reference, "--refstats", refstats, "--out", out, "--threads", 1) == 0
    (row,) = json.loads(out.read_text())
    assert {"fid_inception", "kid_inception", "kid_inception_std", "isc_inception"} <= set(row)
    assert abs(row["fid_inception"]) < 1e-3  # samples = reference images

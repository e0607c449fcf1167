"""Dataset preparation: shapes, ranges, known parameters, determinism (same seed → same sha256), fixed splits, the
offline failure for torchvision datasets (fast, naming the dataset), atomic/corrupt file handling."""
import json
import time
from types import SimpleNamespace

import numpy as np
import pytest

from diffrepro import data, io
from diffrepro.data import images
from diffrepro.errors import UserError


def written_sha(tmp_path, name, spec, seed):
    arrays, _ = data.prepare(name, spec, seed)
    return io.sha256_file(data.write_npz(tmp_path / f"{name}-{seed}-{len(list(tmp_path.iterdir()))}.npz", arrays))


@pytest.mark.parametrize("shape", ["eight_gaussians", "two_moons", "checkerboard"])
def test_toy2d_shapes_and_determinism(tmp_path, shape):
    spec = {"kind": "toy2d", "shape": shape, "n_train": 300, "n_test": 100}
    arrays, meta = data.prepare("toy", spec, seed=3)
    assert arrays["x_train"].shape == (300, 2) and arrays["x_test"].shape == (100, 2)
    assert arrays["x_train"].dtype == np.float32 and (arrays["y_train"] == -1).all()
    assert np.abs(arrays["x_train"]).max() < 4 and arrays["x_train"].std() > 0.5
    assert meta["split"] == {"train": 300, "test": 100} and meta["shape"] == [2]
    assert written_sha(tmp_path, "toy", spec, 3) == written_sha(tmp_path, "toy", spec, 3)
    assert written_sha(tmp_path, "toy", spec, 3) != written_sha(tmp_path, "toy", spec, 4)


def test_checkerboard_is_on_black_squares():
    x, _ = data.synthetic.toy2d(np.random.default_rng(0), 2000, "checkerboard")
    cell = np.floor((x + 2.0) / 1.0).astype(int)
    assert ((cell.sum(axis=1) % 2) == 0).all()


def test_gaussian_known_parameters_match_the_samples():
    spec = {"kind": "gaussian", "dim": 4, "n_train": 40000, "n_test": 10}
    arrays, meta = data.prepare("g", spec, seed=0)
    mean, cov = arrays["gauss_mean"], arrays["gauss_cov"]
    assert mean.shape == (4,) and cov.shape == (4, 4) and np.allclose(cov, cov.T)
    assert np.abs(arrays["x_train"].mean(0) - mean).max() < 0.02
    assert np.abs(np.cov(arrays["x_train"].T) - cov).max() < 0.03
    assert np.allclose(meta["known"]["gauss_mean"], mean)


def test_gaussian_mixture_known_parameters_match_the_samples():
    spec = {"kind": "gaussian_mixture", "dim": 3, "components": 4, "component_std": 0.2, "n_train": 20000,
            "n_test": 50}
    arrays, _ = data.prepare("gmm", spec, seed=1)
    w, mu = arrays["gmm_weights"], arrays["gmm_means"]
    assert w.shape == (4,) and abs(w.sum() - 1) < 1e-12 and mu.shape == (4, 3) and float(arrays["gmm_std"]) == 0.2
    x, y = arrays["x_train"], arrays["y_train"]
    for k in range(4):
        assert abs((y == k).mean() - w[k]) < 0.02
        assert np.abs(x[y == k].mean(0) - mu[k]).max() < 0.03
        assert np.abs(x[y == k].std(axis=0) - 0.2).max() < 0.01


def test_digits_range_labels_and_fixed_disjoint_split():
    arrays, meta = data.prepare("digits", {"kind": "digits"}, seed=0)
    xtr, xte = arrays["x_train"], arrays["x_test"]
    assert xtr.shape == (1500, 1, 8, 8) and xte.shape == (297, 1, 8, 8)
    assert xtr.min() == -1.0 and xtr.max() == 1.0
    assert set(np.unique(arrays["y_train"])) == set(range(10)) and meta["num_classes"] == 10
    train_rows = {r.tobytes() for r in xtr.reshape(1500, -1)}
    overlap = sum(r.tobytes() in train_rows for r in xte.reshape(297, -1))
    assert overlap < 5  # digits has a handful of exact duplicate images; the split itself is disjoint by index
    again, _ = data.prepare("digits", {"kind": "digits"}, seed=0)
    assert np.array_equal(again["x_test"], xte)


def test_digits_upsampling():
    arrays, _ = data.prepare("digits", {"kind": "digits", "image_size": 16, "n_train": 100}, seed=0)
    assert arrays["x_train"].shape == (100, 1, 16, 16)
    assert arrays["x_train"].min() >= -1 and arrays["x_train"].max() <= 1


@pytest.fixture
def offline(monkeypatch):
    import torchvision.datasets  # noqa: F401  (imported up front: the timer measures the check, not the import)

    # a blackhole address: DNS-free, and a TCP connect to it never answers (as when offline behind a firewall)
    monkeypatch.setitem(images.DOWNLOAD_HOSTS, "mnist", "10.255.255.1")
    monkeypatch.setitem(images.DOWNLOAD_HOSTS, "cifar10", "10.255.255.1")


@pytest.mark.parametrize("kind", ["mnist", "cifar10"])
@pytest.mark.parametrize("download", [False, True])
def test_torchvision_dataset_absent_offline_fails_fast(tmp_path, offline, kind, download):
    spec = {"kind": kind, "root": str(tmp_path / "nowhere"), "download": download}
    start = time.monotonic()
    with pytest.raises(UserError, match=kind) as err:
        data.prepare(kind, spec, seed=0)
    assert time.monotonic() - start < 2.0
    assert "nowhere" in str(err.value)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing downloaded


def test_torchvision_dataset_needs_root():  # MNIST/Fashion-MNIST default to the cache (tests/test_realdata.py)
    with pytest.raises(UserError, match="root"):
        data.prepare("cifar10", {"kind": "cifar10"}, seed=0)


def test_npz_is_byte_deterministic_and_round_trips(tmp_path):
    arrays = {"x_train": np.arange(6, dtype=np.float32).reshape(3, 2), "y_train": np.zeros(3, np.int64),
              "x_test": np.ones((1, 2), np.float32), "y_test": np.zeros(1, np.int64)}
    a = data.write_npz(tmp_path / "a.npz", arrays)
    time.sleep(1.1)  # zip member timestamps have 2-second resolution; a real clock stamp would differ
    b = data.write_npz(tmp_path / "b.npz", arrays)
    assert a.read_bytes() == b.read_bytes()
    back = data.load_npz(a)
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "b.npz"]  # no temp files left


def test_corrupt_or_missing_npz_is_a_user_error(tmp_path):
    bad = tmp_path / "data.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="data.npz"):
        data.load_npz(bad)
    with pytest.raises(UserError, match="missing"):
        data.load_npz(tmp_path / "absent.npz")


def test_prepare_step_writes_npz_and_metadata(tmp_path):
    from diffrepro.steps import prepare

    params = tmp_path / "p.yaml"
    params.write_text("""
seed: 5
datasets:
  gmm: {kind: gaussian_mixture, dim: 2, components: 3, component_std: 0.1, n_train: 64, n_test: 16}
models:
  m: {dataset: gmm, arch: mlp, schedule: {name: vp_linear}, parameterisation: eps,
      train: {steps: 1, batch_size: 8, lr: 1.0e-3}}
sampling: {models: [m], samplers: [ddim], grids: [logsnr], nfe: [4], seeds: [0], n_samples: 8}
metrics: {}
""")
    out = tmp_path / "out"
    assert prepare.run(SimpleNamespace(params=str(params), dataset="gmm", out_dir=str(out))) == 0
    meta = json.loads((out / "data.json").read_text())
    assert meta["sha256"] == io.sha256_file(out / "data.npz")
    assert meta["seed"] == 5 and meta["N"] == 80 and meta["split"] == {"train": 64, "test": 16}
    assert meta["shape"] == [2] and meta["source"] and len(meta["known"]["gmm_weights"]) == 3
    assert {"gmm_weights", "gmm_means", "gmm_std"} <= set(data.load_npz(out / "data.npz"))
    with pytest.raises(UserError, match="nope"):
        prepare.run(SimpleNamespace(params=str(params), dataset="nope", out_dir=str(out)))


def test_cli_prepare_of_an_absent_offline_dataset_exits_2_without_outputs(tmp_path):
    import subprocess
    import sys

    import yaml

    from diffrepro.config import REPO_ROOT

    cfg = yaml.safe_load((REPO_ROOT / "params" / "smoke.yaml").read_text())
    cfg["datasets"]["mnist"] = {"kind": "mnist", "root": str(tmp_path / "no-mnist-here"), "download": False}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "diffrepro", "prepare", "--params", str(params), "--dataset", "mnist",
                           "--out-dir", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "mnist" in proc.stderr and "no-mnist-here" in proc.stderr
    assert not (out / "data.npz").exists() and not (out / "data.json").exists()

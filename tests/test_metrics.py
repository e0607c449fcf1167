"""Layer 7 metrics: vector distances against closed forms, the feature classifier, and the torch-fidelity path."""
from __future__ import annotations

import math

import pytest
import torch

from diffrepro.errors import UserError
from diffrepro.metrics import (energy_distance, median_bandwidth, mmd_rbf, sliced_wasserstein, trajectory_error,
                               vector_metrics)


def normal(n, d, seed):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ---------------------------------------------------------------- vector distances
def test_identical_sets_give_zero():
    x = normal(300, 3, 0)
    for value in vector_metrics(x, x.clone(), projections=32, bandwidth=1.0).values():
        assert value == pytest.approx(0.0, abs=1e-12)
    assert trajectory_error(x, x.clone()) == 0.0


def test_sliced_wasserstein_of_a_shift_is_norm_over_sqrt_dim():
    # y = x + m: every projection is a pure shift θ·m, so SW2² = mean (θ·m)² → |m|²/D over the sphere.
    x, m = normal(500, 4, 1), torch.tensor([3.0, -1.0, 0.5, 2.0], dtype=torch.float64)
    got = sliced_wasserstein(x, x + m, projections=4000, seed=0)
    assert got == pytest.approx(m.norm().item() / math.sqrt(4), rel=0.03)


def test_sliced_wasserstein_fixed_seed_symmetric_and_unequal_sizes():
    x, y = normal(400, 2, 2), normal(250, 2, 3) + 1.0
    assert sliced_wasserstein(x, y, 64, seed=5) == sliced_wasserstein(x, y, 64, seed=5)
    assert sliced_wasserstein(x, y, 64, seed=5) != sliced_wasserstein(x, y, 64, seed=6)
    assert sliced_wasserstein(x, y, 64) == pytest.approx(sliced_wasserstein(y, x, 64), rel=1e-12)
    # same distribution, different sizes: small; a shift by (1, 1) in 2-D: |m| / sqrt(D) = 1
    assert sliced_wasserstein(normal(400, 2, 4), normal(250, 2, 5), 256) < 0.15
    assert sliced_wasserstein(x, y, 2000) == pytest.approx(1.0, rel=0.15)


def test_mmd_matches_gaussian_closed_form():
    # N(0, s²I) vs N(m, s²I), RBF bandwidth h: MMD² = 2 (h²/c)^{d/2} (1 - exp(-|m|²/(2c))), c = h² + 2s².
    d, h, shift = 2, 1.0, 1.5
    x, y = normal(2000, d, 6), normal(2000, d, 7) + torch.tensor([shift, 0.0], dtype=torch.float64)
    c = h**2 + 2.0
    expected = 2 * (h**2 / c) ** (d / 2) * (1 - math.exp(-shift**2 / (2 * c)))
    assert mmd_rbf(x, y, h) == pytest.approx(expected, abs=0.025)  # sampling std about 0.009 at n = 2000
    assert mmd_rbf(x, y, h) == pytest.approx(mmd_rbf(y, x, h), rel=1e-12)
    assert mmd_rbf(x, normal(2000, d, 8), h) < 0.005


def test_energy_distance_matches_gaussian_closed_form():
    # 1-D N(0,1) vs N(m,1): X-Y ~ N(-m, 2), E|X-X'| = 2/sqrt(pi).
    m = 1.0
    s = math.sqrt(2)
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-m**2 / (2 * s**2)) + m * math.erf(m / (s * math.sqrt(2)))
    expected = 2 * e_xy - 2 * 2 / math.sqrt(math.pi)
    x, y = normal(3000, 1, 9), normal(3000, 1, 10) + m
    assert energy_distance(x, y) == pytest.approx(expected, abs=0.03)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)


def test_trajectory_error_is_per_sample_rmse_averaged():
    ref = normal(10, 4, 11)
    offsets = torch.arange(10, dtype=torch.float64)[:, None] * torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert trajectory_error(ref + offsets, ref) == pytest.approx(torch.arange(10.0).mean().item())
    with pytest.raises(ValueError):
        trajectory_error(ref, ref[:5])


def test_median_bandwidth():
    pts = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # pairwise distances 1, 2, 3 (each twice)
    assert median_bandwidth(pts) == pytest.approx(2.0)


# ---------------------------------------------------------------- classifier + torch-fidelity
def toy_images(n, seed):
    """Two classes of 1×8×8 images: a bright left half or a bright right half, plus noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = -torch.ones(n, 1, 8, 8)
    x[y == 0, :, :, :4] = 0.8
    x[y == 1, :, :, 4:] = 0.8
    return (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(-1, 1), y


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory):
    from diffrepro.metrics.classifier import checkpoint, train_classifier

    x, y = toy_images(256, 0)
    model = train_classifier(x, y, steps=40, batch_size=64, lr=5e-3, width=4, feature_dim=8, seed=0)
    path = tmp_path_factory.mktemp("clf") / "classifier.pt"
    torch.save(checkpoint(model, dataset="toy"), path)
    return path


def test_classifier_learns_and_round_trips(classifier_file):
    from diffrepro.metrics.classifier import classify, load_classifier

    model = load_classifier(classifier_file)
    x, y = toy_images(200, 1)
    labels, probs = classify(model, x, batch_size=64)
    assert labels.shape == (200,) and probs.shape == (200, 2)
    assert torch.allclose(probs.sum(1), torch.ones(200))
    assert (labels == y).double().mean() > 0.9
    assert torch.equal(load_classifier(classifier_file)(x), model(x))  # deterministic reload
    train_x, _ = toy_images(256, 0)  # features are unit-RMS on the training set
    assert model.features(train_x).pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=1e-4)


def test_classifier_training_is_deterministic():
    from diffrepro.metrics.classifier import train_classifier

    x, y = toy_images(64, 2)
    a, b = (train_classifier(x, y, 5, 16, 1e-3, 4, 8, seed=3) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_load_classifier_errors(tmp_path):
    from diffrepro.metrics.classifier import load_classifier

    with pytest.raises(UserError, match="missing classifier"):
        load_classifier(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="bad.pt"):
        load_classifier(tmp_path / "bad.pt")


def test_precomputed_feature_path_equals_calculate_metrics(classifier_file):
    import torch_fidelity

    from diffrepro.metrics import fidelity as fd

    samples, _ = toy_images(96, 3)
    reference, _ = toy_images(80, 4)
    samples = (samples + 0.3 * torch.randn(samples.shape, generator=torch.Generator().manual_seed(5))).clamp(-1, 1)
    space = fd.FeatureSpace("toy_classifier", fd.CLASSIFIER_EXTRACTOR, str(classifier_file))
    extractor = fd.make_extractor(space, cuda=False)
    feats = fd.extract_features(samples, extractor, False, batch_size=32)
    ref_feats = fd.extract_features(reference, extractor, False)
    ref_stats = fd.fid_statistics(ref_feats["penultimate"])
    ours = fd.fidelity_metrics(feats, ref_feats, ref_stats, space, kid_subset_size=40, kid_subsets=20, isc=True, seed=7)
    theirs = torch_fidelity.calculate_metrics(
        input1=fd.UInt8Images(samples), input2=fd.UInt8Images(reference), cuda=False, fid=True, kid=True, isc=True,
        feature_extractor=fd.CLASSIFIER_EXTRACTOR, feature_extractor_weights_path=str(classifier_file),
        kid_subset_size=40, kid_subsets=20, isc_splits=10, rng_seed=7, cache=False, save_cpu_ram=True, verbose=False)
    assert ours["fid_toy_classifier"] > 0.01
    assert ours["fid_toy_classifier"] == pytest.approx(theirs[torch_fidelity.KEY_METRIC_FID], rel=1e-4)
    assert ours["kid_toy_classifier"] == pytest.approx(theirs[torch_fidelity.KEY_METRIC_KID_MEAN], rel=1e-4)
    assert ours["kid_toy_classifier_std"] == pytest.approx(theirs[torch_fidelity.KEY_METRIC_KID_STD], rel=1e-4)
    assert ours["isc_toy_classifier"] == pytest.approx(theirs[torch_fidelity.KEY_METRIC_ISC_MEAN], rel=1e-4)
    # FID of a set against itself is ~0 and grows with corruption
    self_fid = fd.fidelity_metrics(ref_feats, ref_feats, ref_stats, space, 40, 5, False, 0)["fid_toy_classifier"]
    assert abs(self_fid) < 1e-6 < ours["fid_toy_classifier"]


def test_kid_subset_clamp_note():
    from diffrepro.metrics.fidelity import clamp_kid_subset

    assert clamp_kid_subset(100, 500, 300) == (100, None)
    size, note = clamp_kid_subset(100, 64, 300)
    assert size == 64 and "kid_subset_size = 100" in note


def cfg_with(kind, extractor=None, weights=None):
    return {"datasets": {"d": {"kind": kind}},
            "metrics": {"feature_extractor": {"d": extractor} if extractor else {}, "inception_weights": weights}}


def test_feature_kind_and_missing_weights(tmp_path):
    from diffrepro.metrics import fidelity as fd

    assert fd.feature_kind(cfg_with("toy2d"), "d") == "vector"
    assert fd.feature_space(cfg_with("gaussian_mixture"), "d") is None
    assert fd.feature_kind(cfg_with("mnist"), "d") == "classifier"
    typo = {"datasets": {"d": {"kind": "mnist"}}, "metrics": {"feature_extractor": {"cifar": "inception"}}}
    with pytest.raises(UserError, match="cifar"):
        fd.feature_kind(typo, "d")
    missing = tmp_path / "w" / "inception.pth"
    with pytest.raises(UserError) as err:
        fd.feature_space(cfg_with("cifar10", "inception", str(missing)), "d")
    assert str(missing) in str(err.value) and fd.INCEPTION_WEIGHTS_FILE in str(err.value)
    no_pth = cfg_with("cifar10", "inception")
    no_pth["metrics"]["inception_torchscript"] = str(tmp_path / "no" / "inception-2015-12-05.pt")
    with pytest.raises(UserError, match="inception_weights is not set.*make assets-inception"):
        fd.feature_space(no_pth, "d")  # neither torch-fidelity's .pth nor the TorchScript detector
    with pytest.raises(UserError, match="classifier"):
        fd.feature_space(cfg_with("digits"), "d", tmp_path / "none.pt")
    weights = tmp_path / fd.INCEPTION_WEIGHTS_FILE
    weights.write_bytes(b"x")
    space = fd.feature_space(cfg_with("cifar10", "inception", str(weights)), "d")
    assert space.name == "inception" and space.layer("fid") == "2048" and space.layer("isc") == "logits_unbiased"

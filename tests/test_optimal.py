"""Optimal (empirical) denoiser vs a brute-force float64 loop; limits; chunking; pruning; class conditioning."""
import math

import pytest
import torch

from diffrepro.diffusion.optimal import OptimalDenoiser
from diffrepro.diffusion.schedules import make_schedule

F64 = torch.float64


def _brute_force(train, x, alpha, sigma, labels=None, y=None):
    """One query and one training point at a time, float64 (NI §2.1)."""
    out = torch.zeros(len(x), train.shape[1], dtype=F64)
    for b in range(len(x)):
        logw = []
        for i in range(len(train)):
            allowed = labels is None or y is None or int(y[b]) < 0 or int(labels[i]) == int(y[b])
            logw.append(-float(((x[b] - alpha * train[i]) ** 2).sum()) / (2 * sigma**2) if allowed else -math.inf)
        m = max(logw)
        w = [math.exp(v - m) for v in logw]
        s = sum(w)
        for i in range(len(train)):
            out[b] += (w[i] / s) * train[i]
    return out


def _setup(n=57, d=5, b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(b, d, generator=g, dtype=F64)


@pytest.mark.parametrize("name,t", [("vp_linear", 0.2), ("vp_linear", 0.7), ("edm", 0.8), ("flow", 0.5),
                                    ("vp_discrete", 0.05), ("edm", 0.05)])
@pytest.mark.parametrize("chunk", [8, 1000])
def test_matches_brute_force(name, t, chunk):
    train, x = _setup()
    sched = make_schedule(name)
    x = sched.alpha(t) * train[:4] + sched.sigma(t) * x  # realistic noisy queries
    den = OptimalDenoiser(train, sched, chunk_size=chunk)
    expected = _brute_force(train, x, sched.alpha(t), sched.sigma(t))
    assert torch.allclose(den(x, t), expected, atol=1e-12, rtol=0)
    w = den.posterior_weights(x, t)
    assert torch.allclose(w.sum(1), torch.ones(len(x), dtype=F64)) and torch.allclose(w @ train, expected, atol=1e-12)


def test_pruning_is_exact_to_rounding_and_float32_path():
    g = torch.Generator().manual_seed(1)
    d = 64
    train = torch.randn(3000, d, generator=g, dtype=F64)
    sched = make_schedule("edm")
    x = train[:16] + 0.5 * torch.randn(16, d, generator=g, dtype=F64)  # nearly one-hot weights: most columns pruned
    pruned = OptimalDenoiser(train, sched, chunk_size=256)(x, 0.5)
    dense = OptimalDenoiser(train, sched, chunk_size=256, weight_tol=0.0)(x, 0.5)
    assert torch.allclose(pruned, dense, atol=1e-14, rtol=0)
    x32 = (train[:16] + 3.0 * torch.randn(16, d, generator=g, dtype=F64)).float()
    out32 = OptimalDenoiser(train.float(), sched, chunk_size=500, dtype=torch.float32)(x32, 3.0)
    ref = OptimalDenoiser(train, sched, chunk_size=500)(x32.double(), 3.0)
    assert out32.dtype == torch.float32 and torch.allclose(out32.double(), ref, atol=1e-4)


def test_limits_mean_nearest_neighbour_and_convex_hull():
    train, x = _setup(n=40, d=3, b=6, seed=2)
    edm = make_schedule("edm")
    den = OptimalDenoiser(train, edm, chunk_size=7)
    assert torch.allclose(den(x, 1e6), train.mean(0).expand(6, 3), atol=1e-9)  # σ → ∞: the data mean
    nearest = train[torch.cdist(x, train).argmin(1)]
    assert torch.allclose(den(x, 1e-3), nearest, atol=1e-9)  # σ → 0: the nearest training point
    flow = make_schedule("flow")
    assert torch.allclose(OptimalDenoiser(train, flow)(x, 1.0), train.mean(0).expand(6, 3), atol=1e-12)  # α = 0
    with pytest.raises(ValueError, match="σ = 0"):
        den(x, 0.0)
    # output in the convex hull: a convex combination of the training points (weights ≥ 0, sum 1, reproduce it)
    for sigma in (0.3, 1.0, 3.0):
        w = den.posterior_weights(x, sigma)
        assert bool((w >= 0).all()) and torch.allclose(w.sum(1), torch.ones(6, dtype=F64))
        assert torch.allclose(w @ train, den(x, sigma), atol=1e-12)
        # every supporting half-space of the data contains the output
        direction = torch.randn(20, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
        assert bool(((den(x, sigma) @ direction.T) <= (train @ direction.T).amax(0) + 1e-12).all())


def test_class_conditional_restricts_to_class_and_null_label_is_unconditional():
    train, x = _setup(n=30, d=4, b=5, seed=4)
    labels = torch.arange(30) % 3
    sched = make_schedule("vp_linear")
    t = 0.4
    den = OptimalDenoiser(train, sched, chunk_size=4, labels=labels)
    y = torch.tensor([0, 1, 2, 3, 1])  # 3 = null label
    expected = _brute_force(train, x, sched.alpha(t), sched.sigma(t), labels, torch.where(y == 3, -1, y))
    assert torch.allclose(den(x, t, y=y), expected, atol=1e-12)
    assert torch.allclose(den(x, t, y=3), den(x, t), atol=1e-14)
    w = den.posterior_weights(x, t, y=y)
    assert float(w[0, labels != 0].sum()) == 0.0 and torch.allclose(w.sum(1), torch.ones(5, dtype=F64))
    only_class_1 = OptimalDenoiser(train[labels == 1], sched)
    assert torch.allclose(den(x, t, y=1), only_class_1(x, t), atol=1e-12)
    with pytest.raises(ValueError, match="no training points"):
        OptimalDenoiser(train, sched, labels=labels, num_classes=5)(x, t, y=4)


def test_image_shaped_inputs_keep_their_shape():
    g = torch.Generator().manual_seed(5)
    train = torch.randn(20, 1, 3, 3, generator=g)
    den = OptimalDenoiser(train, make_schedule("cosine"), chunk_size=6)
    x = torch.randn(2, 1, 3, 3, generator=g)
    out = den(x, 0.5)
    assert out.shape == x.shape and out.dtype == torch.float32

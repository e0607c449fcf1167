"""Schedules: closed forms against the spec's numbers, inverses, and f, g² against numerical derivatives."""
import math

import pytest
import torch

from diffrepro.diffusion.schedules import SCHEDULES, make_schedule
from diffrepro.errors import UserError

F64 = torch.float64
ALL = sorted(SCHEDULES)


def _interior_times(sched, n=41):
    """Times inside the domain, away from t = 0 and the pure-noise end; off the discrete schedule's nodes."""
    hi = min(sched.t_max, 0.99) if sched.name != "edm" else 80.0
    t = torch.linspace(0.0, 1.0, n, dtype=F64)[1:]
    return sched.t_min + (hi - sched.t_min) * t - 0.37e-4


def test_vp_linear_spec_values():
    vp = make_schedule("vp_linear")  # NI §1.2
    assert math.isclose(vp.alpha(1.0), 0.006572, rel_tol=1e-3)
    assert math.isclose(vp.sigma(1.0), 0.99998, rel_tol=1e-5)
    assert math.isclose(vp.alpha(1e-3), 0.99995, rel_tol=1e-5)
    assert math.isclose(vp.sigma(1e-3), 0.01049, rel_tol=1e-3)
    assert math.isclose(vp.sigma_ve(1.0), 152.17, rel_tol=1e-4)  # GEO §1.1: ADM range [0.01049, 152.17]
    assert math.isclose(vp.sigma_ve(1e-3), 0.01049, rel_tol=1e-3)
    t = torch.linspace(0.01, 1, 7, dtype=F64)
    assert torch.allclose(vp.g2(t), vp.beta(t), rtol=1e-12)  # VP: g² = β(t)
    assert torch.allclose(vp.f(t), -0.5 * vp.beta(t), rtol=1e-12)


def test_vp_discrete_spec_values_and_index_map():
    vpd = make_schedule("vp_discrete")  # NI §1.1
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=F64)
    assert torch.allclose(vpd.alphas_cumprod, torch.cumprod(1 - betas, 0), rtol=1e-12)
    t999 = vpd.t_of_index(999)
    assert t999 == 1.0 and math.isclose(vpd.alpha(t999), 0.006353, rel_tol=1e-3)
    assert math.isclose(vpd.sigma(t999), 0.99998, rel_tol=1e-5)
    # NI §1.4: noise-to-signal ratio √((1−ᾱ)/ᾱ) = σ/α at steps 200..900
    expected = [0.724, 1.24, 2.04, 3.44, 6.17, 12.0, 25.7, 60.8]
    for step, ratio in zip(range(200, 901, 100), expected):
        assert math.isclose(vpd.sigma_ve(vpd.t_of_index(step)), ratio, rel_tol=5e-3), step
    idx = torch.arange(1000, dtype=F64)
    assert torch.equal(vpd.index(vpd.t_of_index(idx)), idx)
    assert torch.allclose(vpd.alpha(vpd.t_of_index(idx)) ** 2, vpd.alphas_cumprod, rtol=1e-12)


def test_cosine_and_flow_and_edm_closed_forms():
    cos = make_schedule("cosine")
    t = torch.linspace(0.0, 0.99, 12, dtype=F64)
    f = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731  improved DDPM ᾱ
    assert torch.allclose(cos.alpha(t) ** 2, f(t) / f(torch.zeros(1, dtype=F64)), rtol=1e-12)
    flow, edm = make_schedule("flow"), make_schedule("edm")
    assert torch.allclose(flow.alpha(t), 1 - t) and torch.allclose(flow.sigma(t), t)
    assert flow.alpha(1.0) == 0.0 and flow.lambda_(1.0) == -math.inf
    s = torch.tensor([0.002, 0.5, 80.0], dtype=F64)
    assert torch.allclose(edm.sigma(s), s) and torch.equal(edm.alpha(s), torch.ones(3, dtype=F64))
    assert torch.allclose(edm.sigma_ve(s), s) and torch.allclose(edm.g2(s), 2 * s)


@pytest.mark.parametrize("name", ALL)
def test_variance_relation_and_types(name):
    sched = make_schedule(name)
    t = _interior_times(sched)
    a, s = sched.alpha(t), sched.sigma(t)
    if name in ("vp_linear", "vp_discrete", "cosine"):
        assert torch.allclose(a**2 + s**2, torch.ones_like(t), atol=1e-12)
    assert torch.allclose(sched.lambda_(t), torch.log(a) - torch.log(s), atol=1e-12)
    assert torch.allclose(sched.sigma_ve(t), s / a, rtol=1e-12)
    assert isinstance(sched.alpha(0.5), float) and sched.alpha(t).dtype == F64
    assert math.isclose(sched.sigma(float(t[3])), float(s[3]), rel_tol=1e-14)
    assert bool((torch.diff(sched.lambda_(t)) < 0).all())  # noise increases with t
    if name != "edm":
        assert sched.alpha(0.0) == 1.0 and sched.sigma(0.0) == 0.0 and sched.lambda_(0.0) == math.inf


@pytest.mark.parametrize("name", ALL)
def test_lambda_and_sigma_ve_inverses(name):
    sched = make_schedule(name)
    t = _interior_times(sched)
    assert torch.allclose(sched.t_from_lambda(sched.lambda_(t)), t, rtol=1e-9, atol=1e-12)
    assert torch.allclose(sched.t_from_sigma_ve(sched.sigma_ve(t)), t, rtol=1e-9, atol=1e-12)
    lam = torch.linspace(-5, 5, 11, dtype=F64)
    assert torch.allclose(sched.lambda_(sched.t_from_lambda(lam)), lam, atol=1e-9)
    assert sched.t_from_lambda(math.inf) == 0.0 or name == "edm"


@pytest.mark.parametrize("name", ALL)
def test_f_and_g2_match_numerical_derivatives(name):
    sched = make_schedule(name)
    t = _interior_times(sched, n=23)
    h = 1e-6 * (80.0 if name == "edm" else 1.0)
    dlog_alpha = (sched.log_alpha(t + h) - sched.log_alpha(t - h)) / (2 * h)
    dsigma2 = (sched.sigma(t + h) ** 2 - sched.sigma(t - h) ** 2) / (2 * h)
    assert torch.allclose(sched.f(t), dlog_alpha, rtol=1e-6, atol=1e-8)
    assert torch.allclose(sched.g2(t), dsigma2 - 2 * sched.f(t) * sched.sigma(t) ** 2, rtol=1e-6, atol=1e-8)


def test_make_schedule_errors_and_options():
    with pytest.raises(UserError, match="unknown schedule"):
        make_schedule("nope")
    with pytest.raises(UserError, match="bad options"):
        make_schedule("edm", beta0=0.1)
    short = make_schedule("vp_discrete", num_timesteps=10, beta_start=0.01, beta_end=0.2)
    assert len(short.alphas_cumprod) == 10 and short.t_of_index(9) == 1.0 and short.t_min == 0.1

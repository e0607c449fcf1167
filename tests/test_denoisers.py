"""Parameterisation adapters (eps / x0 / v / edm), CFG, and rescheduling between schedules."""
import math

import pytest
import torch

from diffrepro.diffusion.denoisers import (PARAMETERISATIONS, network_denoiser, network_inputs, network_output_to_x0,
                                           parameterisation_target, preconditioning, reschedule)
from diffrepro.diffusion.gaussian import GaussianDenoiser
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.errors import UserError

F64 = torch.float64
SCHEDULES = ["vp_linear", "vp_discrete", "cosine", "edm", "flow"]
TIMES = {"vp_linear": 0.4, "vp_discrete": 0.4, "cosine": 0.4, "edm": 2.5, "flow": 0.4}


def _data(n=6, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, d, generator=g, dtype=F64)


@pytest.mark.parametrize("name", SCHEDULES)
@pytest.mark.parametrize("param", PARAMETERISATIONS)
def test_target_and_output_are_inverse(name, param):
    sched = make_schedule(name)
    x0, eps = _data()
    t = TIMES[name]
    x_t = sched.alpha(t) * x0 + sched.sigma(t) * eps
    target = parameterisation_target(param, x0, eps, sched, t)
    assert torch.allclose(network_output_to_x0(param, target, x_t, sched, t), x0, atol=1e-12)
    # per-sample tensor t (training) agrees with the float path
    tb = torch.full((len(x0),), t, dtype=F64) * torch.linspace(0.5, 1.0, len(x0), dtype=F64)
    a, s = sched.alpha(tb)[:, None], sched.sigma(tb)[:, None]
    target_b = parameterisation_target(param, x0, eps, sched, tb)
    assert torch.allclose(network_output_to_x0(param, target_b, a * x0 + s * eps, sched, tb), x0, atol=1e-12)
    assert torch.allclose(target_b[2], parameterisation_target(param, x0, eps, sched, float(tb[2]))[2], atol=1e-12)


def test_known_targets_and_edm_coefficients():
    vp = make_schedule("vp_linear")
    x0, eps = _data()
    t = 0.3
    a, s = vp.alpha(t), vp.sigma(t)
    assert torch.allclose(parameterisation_target("eps", x0, eps, vp, t), eps, atol=1e-15, rtol=0)
    assert torch.allclose(parameterisation_target("x0", x0, eps, vp, t), x0, atol=1e-15, rtol=0)
    assert torch.allclose(parameterisation_target("v", x0, eps, vp, t), a * eps - s * x0, atol=1e-14)  # Salimans & Ho
    edm = make_schedule("edm")
    sigma, sd = 1.7, 0.5  # GEO §1.2
    c_skip, c_out, c_in, c_noise = preconditioning("edm", edm, sigma)
    assert math.isclose(c_skip, sd**2 / (sigma**2 + sd**2))
    assert math.isclose(c_out, sigma * sd / math.sqrt(sigma**2 + sd**2))
    assert math.isclose(c_in, 1 / math.sqrt(sigma**2 + sd**2))
    assert math.isclose(c_noise, 0.25 * math.log(sigma))
    # edm on a VP schedule = the same preconditioning applied to x_ve = x/α at σ_ve = σ/α
    c_vp = preconditioning("edm", vp, t)
    c_ve = preconditioning("edm", edm, s / a)
    assert math.isclose(c_vp[0], c_ve[0] / a) and math.isclose(c_vp[1], c_ve[1])
    assert math.isclose(c_vp[2], c_ve[2] / a) and math.isclose(c_vp[3], c_ve[3])


@pytest.mark.parametrize("param", PARAMETERISATIONS)
def test_network_denoiser_feeds_the_documented_inputs(param):
    """An oracle net that knows (x0, ε) must see c_in·x_t and c_noise, and the denoiser must return x0 exactly."""
    sched = make_schedule("cosine")
    x0, eps = _data()
    t = 0.55
    x_t = sched.alpha(t) * x0 + sched.sigma(t) * eps
    _, _, c_in, c_noise = preconditioning(param, sched, t)
    seen = {}

    def oracle(x_in, t_batch):
        seen["x"], seen["t"] = x_in, t_batch
        return parameterisation_target(param, x0, eps, sched, t)

    out = network_denoiser(oracle, sched, param)(x_t, t)
    assert torch.allclose(out, x0, atol=1e-12)
    assert torch.allclose(seen["x"], c_in * x_t) and seen["t"].shape == (len(x0),)
    x_in, time_in = network_inputs(param, x_t, sched, t)
    assert torch.equal(x_in, seen["x"]) and torch.equal(time_in, seen["t"])
    assert torch.allclose(seen["t"], torch.full((len(x0),), c_noise, dtype=F64))
    expected_time = 0.25 * math.log(sched.sigma(t) / sched.alpha(t)) if param == "edm" else t
    assert math.isclose(float(seen["t"][0]), expected_time, rel_tol=1e-12)


def test_eps_model_wrapped_into_ve_matches_geo_formula():
    """GEO §1.3: D(x; σ) = x − σ·ε(x/√(1+σ²), τ(σ)) for a linear-VP ε-network viewed in EDM coordinates."""
    vp, edm = make_schedule("vp_linear"), make_schedule("edm")
    w = torch.randn(4, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    net = lambda x, tb: torch.tanh(x @ w) * (1 + tb[:, None])  # noqa: E731
    D = reschedule(network_denoiser(net, vp, "eps"), vp, edm)
    x, _ = _data()
    for sigma in (0.05, 1.0, 30.0):
        tau = (math.sqrt(0.1**2 + 2 * 19.9 * math.log(1 + sigma**2)) - 0.1) / 19.9
        expected = x - sigma * net(x / math.sqrt(1 + sigma**2), torch.full((len(x),), tau, dtype=F64))
        assert torch.allclose(D(x, sigma), expected, atol=1e-10)


@pytest.mark.parametrize("src", SCHEDULES)
@pytest.mark.parametrize("dst", SCHEDULES)
def test_reschedule_gaussian_denoiser_is_exact(src, dst):
    mean, cov = torch.tensor([0.5, -1.0], dtype=F64), torch.tensor([[0.8, 0.2], [0.2, 0.3]], dtype=F64)
    s_src, s_dst = make_schedule(src), make_schedule(dst)
    D = reschedule(GaussianDenoiser(mean, cov, s_src), s_src, s_dst)
    ref = GaussianDenoiser(mean, cov, s_dst)
    x, _ = _data(d=2)
    for lam in (-3.0, 0.0, 2.5):
        t = s_dst.t_from_lambda(lam)
        assert torch.allclose(D(x, t), ref(x, t), atol=1e-8)


def test_reschedule_refusals_and_identity():
    vp, edm, flow = make_schedule("vp_linear"), make_schedule("edm"), make_schedule("flow")
    D = GaussianDenoiser(torch.zeros(2), torch.eye(2), vp)
    assert reschedule(D, vp, make_schedule("vp_linear", t_min=1e-4)) is D  # same noise schedule
    with pytest.raises(ValueError, match="pure noise"):
        reschedule(D, vp, flow)(torch.zeros(3, 2, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="outside"):
        reschedule(D, vp, edm)(torch.zeros(3, 2, dtype=F64), 1000.0)  # σ_ve(1) of linear VP is 152
    assert torch.isfinite(reschedule(D, vp, edm)(torch.zeros(3, 2, dtype=F64), 150.0)).all()


def test_preconditioning_refuses_alpha_zero_for_eps_but_v_and_x0_work():
    flow = make_schedule("flow")
    with pytest.raises(ValueError, match="undefined"):
        preconditioning("eps", flow, 1.0)
    x, _ = _data()
    assert torch.allclose(network_output_to_x0("v", x, x, flow, 1.0), -x)
    with pytest.raises(UserError, match="parameterisation"):
        preconditioning("score", flow, 0.5)


def test_classifier_free_guidance_and_dtypes():
    sched = make_schedule("vp_linear")
    calls = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, x, t, y=None):
            calls.append((x.dtype, len(x)))
            return self.scale * x * 0 + y[:, None].to(x.dtype)  # x0-prediction = the label value

    x = torch.randn(3, 2, dtype=F64)
    labels, null = torch.tensor([1, 2, 3]), 10
    cond = network_denoiser(Net(), sched, "x0", labels=labels)(x, 0.5)
    assert cond.dtype == F64 and calls[-1] == (torch.float32, 3)
    assert torch.allclose(cond, labels[:, None].to(F64).expand(3, 2))
    for w in (0.0, 1.0, 2.5):
        calls.clear()
        out = network_denoiser(Net(), sched, "x0", labels=labels, guidance_scale=w, null_label=null)(x, 0.5)
        assert torch.allclose(out, (null + w * (labels - null))[:, None].to(F64).expand(3, 2), atol=1e-5)
        assert len(calls) == 1 and calls[0][1] == (3 if w == 1.0 else 6)  # one (doubled) batch per evaluation
    with pytest.raises(UserError, match="guidance"):
        network_denoiser(Net(), sched, "x0", guidance_scale=2.0)

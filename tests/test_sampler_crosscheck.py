"""Cross-check against diffusers' schedulers (test-only dependency) on one closed-form denoiser and one grid each:
DDIM, Euler, Heun, DPM-Solver++(2M), UniPC and DEIS agree with ours to ≤ 1e-5 (diffusers keeps σ's and ᾱ's in
float32), except DEIS above first order, where the intended difference is documented below."""
from __future__ import annotations

import pytest
import torch

from diffrepro.diffusion.gaussian import GaussianDenoiser
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.samplers import solvers as S

diffusers = pytest.importorskip("diffusers")

F64 = torch.float64
MEAN = torch.tensor([0.3, -0.2, 0.1, 0.5], dtype=F64)
VAR = torch.tensor([0.8, 0.3, 0.1, 0.05], dtype=F64)
DISC = make_schedule("vp_discrete")  # β = linspace(1e-4, 0.02, 1000), diffusers' "linear" default
DEN_VP = GaussianDenoiser(MEAN, VAR, DISC)
TOL = 1e-5


def noise(n=8):
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(0), dtype=F64)


def run_vp(scheduler, steps, x):
    """diffusers loop on the VP sample x_t = α·x0 + σ·ε with an x0-predicting ("sample") model."""
    scheduler.set_timesteps(steps)
    sample = x.clone()
    for t in scheduler.timesteps:
        sample = scheduler.step(DEN_VP(sample, float(DISC.t_of_index(float(t)))), t, sample).prev_sample
    return sample, [float(DISC.t_of_index(float(t))) for t in scheduler.timesteps]


def run_ve(scheduler, steps, x, den):
    """diffusers loop for the σ-parameterised (Karras) schedulers: the i-th model call is at sigmas[i]."""
    scheduler.set_timesteps(steps)
    sample = x * float(scheduler.init_noise_sigma)
    for i, t in enumerate(scheduler.timesteps):
        sample = scheduler.step(den(sample, float(scheduler.sigmas[i])), t, sample).prev_sample
    return sample


def common(**kw):
    return dict(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear",
                prediction_type="sample", **kw)


def test_ddim_matches_diffusers():
    sch = diffusers.DDIMScheduler(**common(clip_sample=False, set_alpha_to_one=True))
    theirs, ts = run_vp(sch, 10, noise())
    ours = S.ddim(DEN_VP, noise(), ts + [0.0], DISC)
    assert float((ours - theirs).abs().max()) <= TOL


@pytest.mark.parametrize("name,fn", [("EulerDiscreteScheduler", S.euler), ("HeunDiscreteScheduler", S.heun)])
def test_karras_schedulers_match_diffusers(name, fn):
    sch = getattr(diffusers, name)(**common(timestep_spacing="leading"))
    sch.set_timesteps(12)
    sigmas = sorted({float(s) for s in sch.sigmas}, reverse=True)  # Heun repeats every inner σ
    edm = make_schedule("edm", sigma_min=sigmas[-2], sigma_max=sigmas[0])
    den = GaussianDenoiser(MEAN, VAR, edm)
    theirs = run_ve(sch, 12, noise(), den)
    ours = fn(den, noise() * float(sch.init_noise_sigma), sigmas, edm)
    assert float((ours - theirs).abs().max()) <= TOL


def test_dpmpp_2m_matches_diffusers():
    sch = diffusers.DPMSolverMultistepScheduler(**common(algorithm_type="dpmsolver++", solver_order=2,
                                                         solver_type="midpoint", lower_order_final=True,
                                                         final_sigmas_type="zero"))
    theirs, ts = run_vp(sch, 10, noise())
    ours = S.dpmpp_multistep(DEN_VP, noise(), ts + [0.0], DISC, order=2, lower_order_final=True)
    assert float((ours - theirs).abs().max()) <= TOL


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_unipc_matches_diffusers(variant):
    """bh1 ends at σ_min (index 0): with a zero final σ diffusers' bh1 divides by B(h) = h = ∞ and returns NaN;
    ours handles h = ∞ (the final step is the first-order predictor x = α·D)."""
    final = "zero" if variant == "bh2" else "sigma_min"
    sch = diffusers.UniPCMultistepScheduler(**common(solver_order=3, predict_x0=True, solver_type=variant,
                                                     lower_order_final=True, final_sigmas_type=final))
    theirs, ts = run_vp(sch, 10, noise())
    end = 0.0 if final == "zero" else float(DISC.t_of_index(0.0))
    ours = S.unipc(DEN_VP, noise(), ts + [end], DISC, order=3, variant=variant, lower_order_final=True)
    assert float((ours - theirs).abs().max()) <= TOL


def test_deis_matches_diffusers_at_first_order_and_documents_the_higher_order_difference():
    """diffusers' DEIS is the 'logrho' variant: ε̂ is interpolated in log σ_ve (= −λ). Ours is tAB (GEO §2.6,
    NI §4.9): ε̂ interpolated in the (fitted) VP time τ. Both are exponential integrators of the same ODE, identical
    at first order (= DDIM) and differing above it by the interpolation variable — by design, since the papers'
    tables use tAB. We check the first-order identity to 1e-5 and that at order 3 both are close to each other and
    to the high-accuracy solution, while not identical."""
    sch = diffusers.DEISMultistepScheduler(**common(solver_order=1))
    theirs, ts = run_vp(sch, 10, noise())
    grid = ts + [float(DISC.t_of_index(0.0))]
    ours = S.deis(DEN_VP, noise(), grid, DISC, order=0)
    assert float((ours - theirs).abs().max()) <= TOL

    sch3 = diffusers.DEISMultistepScheduler(**common(solver_order=3, lower_order_final=False))
    theirs3, ts3 = run_vp(sch3, 50, noise())
    grid3 = ts3 + [float(DISC.t_of_index(0.0))]
    ours3 = S.deis(DEN_VP, noise(), grid3, DISC, order=2)  # three ε̂'s: the same number of points as their order 3
    exact = S.heun(DEN_VP, noise(), torch.linspace(grid3[0], grid3[-1], 2001).tolist(), DISC)
    assert float((ours3 - theirs3).abs().max()) > 1e-6  # not the same method ...
    assert float((ours3 - exact).abs().max()) < 0.01 and float((theirs3 - exact).abs().max()) < 0.02  # same ODE

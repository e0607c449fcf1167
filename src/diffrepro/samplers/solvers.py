"""Every sampler, written once as arithmetic on the state `x`, denoiser outputs and noise draws.

Signature (docs/DEVELOPING.md "Samplers"): `sampler(denoiser, x, grid, schedule, noise, **options) -> x_final`.
`grid` holds decreasing times of `schedule` (K steps = K+1 points); `x = σ(grid[0])·ε₀`; `noise.draw(like)` returns
fresh standard normal noise. Every coefficient is a Python float computed from the schedule and the grid before the
state is touched, and states only meet `+ − *scalar /scalar`: run with `natural_inference.linear_form.LinearForm`
states the same function returns the Natural Inference matrices (C, B). The one nonlinearity, dynamic thresholding
(DPM-Solver++ / UniPC data prediction), is off by default and refused on non-tensor states.

Notation: x_t = α·x0 + σ·ε, λ = log(α/σ), h = λ_{i+1} − λ_i > 0. D_i = D(x_i, t_i). Written in a schedule's own
time variable t, the probability-flow ODE is (NI §4.4, score = (αD − x)/σ²)

    dx/dt = f·x − ½g²·score = (d log σ/dt)·x − α·(dλ/dt)·D  =: a_x·x − a_D·D,

which in EDM coordinates (t = σ, α = 1) is GEO §1.1's dx/dσ = (x − D)/σ. `euler`, `heun`, `ipndm` and `ipndm_v`
integrate this ODE in whatever coordinates they are given (the registry fixes EDM coordinates for the GEO toolbox
versions and the model's own for NI's `ode_euler`); DDIM, DPM-Solver(++), DEIS and UniPC are exponential integrators
and give the same states (up to x ↦ x·α_to/α_from) in any coordinates.

A sampler body only reads `d = denoiser(x, t)`. The options shared by all samplers (GEO §2.9) are added by the
`@sampler` decorator as wrappers around the denoiser and the result, never inside a loop: `afs` replaces the first
denoiser call by the analytical direction ε ≈ x/√(α²+σ²) (saves 1 NFE; `AnalyticalFirstStep`); `denoise_to_zero`
returns D(x_K, t_K) after the last step (+1 NFE); `trajectory` (a list) collects (t, x, D) for every evaluation,
the analytical one included (`Recording`). NFE counting is one more wrapper, outside: `counting.CountingDenoiser`.
"""
from __future__ import annotations

import functools
import inspect
import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["ddim", "sde_euler", "euler", "heun", "rk4", "dpm_singlestep", "dpmpp_multistep", "deis", "ipndm",
           "ipndm_v", "unipc", "coefficient_matrix", "sampler", "Nodes", "TorchNoise", "AnalyticalFirstStep",
           "Recording"]


# ---------------------------------------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------------------------------------
class TorchNoise:
    """Noise source for tensor mode: fresh N(0, I) draws from one `torch.Generator` (same device as the state)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        return torch.randn(like.shape, generator=self.generator, dtype=like.dtype, device=self.generator.device
                           ).to(like.device)


class Nodes:
    """Schedule scalars at every grid point, as Python float lists: t, α, σ, λ, and the ODE coefficients a_x, a_D.
    Read-only; the latest build is reused for the same schedule object and grid (the sweep runs each sampler once on
    a float state to learn its call times, then on the batch: `counting.evaluation_times`)."""

    _last: tuple | None = None  # (schedule, grid, nodes)

    def __new__(cls, schedule, grid):
        key = tuple(float(v) for v in grid)
        last = cls._last
        if last is not None and last[0] is schedule and last[1] == key:
            return last[2]
        nodes = super().__new__(cls)
        nodes._build(schedule, key)
        cls._last = (schedule, key, nodes)
        return nodes

    def _build(self, schedule, grid):
        t = torch.as_tensor(grid, dtype=torch.float64)
        if len(t) < 2 or not bool((t[1:] < t[:-1]).all()):
            raise ValueError(f"a sampling grid must hold ≥ 2 strictly decreasing times, got {t.tolist()}")
        self.schedule = schedule
        self.t = t.tolist()
        self.alpha = schedule.alpha(t).tolist()
        self.sigma = schedule.sigma(t).tolist()
        self.lam = schedule.lambda_(t).tolist()
        f, g2 = schedule.f(t).tolist(), schedule.g2(t).tolist()
        # a_x = f + ½g²/σ², a_D = ½g²·α/σ² (PF-ODE velocity v = a_x·x − a_D·D); undefined where σ = 0
        self.a_x = [fi + 0.5 * gi / si**2 if si > 0 else math.nan for fi, gi, si in zip(f, g2, self.sigma)]
        self.a_d = [0.5 * gi * ai / si**2 if si > 0 else math.nan for gi, ai, si in zip(g2, self.alpha, self.sigma)]
        self.steps = len(self.t) - 1

    def h(self, i: int) -> float:
        """Step in λ from node i to i+1 (> 0)."""
        return self.lam[i + 1] - self.lam[i]

    def t_at_lambda(self, lam: float) -> float:
        return float(self.schedule.t_from_lambda(lam))

    def between(self, r: float) -> tuple[list[float], list[float], list[float]]:
        """(t, α, σ) at λ_i + r·h_i for every step i, in one float64 evaluation (singlestep intermediate nodes)."""
        memo = self.__dict__.setdefault("_between", {})
        if r not in memo:
            lam = torch.as_tensor([self.lam[i] + r * self.h(i) for i in range(self.steps)], dtype=torch.float64)
            t = self.schedule.t_from_lambda(lam)
            memo[r] = (t.tolist(), self.schedule.alpha(t).tolist(), self.schedule.sigma(t).tolist())
        return memo[r]

    def scalars_at(self, t: float) -> tuple[float, float]:
        return float(self.schedule.alpha(t)), float(self.schedule.sigma(t))


class AnalyticalFirstStep:
    """`D(x, t)` whose first call returns the analytical first step (GEO §2.9) instead of calling `denoiser`: at
    t_0 = σ_max the data is negligible, ε̂ ≈ x/√(α²+σ²), so D = (x − σ·ε̂)/α (0 where α = 0). Saves 1 NFE."""

    def __init__(self, denoiser, alpha0: float, sigma0: float):
        self.denoiser, self.alpha0, self.sigma0, self.used = denoiser, alpha0, sigma0, False

    def __call__(self, x, t):
        if self.used:
            return self.denoiser(x, t)
        self.used = True
        a, s = self.alpha0, self.sigma0
        return x * ((1.0 - s / math.sqrt(a * a + s * s)) / a) if a > 0 else x * 0.0


class Recording:
    """`D(x, t)` that appends (t, x, D) to `trajectory` for every evaluation (analytical ones included)."""

    def __init__(self, denoiser, trajectory: list):
        self.denoiser, self.trajectory = denoiser, trajectory

    def __call__(self, x, t):
        d = self.denoiser(x, t)
        self.trajectory.append((t, x, d))
        return d


# the options `@sampler` adds to every sampler, with their defaults (validation.py reads this literal from the source)
SHARED_OPTIONS = {"afs": False, "denoise_to_zero": False, "trajectory": None}
_SHARED = tuple(inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in SHARED_OPTIONS.items())


def sampler(body):
    """Give a sampler body `(denoiser, x, grid, schedule, noise, **options)` the shared options (GEO §2.9) as
    wrappers: `afs` (AnalyticalFirstStep), `trajectory` (Recording, outermost, so the analytical D is recorded too)
    and `denoise_to_zero` (one more call at the last grid time). The signature lists them, so the registry's option
    check sees them."""

    @functools.wraps(body)
    def run(denoiser, x, grid, schedule, noise=None, *, afs=False, denoise_to_zero=False, trajectory=None,
            **options):
        if afs not in (True, False):  # 'auto' is decided per NFE before the call (SamplerSpec.concrete_options)
            raise ValueError(f"{body.__name__}: afs must be True or False when sampling, got {afs!r}")
        if afs:
            n = Nodes(schedule, grid)
            denoiser = AnalyticalFirstStep(denoiser, n.alpha[0], n.sigma[0])
        if trajectory is not None:
            denoiser = Recording(denoiser, trajectory)
        x = body(denoiser, x, grid, schedule, noise, **options)
        return denoiser(x, float(grid[-1])) if denoise_to_zero else x

    params = list(inspect.signature(body).parameters.values())
    run.__signature__ = inspect.Signature(params + list(_SHARED))
    del run.__wrapped__  # inspect.signature must read the signature above, not the body's
    run.body = body
    return run


def _lincomb(coeffs, terms):
    """Σ c_k·v_k for a non-empty list (no `sum()`: keeps the contract's operator set minimal)."""
    out = terms[0] * coeffs[0]
    for c, v in zip(coeffs[1:], terms[1:]):
        out = out + v * c
    return out


def _velocity(x, d, nodes: Nodes, i: int):
    return x * nodes.a_x[i] - d * nodes.a_d[i]


def _threshold(d, ratio: float = 0.995, max_value: float = 1.0):
    """Dynamic thresholding (Imagen; DPM-Solver++ §4 default in the GEO toolbox): s = max(max_value, quantile_ratio
    |D|) per sample, D ← clip(D, −s, s)/s. Nonlinear: refused on linear forms."""
    if not isinstance(d, torch.Tensor):
        raise TypeError("thresholding is nonlinear and cannot be traced (set threshold=False)")
    flat = d.reshape(len(d), -1).abs()
    s = torch.quantile(flat.float(), ratio, dim=1).to(d.dtype).clamp(min=max_value).reshape(-1, *[1] * (d.ndim - 1))
    return torch.maximum(torch.minimum(d, s), -s) / s


def _orders(steps: int, max_order: int, lower_order_final: bool) -> list[int]:
    """Order per step of a multistep method: warm start q = i+1; with lower_order_final q ≤ steps − i (GEO §2.7)."""
    return [min(max_order, i + 1, steps - i) if lower_order_final else min(max_order, i + 1) for i in range(steps)]


# ---------------------------------------------------------------------------------------------------------------------
# DDIM / DDPM (model coordinates), flow Euler (= DDIM on the flow schedule, NI §4.3)
# ---------------------------------------------------------------------------------------------------------------------
@sampler
def ddim(denoiser, x, grid, schedule, noise=None, *, eta: float = 0.0):
    """DDIM (Song et al. 2021, eq. 12) with stochasticity η; η = 1 is DDPM ancestral sampling (the posterior
    q(x_{i+1} | x_i, x0 = D_i), NI §4.2).

    x_{i+1} = α_{i+1}·D + √(σ_{i+1}² − c²)·ε̂ + c·z,  ε̂ = (x − α_i·D)/σ_i,  c = η·σ_{i+1}·√(1 − SNR_i/SNR_{i+1}).
    Order (η = 0): 1, on any grid (exact exponential integrator of the PF-ODE for constant D; = Euler in σ_ve,
    = DPM-Solver-1). η > 0: a reverse-SDE sampler (weak order 1), draws one noise per step.
    """
    n = Nodes(schedule, grid)
    for i in range(n.steps):
        d = denoiser(x, n.t[i])
        a, s, a1, s1 = n.alpha[i], n.sigma[i], n.alpha[i + 1], n.sigma[i + 1]
        c = eta * s1 * math.sqrt(max(0.0, 1.0 - (a * s1 / (s * a1)) ** 2)) if a1 > 0 else eta * s1
        r = math.sqrt(max(0.0, s1 * s1 - c * c)) / s  # weight of x: √(σ_{i+1}² − c²)/σ_i
        x = x * r + d * (a1 - a * r)
        if eta > 0:
            x = x + noise.draw(x) * c
    return x


# ---------------------------------------------------------------------------------------------------------------------
# Euler-type integrators of the PF-ODE / reverse SDE in the schedule's own t (NI §4.4–4.6; GEO §2.1–2.2)
# ---------------------------------------------------------------------------------------------------------------------
@sampler
def sde_euler(denoiser, x, grid, schedule, noise=None):
    """Euler–Maruyama on the reverse SDE dx = (f·x − g²·score)dt + g dw̄ (NI §4.5), dt = t_{i+1} − t_i < 0:
    x ← x + dt·(f·x − g²·score) + √(g²·|dt|)·z. Strong order ½, weak order 1 in t."""
    n = Nodes(schedule, grid)
    f = schedule.f(torch.as_tensor(n.t, dtype=torch.float64)).tolist()
    g2 = schedule.g2(torch.as_tensor(n.t, dtype=torch.float64)).tolist()
    for i in range(n.steps):
        d = denoiser(x, n.t[i])
        dt, s2 = n.t[i + 1] - n.t[i], n.sigma[i] ** 2
        # score = (α·D − x)/σ²  ⇒  drift = (f + g²/σ²)·x − g²·α/σ²·D
        x = x * (1.0 + dt * (f[i] + g2[i] / s2)) - d * (dt * g2[i] * n.alpha[i] / s2) \
            + noise.draw(x) * math.sqrt(g2[i] * abs(dt))
    return x


@sampler
def euler(denoiser, x, grid, schedule, noise=None):
    """Euler on the PF-ODE in the schedule's own t: x_{i+1} = x_i + (t_{i+1} − t_i)·v(x_i, D_i).

    In EDM coordinates this is GEO §2.1 (`euler` = DDIM); in the model's VP t it is NI's ODE Euler (§4.4).
    Order 1 in t, on any grid whose spacing is a smooth function of the step index.
    """
    n = Nodes(schedule, grid)
    for i in range(n.steps):
        d = denoiser(x, n.t[i])
        x = x + _velocity(x, d, n, i) * (n.t[i + 1] - n.t[i])
    return x


@sampler
def heun(denoiser, x, grid, schedule, noise=None):
    """Heun (EDM Alg. 1; GEO §2.2; NI §4.6 with α(t) in the corrector): predictor x̃ = x + h·v_i, corrector
    x_{i+1} = x + h·(v_i + v(x̃, D(x̃, t_{i+1})))/2, applied on every step (an Euler step only if σ_{i+1} = 0).
    2 NFE per step. Order 2 in t."""
    n = Nodes(schedule, grid)
    for i in range(n.steps):
        d = denoiser(x, n.t[i])
        dt = n.t[i + 1] - n.t[i]
        v = _velocity(x, d, n, i)
        x_pred = x + v * dt
        if n.sigma[i + 1] > 0:
            d_pred = denoiser(x_pred, n.t[i + 1])
            x = x + (v + _velocity(x_pred, d_pred, n, i + 1)) * (0.5 * dt)
        else:
            x = x_pred
    return x


@sampler
def rk4(denoiser, x, grid, schedule, noise=None):
    """Classical Runge–Kutta 4 on the PF-ODE in t (4 NFE per step; midpoints at the arithmetic mean time). Order 4 in
    t; the high-accuracy reference solver (`reference.reference_solution`)."""
    n = Nodes(schedule, grid)

    def v(xx, t):
        a, s = n.scalars_at(t)
        f, g2 = float(schedule.f(t)), float(schedule.g2(t))
        return xx * (f + 0.5 * g2 / s**2) - denoiser(xx, t) * (0.5 * g2 * a / s**2)

    for i in range(n.steps):
        t0, t1 = n.t[i], n.t[i + 1]
        dt, tm = t1 - t0, 0.5 * (t0 + t1)
        k1 = v(x, t0)
        k2 = v(x + k1 * (0.5 * dt), tm)
        k3 = v(x + k2 * (0.5 * dt), tm)
        k4 = v(x + k3 * dt, t1)
        x = x + (k1 + k2 * 2.0 + k3 * 2.0 + k4) * (dt / 6.0)
    return x


# fixed uniform-step Adams–Bashforth weights, newest first (GEO §2.4)
_AB_WEIGHTS = {1: (1.0,), 2: (1.5, -0.5), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def _ipndm_v_weights(h: float, hs: list[float], q: int) -> tuple[float, ...]:
    """iPNDM_v weights (GEO §2.5, copied as specified; not textbook variable-step AB for q ≥ 3).
    h: current step; hs = [h1, h2, h3]: the previous steps, newest first."""
    if q == 1:
        return (1.0,)
    h1 = hs[0]
    if q == 2:
        return (1 + h / (2 * h1), -h / (2 * h1))
    h2 = hs[1]
    big_t = 0.5 * (1 - h * h / (3 * h1 * (h1 + h2)))
    c0, c1, c2 = 1 + h / (2 * h1) + big_t, -h / (2 * h1) - (1 + h1 / h2) * big_t, (h1 / h2) * big_t
    if q == 3:
        return (c0, c1, c2)
    h3 = hs[2]
    rho = h1 * (h1 + h2) / (h2 * (h2 + h3))
    t2 = (0.5 * (1 - h / (3 * (h + h1))) + (1 - h / (2 * (h + h1))) * h / (6 * (h + h1 + h2))) \
        * h * (h + h1) * (h + h1 + h2) / (h1 * (h1 + h2) * (h1 + h2 + h3))
    return (c0 + t2, c1 - (1 + h1 / h2 + rho) * t2, c2 + (h1 / h2 + rho * (1 + h2 / h3)) * t2, -rho * (h1 / h2) * t2)


def _adams(denoiser, x, grid, schedule, weights, max_order):
    """Linear multistep x_{i+1} = x_i + h_i·Σ_j w_j·v_{i−j} with warm start q = min(max_order, i+1) (GEO §2.4–2.5)."""
    n = Nodes(schedule, grid)
    history = []  # velocities, newest first
    for i in range(n.steps):
        d = denoiser(x, n.t[i])
        history = [_velocity(x, d, n, i)] + history[: max_order - 1]
        q = min(max_order, i + 1)
        dt = n.t[i + 1] - n.t[i]
        past_steps = [n.t[i - j] - n.t[i - j - 1] for j in range(min(i, 3))]
        x = x + _lincomb(weights(dt, past_steps, q), history[:q]) * dt
    return x


@sampler
def ipndm(denoiser, x, grid, schedule, noise=None, *, max_order: int = 4):
    """iPNDM (Zhang & Chen 2023; GEO §2.4): Adams–Bashforth with the fixed uniform-step weights (orders 1–4) on
    the PF-ODE velocity, warm-started by lowering the order. Order min(max_order, 4) on a uniform grid in t only:
    on a non-uniform grid (EDM ρ, logSNR) h_i·v_{i−j} ≠ the step of the transformed variable; the O(h²) mismatch
    cancels (Σ_j w_j(½ + j) = 0) but the O(h³) one does not, so the method is order 2 there (measured)."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"ipndm max_order must be 1..4, got {max_order}")
    return _adams(denoiser, x, grid, schedule, lambda h, hs, q: _AB_WEIGHTS[q], max_order)


@sampler
def ipndm_v(denoiser, x, grid, schedule, noise=None, *, max_order: int = 4):
    """iPNDM_v (GEO §2.5): variable-step weights exactly as in diff-solvers. Order 2 for max_order = 2; the q = 3, 4
    weights match only the first three AB order conditions, so the method has order 3 for max_order ≥ 3."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"ipndm_v max_order must be 1..4, got {max_order}")
    return _adams(denoiser, x, grid, schedule, _ipndm_v_weights, max_order)


# ---------------------------------------------------------------------------------------------------------------------
# DPM-Solver (noise form) and DPM-Solver++ (data form), singlestep: NI §4.7–4.8
# ---------------------------------------------------------------------------------------------------------------------
@sampler
def dpm_singlestep(denoiser, x, grid, schedule, noise=None, *, order: int = 2, predict_x0: bool = False,
                   r1: float | None = None, r2: float | None = None, threshold: bool = False):
    """Singlestep DPM-Solver-k (`predict_x0=False`, noise form) or DPM-Solver++(kS) (`predict_x0=True`, data form),
    k = order ∈ {1, 2, 3}; intermediate nodes at λ_i + r·h (r1 = ½ for k = 2; r1 = ⅓, r2 = ⅔ for k = 3).
    k NFE per step. Order k in λ, on any grid (exponential integrator: exact for the linear part).

    The two forms are one exponential integrator under the duality (α, ε̂, λ) ↔ (σ, D, −λ) (NI §4.7–4.8): with
    noise form ρ = α, β = σ, M = ε̂, H = h and data form ρ = σ, β = α, M = D, H = −h, and φ1(z) = e^z − 1,

        first order   x_t = (ρ_t/ρ_s)·x_s − β_t·φ1(H)·M_s
        second order  … − β_t·φ1(H)/(2r1)·(M_1 − M_s)
        third order   u_2 = … − (r2/r1)·β_2·(φ1(r2H)/(r2H) − 1)·(M_1 − M_s),  x_t = … − β_t·(φ1(H)/H − 1)/r2·(M_2 − M_s)
    """
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver order must be 1, 2 or 3, got {order}")
    r1 = (0.5 if order == 2 else 1 / 3) if r1 is None else r1
    r2 = 2 / 3 if r2 is None else r2
    n = Nodes(schedule, grid)
    sign = -1.0 if predict_x0 else 1.0

    def rho_beta(alpha, sigma):
        return (sigma, alpha) if predict_x0 else (alpha, sigma)

    def model(xx, t, alpha, sigma):
        d = denoiser(xx, t)
        if predict_x0:
            return _threshold(d) if threshold else d
        return (xx - d * alpha) / sigma  # ε̂

    def node(r, i):
        """(t, α, σ, ρ, β) at λ_i + r·h_i."""
        t, alpha, sigma = (v[i] for v in n.between(r))
        return (t, alpha, sigma) + rho_beta(alpha, sigma)

    for i in range(n.steps):
        hh = sign * n.h(i)
        rho0, _ = rho_beta(n.alpha[i], n.sigma[i])
        rho1, beta1 = rho_beta(n.alpha[i + 1], n.sigma[i + 1])
        m0 = model(x, n.t[i], n.alpha[i], n.sigma[i])
        x_first = x * (rho1 / rho0) + m0 * (-beta1 * math.expm1(hh))
        if order == 1:
            x = x_first
            continue
        t_a, a_a, s_a, rho_a, beta_a = node(r1, i)
        m1 = model(x * (rho_a / rho0) + m0 * (-beta_a * math.expm1(r1 * hh)), t_a, a_a, s_a)
        if order == 2:
            x = x_first + (m1 - m0) * (-beta1 * math.expm1(hh) / (2 * r1))
            continue
        t_b, a_b, s_b, rho_b, beta_b = node(r2, i)
        u2 = x * (rho_b / rho0) + m0 * (-beta_b * math.expm1(r2 * hh)) \
            + (m1 - m0) * (-(r2 / r1) * beta_b * (math.expm1(r2 * hh) / (r2 * hh) - 1.0))
        m2 = model(u2, t_b, a_b, s_b)
        x = x_first + (m2 - m0) * (-(1 / r2) * beta1 * (math.expm1(hh) / hh - 1.0))
    return x


# ---------------------------------------------------------------------------------------------------------------------
# DPM-Solver++ multistep (data form): GEO §2.7 in (α, σ) form
# ---------------------------------------------------------------------------------------------------------------------
@sampler
def dpmpp_multistep(denoiser, x, grid, schedule, noise=None, *, order: int = 2, lower_order_final: bool = True,
                    threshold: bool = False, taylor_d2: bool = False):
    """DPM-Solver++(kM), k = order ∈ {1, 2, 3} (Lu et al. 2022, Alg. 2 and the official 3M update).
    x_{i+1} = (σ_{i+1}/σ_i)·x_i − α_{i+1}·φ1·M_i [− ½α_{i+1}φ1·Δ0 | + α_{i+1}(φ2·D1 − φ3·D2)], φ1 = e^{−h} − 1.
    Warm start by lower orders; `lower_order_final` makes the last step first order (the one before ≤ 2nd).
    1 NFE per step. Order in λ: 1 (k = 1), 2 (k = 2), and 2 for the published 3M update: D2 = (Δ0 − Δ1)/(r0 + r1)
    ≈ ½h²M'' while the exponential-integrator Taylor term is −α·h²φ3·M'', so the update misses half of it (local
    error O(h³); checked on a quadratic M, tests/test_samplers.py). `taylor_d2=True` uses −2αφ3·D2: order 3."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ multistep order must be 1, 2 or 3, got {order}")
    n = Nodes(schedule, grid)
    ms, lams = [], []  # model outputs and their λ, newest first
    for i, q in enumerate(_orders(n.steps, order, lower_order_final)):
        d = denoiser(x, n.t[i])
        ms, lams = [_threshold(d) if threshold else d] + ms[:2], [n.lam[i]] + lams[:2]
        h = n.h(i)
        a1 = n.alpha[i + 1]
        phi1 = math.expm1(-h)
        x_next = x * (n.sigma[i + 1] / n.sigma[i]) + ms[0] * (-a1 * phi1)
        if q == 2:
            r0 = (lams[0] - lams[1]) / h
            x_next = x_next + (ms[0] - ms[1]) * (-0.5 * a1 * phi1 / r0)
        elif q == 3:
            r0, r1 = (lams[0] - lams[1]) / h, (lams[1] - lams[2]) / h
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            delta0 = (ms[0] - ms[1]) / r0
            delta1 = (ms[1] - ms[2]) / r1
            d1 = delta0 + (delta0 - delta1) * (r0 / (r0 + r1))
            d2 = (delta0 - delta1) / (r0 + r1)
            x_next = x_next + d1 * (a1 * phi2) - d2 * (a1 * phi3 * (2.0 if taylor_d2 else 1.0))
        x = x_next
    return x


# ---------------------------------------------------------------------------------------------------------------------
# DEIS tAB (Zhang & Chen 2023): exponential integrator with ε̂ interpolated in VP time τ (GEO §2.6, NI §4.9)
# ---------------------------------------------------------------------------------------------------------------------
def _fit_vp_linear(sigma_max: float, sigma_min: float, eps_s: float = 1e-3) -> tuple[float, float]:
    """(β_d, β_min) of the linear-β VP map σ(τ) = √(exp(½β_dτ² + β_minτ) − 1) with σ(1) = σ_max, σ(ε_s) = σ_min
    (GEO §2.6; ≈ (17.538, −0.00477) for [0.002, 80])."""
    l1, l0 = math.log1p(sigma_max**2), math.log1p(sigma_min**2)
    beta_d = 2 * (l0 / eps_s - l1) / (eps_s - 1)
    return beta_d, l1 - beta_d / 2


@lru_cache(maxsize=256)
def deis_coefficients(sigmas: tuple[float, ...], order: int, quad_points: int = 64) -> tuple[tuple[float, ...], ...]:
    """C[i][j] = ∫_{τ_i}^{τ_{i+1}} (dσ/dτ)(τ)·ℓ_j(τ) dτ, ℓ_j the Lagrange basis on τ_i, τ_{i−1}, …, τ_{i−q+1}
    (q = min(i+1, order+1)), σ = σ_ve; Gauss–Legendre quadrature (GEO uses a 10 000-point Riemann sum)."""
    beta_d, beta_min = _fit_vp_linear(sigmas[0], sigmas[-1])
    sig = np.asarray(sigmas, dtype=np.float64)
    tau = (np.sqrt(beta_min**2 + 2 * beta_d * np.log1p(sig**2)) - beta_min) / beta_d
    nodes, weights = np.polynomial.legendre.leggauss(quad_points)
    out = []
    for i in range(len(sigmas) - 1):
        q = min(i + 1, order + 1)
        lo, hi = tau[i], tau[i + 1]
        u = 0.5 * (hi - lo) * nodes + 0.5 * (hi + lo)
        expo = np.exp(0.5 * beta_d * u**2 + beta_min * u)
        dsig = 0.5 * (beta_d * u + beta_min) * expo / np.sqrt(expo - 1.0)
        pts = tau[i - np.arange(q)]
        row = []
        for j in range(q):
            others = np.delete(pts, j)
            basis = np.prod((u[:, None] - others[None]) / (pts[j] - others[None]), axis=1) if q > 1 else 1.0
            row.append(float(0.5 * (hi - lo) * np.sum(weights * dsig * basis)))
        out.append(tuple(row))
    return tuple(out)


@sampler
def deis(denoiser, x, grid, schedule, noise=None, *, order: int = 3):
    """DEIS tAB-r (r = order ∈ 0..3: polynomial degree, r+1 past ε̂'s; tAB0 = DDIM) in VE variables:
    x_ve,{i+1} = x_ve,i + Σ_j C_ij·ε̂_{i−j}, ε̂ = (x − αD)/σ, coefficients by quadrature in the fitted VP time τ.
    Order r+1 in τ (warm start by lower degree)."""
    if not 0 <= order <= 3:
        raise ValueError(f"DEIS tAB order must be 0..3, got {order}")
    n = Nodes(schedule, grid)
    sig_ve = tuple(s / a for s, a in zip(n.sigma, n.alpha))
    coeffs = deis_coefficients(sig_ve, order)
    eps_hist = []
    for i in range(n.steps):
        d = denoiser(x, n.t[i])
        eps_hist = [(x - d * n.alpha[i]) / n.sigma[i]] + eps_hist[:order]
        a1 = n.alpha[i + 1]
        x = x * (a1 / n.alpha[i]) + _lincomb([c * a1 for c in coeffs[i]], eps_hist[: len(coeffs[i])])
    return x


# ---------------------------------------------------------------------------------------------------------------------
# UniPC (Zhao et al. 2023): unified predictor–corrector, data prediction, bh1 / bh2 (GEO §2.8)
# ---------------------------------------------------------------------------------------------------------------------
def _unipc_weights(rks: list[float], h: float, variant: str) -> tuple[list[float], list[float], float, float]:
    """(ρ^P, ρ^C, φ1 = e^{−h} − 1, B(h)) for data prediction: R[p, k] = r_k^p, b_p = g_p·(p+1)!/B."""
    hh = -h
    phi1 = math.expm1(hh)
    big_b = hh if variant == "bh1" else math.expm1(hh)
    q = len(rks)
    g, fact, b = phi1 / hh - 1.0, 1.0, []
    for p in range(q):
        b.append(g * fact / big_b)
        fact *= p + 2
        g = g / hh - 1.0 / fact
    r = np.array([[rk**p for rk in rks] for p in range(q)])
    rho_p = [] if q == 1 else [0.5] if q == 2 else np.linalg.solve(r[:-1, :-1], b[:-1]).tolist()
    rho_c = [0.5] if q == 1 else np.linalg.solve(r, b).tolist()
    return rho_p, rho_c, phi1, big_b


@sampler
def unipc(denoiser, x, grid, schedule, noise=None, *, order: int = 3, variant: str = "bh2",
          lower_order_final: bool = True, threshold: bool = False):
    """UniPC-p (UniP-p predictor + UniC corrector), data prediction, B(h) = h (bh1) or e^h − 1 (bh2).
    The corrector reuses the model output at the predicted point, so NFE = K; no corrector on the last step.
    Order p+1 in λ with the corrector (p on the last, uncorrected step; lower_order_final lowers p at the end)."""
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"UniPC variant must be 'bh1' or 'bh2', got {variant!r}")
    n = Nodes(schedule, grid)
    d = denoiser(x, n.t[0])
    ms, lams = [_threshold(d) if threshold else d], [n.lam[0]]  # newest first
    for i, q in enumerate(_orders(n.steps, order, lower_order_final)):
        h, a1 = n.h(i), n.alpha[i + 1]
        rks = [(lams[k] - lams[0]) / h for k in range(1, q)] + [1.0]
        diffs = [(ms[k] - ms[0]) / rks[k - 1] for k in range(1, q)]
        rho_p, rho_c, phi1, big_b = _unipc_weights(rks, h, variant)
        x_base = x * (n.sigma[i + 1] / n.sigma[i]) + ms[0] * (-a1 * phi1)
        x_pred = x_base if q == 1 else x_base + _lincomb(rho_p, diffs) * (-a1 * big_b)
        if i == n.steps - 1:
            x = x_pred
            break
        d = denoiser(x_pred, n.t[i + 1])
        m_new = _threshold(d) if threshold else d
        corr = (m_new - ms[0]) * rho_c[-1] if q == 1 else _lincomb(rho_c[:-1], diffs) + (m_new - ms[0]) * rho_c[-1]
        x = x_base + corr * (-a1 * big_b)
        ms, lams = [m_new] + ms[: order - 1], [n.lam[i + 1]] + lams[: order - 1]
    return x


# ---------------------------------------------------------------------------------------------------------------------
# a coefficient matrix as a sampler (NI §3.1: tuned §5.4 / §9, sharpened §5.3, or a stored file)
# ---------------------------------------------------------------------------------------------------------------------
@sampler
def coefficient_matrix(denoiser, x, grid, schedule, noise=None, *, matrix=None):
    """The sampler a Natural Inference triple (C, B, nodes) defines (NI eq. 3.1):

        ε_0 = x/σ(τ_0),   y_k = D(x_k, τ_k),   x_{k+1} = Σ_j C[k,j]·y_j + Σ_j B[k,j]·ε_j.

    `matrix` is any object with `times`, `sigmas` and `replay(denoiser, eps0, noise)`
    (`natural_inference.NIMatrix`); `grid` must be its nodes τ_0..τ_n in `schedule`'s time, since the coefficients
    hold only there. NFE = n."""
    if matrix is None:
        raise ValueError("coefficient_matrix needs matrix=… (an NIMatrix: tuned, sharpened or read from a file)")
    times = [float(v) for v in matrix.times]
    grid = [float(v) for v in grid]
    if len(grid) != len(times) or max(abs(a - b) for a, b in zip(grid, times)) > 1e-9 * max(1.0, abs(times[0])):
        raise ValueError(f"coefficient_matrix: the grid must be the matrix's {len(times)} nodes {times}, got {grid}")
    return matrix.replay(denoiser, x / float(matrix.sigmas[0]), noise)

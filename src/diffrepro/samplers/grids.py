"""Time grids: K steps → K+1 decreasing times in a schedule's own t, from the schedule's t_max to its t_min.

Grids are data: the sweep records the exact list it used. A grid built for one schedule is moved to another by equal
noise level λ (`convert_grid`), so e.g. an EDM ρ-grid chosen on a VP model is the same set of noise levels in the
VE coordinates an EDM-form sampler runs in.

| name | definition (k = 0..K) | source |
|---|---|---|
| uniform_t | t_k = t_max + k/K·(t_min − t_max) | NI §4.4–4.7 |
| quadratic_t | t_k = (√t_max + k/K·(√t_min − √t_max))² | DEIS / DPM-Solver "time_quadratic" (NI §4.9) |
| logsnr | λ uniform | GEO §3.1 "logsnr" |
| edm | σ_ve,k = (σ_max^{1/ρ} + k/K·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7 | GEO §3.1 "polynomial" |
| time_uniform | GEO §3.1: τ_k = (1 + k/K·(ε_s^{1/ρ} − 1))^ρ in the fitted linear-β VP time, ρ = 2 (DEIS) | GEO §3.1 |
| explicit | `t: [...]` (schedule time) or `sigma: [...]` (σ_ve) given in the options | GEO §2.9 `--t_steps` |
| respaced | improved-diffusion `space_timesteps(M, K)` on a discrete VP schedule, then t = 0 | NI §1.1 |
| gits | dynamic programming over a fine teacher grid (needs a denoiser; `samplers.gits`) | GEO §3.2 |
"""
from __future__ import annotations

import math

import torch

from ..errors import UserError

F64 = torch.float64


def _range(schedule, t_min=None, t_max=None) -> tuple[float, float]:
    return (float(schedule.t_min if t_min is None else t_min), float(schedule.t_max if t_max is None else t_max))


def uniform_t(schedule, steps: int, t_min=None, t_max=None) -> torch.Tensor:
    lo, hi = _range(schedule, t_min, t_max)
    return torch.linspace(hi, lo, steps + 1, dtype=F64)


def quadratic_t(schedule, steps: int, t_min=None, t_max=None) -> torch.Tensor:
    lo, hi = _range(schedule, t_min, t_max)
    return _ends(torch.linspace(math.sqrt(hi), math.sqrt(lo), steps + 1, dtype=F64) ** 2, lo, hi)


def logsnr(schedule, steps: int, t_min=None, t_max=None) -> torch.Tensor:
    lo, hi = _range(schedule, t_min, t_max)
    lam = torch.linspace(float(schedule.lambda_(hi)), float(schedule.lambda_(lo)), steps + 1, dtype=F64)
    return _ends(schedule.t_from_lambda(lam), lo, hi)


def edm(schedule, steps: int, rho: float = 7.0, t_min=None, t_max=None) -> torch.Tensor:
    lo, hi = _range(schedule, t_min, t_max)
    s_max, s_min = float(schedule.sigma_ve(hi)), float(schedule.sigma_ve(lo))
    k = torch.arange(steps + 1, dtype=F64) / steps
    sig = (s_max ** (1 / rho) + k * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _ends(schedule.t_from_sigma_ve(sig), lo, hi)


def time_uniform(schedule, steps: int, rho: float = 2.0, eps_s: float = 1e-3, t_min=None, t_max=None):
    from .solvers import _fit_vp_linear  # the DEIS map

    lo, hi = _range(schedule, t_min, t_max)
    s_max, s_min = float(schedule.sigma_ve(hi)), float(schedule.sigma_ve(lo))
    beta_d, beta_min = _fit_vp_linear(s_max, s_min, eps_s)
    k = torch.arange(steps + 1, dtype=F64) / steps
    tau = (1 + k * (eps_s ** (1 / rho) - 1)) ** rho
    sig = torch.sqrt(torch.expm1(0.5 * beta_d * tau**2 + beta_min * tau))
    return _ends(schedule.t_from_sigma_ve(sig), lo, hi)


def explicit(schedule, steps: int, t=None, sigma=None) -> torch.Tensor:
    if (t is None) == (sigma is None):
        raise UserError("grid 'explicit' needs exactly one of the options 't' (schedule times) or 'sigma' (σ_ve)")
    vals = torch.as_tensor(t if t is not None else sigma, dtype=F64)
    grid = vals if t is not None else schedule.t_from_sigma_ve(vals)
    if len(grid) != steps + 1:
        raise UserError(f"grid 'explicit' has {len(grid)} points but {steps} steps need {steps + 1}")
    return grid


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """improved-diffusion `space_timesteps(M, "count")` for one section: round(k·(M−1)/(count−1)), k = 0..count−1
    (NI §1.1: M = 1000, count = 5 → 0, 250, 500, 749, 999)."""
    if count == 1:
        return [0]
    stride = (num_timesteps - 1) / (count - 1)
    return sorted({int(round(k * stride)) for k in range(count)})


def respaced(schedule, steps: int) -> torch.Tensor:
    """`steps` respaced integer timesteps of a discrete VP schedule (largest first), then the clean end t = 0: each
    step's evaluation node is a trained timestep and the last step returns to clean data (NI §1.1, §4.1–4.2)."""
    if not hasattr(schedule, "t_of_index"):
        raise UserError(f"grid 'respaced' needs a discrete schedule (vp_discrete), not '{schedule.name}'")
    idx = space_timesteps(schedule.M, steps)[::-1]
    return torch.cat([schedule.t_of_index(torch.as_tensor(idx, dtype=F64)), torch.zeros(1, dtype=F64)])


def _ends(grid: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Pin the end points to the requested range (inverse maps round by ~1e-16)."""
    grid = grid.clone()
    grid[0], grid[-1] = hi, lo
    return grid


GRIDS = {"uniform_t": uniform_t, "quadratic_t": quadratic_t, "logsnr": logsnr, "edm": edm,
         "time_uniform": time_uniform, "explicit": explicit, "respaced": respaced}
DENOISER_GRIDS = ("gits",)  # grids that need the model (built by samplers.gits)


def make_grid(name: str, schedule, steps: int, **options) -> torch.Tensor:
    """K = `steps` steps of grid `name` in `schedule`'s t (float64, decreasing, K+1 points)."""
    if name not in GRIDS:
        known = sorted(GRIDS) + list(DENOISER_GRIDS)
        raise UserError(f"unknown grid '{name}' (known: {known})" if name not in DENOISER_GRIDS
                        else f"grid '{name}' needs a denoiser: build it with samplers.gits.gits_grid")
    if steps < 1:
        raise UserError(f"grid '{name}': need at least one step, got {steps}")
    try:
        return GRIDS[name](schedule, steps, **options)
    except TypeError as exc:
        raise UserError(f"bad options for grid '{name}': {exc}") from None


def convert_grid(grid, src, dst) -> torch.Tensor:
    """The same noise levels (equal λ) in `dst`'s time variable; identity when src is dst."""
    grid = torch.as_tensor(grid, dtype=F64)
    if src is dst:
        return grid
    return dst.t_from_lambda(src.lambda_(grid))


NAMED_GRIDS = ("quadratic_t", "uniform_t", "logsnr", "edm", "time_uniform")


def named_grid_of(times, schedule, atol: float = 1e-6) -> str:
    """The named grid (NAMED_GRIDS, default end points and options) whose K+1 points are `times` on `schedule`, else
    "explicit": how a coefficient matrix's nodes are labelled in the sweep's tables."""
    times = torch.as_tensor(times, dtype=F64)
    for name in NAMED_GRIDS:
        try:
            g = make_grid(name, schedule, len(times) - 1)
        except Exception:  # noqa: BLE001 - a grid this schedule cannot build (e.g. no σ range): not this one
            continue
        if g.shape == times.shape and float((g - times).abs().max()) <= atol:
            return name
    return "explicit"

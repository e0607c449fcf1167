"""AMED-Solver and AMED-Plugin (Zhou et al., "Fast ODE-based Sampling for Diffusion Models in Around 5 Steps",
CVPR 2024; the GEO toolbox's `amed-solver-main`): the step rule, pure (no network, no I/O).

A sampling trajectory lies almost in a 2-D plane, so the exact step x_{i+1} − x_i is (σ_{i+1} − σ_i) times the ODE
direction at some intermediate point (mean value theorem). AMED picks that point per step:

    s_i = σ_{i+1}^r · σ_i^{1−r},   u = x_i + (s_i − σ_i)·d_i,   d_u = (u − D(u, g·s_i))/s_i,
    x_{i+1} = x_i + c·(σ_{i+1} − σ_i)·d_u,                      d_i = (x_i − D(x_i, σ_i))/σ_i,

with r ∈ (0, 1), the direction scale c (`scale_dir`) and the time scale g (`scale_time`) chosen by a tiny learned
predictor (`diffrepro.amed`). r = ½, c = g = 1 is DPM-Solver-2 (GEO §2.3). The AMED-Plugin inserts the same
intermediate point s_i into every interval of a base solver's grid and runs the base solver on the split grid.

The decisions (r, c, g) arrive as options: one float for every step or a list with one value per step. Given them,
every coefficient is a Python float, so the sampler is linear in the denoiser outputs and traces into Natural
Inference matrices like any other; a learned solver is linear only once its decisions are fixed (docs/amed.md).
Both run in EDM coordinates (t = σ, α = 1), as the registry declares.
"""
from __future__ import annotations

from typing import Callable

from .solvers import Nodes, sampler

__all__ = ["amed_time", "per_step", "split_grid", "amed_solver", "make_plugin"]


def amed_time(sigma_cur: float, sigma_next: float, r: float) -> float:
    """The intermediate noise level s = σ_{i+1}^r · σ_i^{1−r} (geometric interpolation; r = ½ → √(σ_iσ_{i+1}))."""
    return float(sigma_next) ** float(r) * float(sigma_cur) ** (1.0 - float(r))


def per_step(value, steps: int, name: str) -> list[float]:
    """One float per step from a scalar or a list of `steps` values (ValueError otherwise)."""
    if isinstance(value, (int, float)):
        return [float(value)] * steps
    values = [float(v) for v in value]
    if len(values) != steps:
        raise ValueError(f"option '{name}' has {len(values)} values for {steps} steps")
    return values


def _check_edm(nodes: Nodes, what: str) -> None:
    if any(abs(a - 1.0) > 1e-12 for a in nodes.alpha) or any(abs(t - s) > 1e-12 * max(1.0, s)
                                                              for t, s in zip(nodes.t, nodes.sigma)):
        raise ValueError(f"{what} runs in EDM coordinates (t = σ, α = 1); got schedule '{nodes.schedule.name}'")
    if nodes.sigma[-1] <= 0:
        raise ValueError(f"{what} needs a grid ending at σ > 0 (the intermediate level σ_{{i+1}}^r σ_i^{{1−r}})")


def _check_r(rs: list[float]) -> None:
    bad = [r for r in rs if not 0.0 < r < 1.0]
    if bad:
        raise ValueError(f"AMED needs 0 < r < 1 in every step, got {bad}")


@sampler
def amed_solver(denoiser, x, grid, schedule, noise=None, *, r=0.5, scale_dir=1.0, scale_time=1.0):
    """AMED-Solver (GEO §3.3): 2 NFE per step (1 on the first step with `afs`). `r`, `scale_dir` (c) and
    `scale_time` (g): a float for all steps or one value per step. Order 2 in λ for r = ½, c = g = 1."""
    n = Nodes(schedule, grid)
    _check_edm(n, "AMED-Solver")
    rs, cs, gs = (per_step(v, n.steps, k) for v, k in ((r, "r"), (scale_dir, "scale_dir"), (scale_time, "scale_time")))
    _check_r(rs)
    for i in range(n.steps):
        sig, sig1 = n.sigma[i], n.sigma[i + 1]
        d = denoiser(x, n.t[i])
        s = amed_time(sig, sig1, rs[i])
        u = x + (x - d) * ((s - sig) / sig)                      # u = x_i + (s − σ_i)·d_i
        d_u = denoiser(u, gs[i] * s)
        x = x + (u - d_u) * (cs[i] * (sig1 - sig) / s)          # x_{i+1} = x_i + c·h_i·(u − D(u, g·s))/s
    return x


def split_grid(grid, r) -> list[float]:
    """The base grid with s_i = σ_{i+1}^r σ_i^{1−r} inserted into every interval (EDM σ): K steps → 2K steps."""
    grid = [float(g) for g in grid]
    rs = per_step(r, len(grid) - 1, "r")
    _check_r(rs)
    out = []
    for i, ri in enumerate(rs):
        out += [grid[i], amed_time(grid[i], grid[i + 1], ri)]
    return out + [grid[-1]]


def make_plugin(base_fn: Callable, base_options: dict, base_name: str) -> Callable:
    """AMED-Plugin around `base_fn` (iPNDM, DPM-Solver++, Euler, DPM-Solver-2; GEO §3.3): every interval of the
    base grid is split at the learned s_i, and the base solver (with its fixed options) runs on the split grid.
    K base intervals → 2K base steps, NFE = 2K × the base's per-step cost (− 1 with `afs`)."""

    @sampler
    def amed_plugin(denoiser, x, grid, schedule, noise=None, *, r=0.5):
        n = Nodes(schedule, grid)
        _check_edm(n, f"AMED-Plugin ({base_name})")
        return base_fn(denoiser, x, split_grid(n.t, r), schedule, noise, **base_options)

    amed_plugin.__name__ = f"amed_plugin_{base_name}"
    amed_plugin.__doc__ = f"AMED-Plugin on `{base_name}`: {make_plugin.__doc__.split(':', 1)[1].strip()}"
    return amed_plugin

"""High-accuracy PF-ODE solution from given initial noise: Heun (or RK4) on a fine EDM ρ=7 grid in VE coordinates,
with a self-consistency check (the same solve with half the steps; their difference bounds the reference error)."""
from __future__ import annotations

import torch

from ..diffusion.denoisers import prepare, reschedule
from .grids import convert_grid, edm
from .solvers import heun, rk4
from .sweep import native_schedule, to_data


REFERENCE_SOLVERS = {"heun": heun, "rk4": rk4}


def reference_solution(model_denoiser, model_schedule, eps0: torch.Tensor, steps: int = 500, solver: str = "heun",
                       rho: float = 7.0) -> torch.Tensor:
    """Data-space end point x(t_min)/α(t_min) of the PF-ODE started at σ(t_max)·ε₀ in the model's coordinates."""
    sched = native_schedule("edm", model_schedule)
    grid = convert_grid(edm(model_schedule, steps, rho=rho), model_schedule, sched)
    den = reschedule(model_denoiser, model_schedule, sched)
    prepare(den, grid.tolist())
    x = eps0 * float(sched.sigma(float(grid[0])))
    return to_data(REFERENCE_SOLVERS[solver](den, x, grid, sched), sched, float(grid[-1]))


def self_consistency(model_denoiser, model_schedule, eps0, steps: int = 500, solver: str = "heun") -> dict:
    """Reference at `steps` and `steps // 2`: RMS (over samples) of the per-sample RMSE between the two."""
    fine = reference_solution(model_denoiser, model_schedule, eps0, steps, solver)
    coarse = reference_solution(model_denoiser, model_schedule, eps0, max(2, steps // 2), solver)
    diff = (fine - coarse).reshape(len(fine), -1).double()
    return {"reference": fine, "steps": steps, "half_steps": max(2, steps // 2),
            "self_consistency_rmse": float(diff.pow(2).mean(1).sqrt().mean()),
            "self_consistency_max": float(diff.abs().max())}

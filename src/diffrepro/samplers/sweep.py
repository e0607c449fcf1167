"""One sweep cell, pure (no I/O): (model denoiser, sampler, grid, NFE, initial noise) → data-space samples + record.

The model denoiser lives in the model's schedule; each sampler runs in its registry coordinates ("model", "edm" =
VE with the model's σ range, "flow"); grids are chosen on the model's schedule and moved by equal λ. Every sampler
starts from the same point x = σ(t_max)·ε₀ (the same noise level in every coordinate system) and its output is
returned in data space, x_K/α(t_K) (or D(x_K) with denoise_to_zero).
"""
from __future__ import annotations

import time

import torch

from ..diffusion.denoisers import reschedule
from ..diffusion.schedules import EDM, FlowMatching
from ..errors import UserError
from .counting import CountingDenoiser, evaluation_times
from .grids import convert_grid, make_grid
from .registry import get_sampler
from .solvers import TorchNoise


def native_schedule(coords: str, model_schedule):
    """The schedule a sampler runs in, spanning the model's noise levels."""
    if coords == "model":
        return model_schedule
    lo, hi = float(model_schedule.t_min), float(model_schedule.t_max)
    if coords == "edm":
        return EDM(sigma_min=float(model_schedule.sigma_ve(lo)), sigma_max=float(model_schedule.sigma_ve(hi)))
    if coords == "flow":
        to_flow = lambda t: float(torch.sigmoid(-torch.as_tensor(model_schedule.lambda_(t))))  # noqa: E731
        return FlowMatching(t_min=to_flow(lo), t_max=to_flow(hi))
    raise ValueError(f"unknown sampler coordinates '{coords}'")


def to_data(x, schedule, t_end: float):
    """Native state at t_end → data space (VE coordinates x/α)."""
    return x / float(schedule.alpha(t_end))


def initial_noise(shape, params_seed: int, cell_seed: int, dtype=torch.float32) -> torch.Tensor:
    """ε₀: a deterministic function of (params seed, cell seed), identical for every sampler and the reference."""
    gen = torch.Generator().manual_seed(noise_seed(params_seed, cell_seed))
    return torch.randn(tuple(shape), generator=gen, dtype=dtype)


def noise_seed(params_seed: int, cell_seed: int) -> int:
    return (int(params_seed) * 1_000_003 + int(cell_seed) * 7919 + 17) % (2**63 - 1)


def run_cell(model_denoiser, model_schedule, sampler: str, model_grid, eps0: torch.Tensor, *, options=None,
             sde_seed: int = 0, batch_size: int | None = None) -> tuple[torch.Tensor, dict]:
    """Run `sampler` on the model-schedule grid `model_grid` from ε₀, in batches. Returns (samples, record) where
    record = {nfe_measured (per batch), wall_s, t_grid (native coordinates), coords}."""
    spec = get_sampler(sampler)
    fn = spec.bind(options)
    opts = spec.merged_options(options)
    sched = native_schedule(spec.coords, model_schedule)
    grid = convert_grid(model_grid, model_schedule, sched)
    den = CountingDenoiser(reschedule(model_denoiser, model_schedule, sched))
    bs = batch_size or len(eps0)
    outs, nfe = [], set()
    start = time.perf_counter()
    times = grid.tolist()
    den.prepare(evaluation_times(fn, times, sched))  # every call's scalars in one float64 evaluation
    for b0 in range(0, len(eps0), bs):
        x = eps0[b0:b0 + bs] * float(sched.sigma(float(grid[0])))
        den.reset()
        noise = TorchNoise(torch.Generator(device=x.device).manual_seed(int(sde_seed) + b0))
        with torch.no_grad():
            out = fn(den, x, times, sched, noise)
        outs.append(out if opts.get("denoise_to_zero") else to_data(out, sched, float(grid[-1])))
        nfe.add(den.nfe)
    wall = time.perf_counter() - start
    if len(nfe) != 1:  # pragma: no cover - a sampler must not branch on data
        raise RuntimeError(f"{sampler}: NFE differs between batches {sorted(nfe)}")
    samples = outs[0] if len(outs) == 1 else torch.cat(outs)
    return samples, {"nfe_measured": nfe.pop(), "wall_s": wall, "t_grid": times, "coords": spec.coords}


def model_grid(grid_name: str, model_schedule, steps: int, grid_options: dict | None = None, gits=None):
    """A grid on the model's schedule; `gits` is a callable steps → grid for the denoiser-built GITS grid."""
    if grid_name == "gits":
        if gits is None:
            raise UserError("grid 'gits' needs the model (use the sweep)")
        return gits(steps)
    return make_grid(grid_name, model_schedule, steps, **(grid_options or {}))


def model_sampling(cfg: dict, model: str) -> dict:
    """The `sampling` section with `sampling.per_model.<model>` applied (reference options merged key by key)."""
    base = {k: v for k, v in cfg["sampling"].items() if k != "per_model"}
    over = cfg["sampling"].get("per_model", {}).get(model, {})
    grid_options = {g: {**base.get("grid_options", {}).get(g, {}), **over.get("grid_options", {}).get(g, {})}
                    for g in {*base.get("grid_options", {}), *over.get("grid_options", {})}}
    return {**base, **over, "reference": {**base.get("reference", {}), **over.get("reference", {})},
            "grid_options": grid_options}

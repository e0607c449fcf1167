"""Train one AMED predictor for a model (one (model, sampler, NFE) of `sampling.amed`), pure of I/O: the sampler's
recommended grid for that NFE on the model's schedule, moved into EDM coordinates by equal λ as the sweep does, and
training noises of their own seed (never the evaluation seeds)."""
from __future__ import annotations

import time

from ..diffusion.denoisers import reschedule
from ..errors import UserError
from ..samplers import convert_grid, get_sampler, make_grid
from ..samplers.registry import AMED_SAMPLERS
from ..samplers.sweep import initial_noise, native_schedule
from .distill import distill

AMED_TRAIN_SEED = 2_000_000  # training noises are not evaluation seeds


def amed_settings(sampling: dict, model: str) -> dict:
    """`sampling.amed` with `sampling.amed.per_model.<model>` applied, defaults filled."""
    amed = {"nfe": [], "n_train": 64, "iterations": 60, "lr": 0.05, "teacher": "heun", "teacher_points": 3,
            "scale_dir": 0.0, "scale_time": 0.0, **{k: v for k, v in sampling.get("amed", {}).items() if k != "per_model"}}
    return {**amed, **sampling.get("amed", {}).get("per_model", {}).get(model, {})}


def check_request(sampling: dict, sampler: str, nfe: int) -> tuple[dict, int]:
    """(merged sampler options, steps) for `sampler` at exactly `nfe` calls, or a UserError."""
    if sampler not in AMED_SAMPLERS:
        raise UserError(f"--solver '{sampler}' is not an AMED sampler (known: {list(AMED_SAMPLERS)})")
    spec = get_sampler(sampler)
    options = spec.concrete_options(nfe, spec.merged_options(sampling.get("sampler_options", {}).get(sampler)))
    steps = spec.steps_for_nfe(nfe, options=options)
    if steps is None:
        raise UserError(f"sampling.amed.nfe: {sampler} cannot make exactly {nfe} denoiser calls "
                        f"({spec.evals_per_step(options)} per step, afs={bool(options.get('afs'))}); "
                        f"set sampling.sampler_options.{sampler}.afs (true, or 'auto') to reach odd NFE")
    return options, steps


def training_grid(sampling: dict, sampler: str, nfe: int, model_schedule):
    """(options, model-schedule grid, EDM schedule, EDM grid) for `sampler` at exactly `nfe` calls."""
    spec = get_sampler(sampler)
    options, steps = check_request(sampling, sampler, nfe)
    grid = make_grid(spec.default_grid, model_schedule, steps, **sampling.get("grid_options", {}).get(spec.default_grid, {}))
    sched = native_schedule(spec.coords, model_schedule)
    return options, grid, sched, convert_grid(grid, model_schedule, sched)


def fit_predictor(model_denoiser, model_schedule, data_shape, sampling: dict, model: str, sampler: str, nfe: int,
                  params_seed: int, device="cpu"):
    """(predictor, summary) for `sampler` at `nfe` on this model (summary gains grid, timings, settings)."""
    cfg = amed_settings(sampling, model)
    options, grid, sched, native_grid = training_grid(sampling, sampler, nfe, model_schedule)
    eps = initial_noise((int(cfg["n_train"]), *data_shape), params_seed, AMED_TRAIN_SEED).to(device)
    x0 = eps * float(sched.sigma(float(native_grid[0])))
    den = reschedule(model_denoiser, model_schedule, sched)
    start = time.perf_counter()
    predictor, summary = distill(sampler, options, den, sched, native_grid.tolist(), x0,
                                 iterations=cfg["iterations"], lr=cfg["lr"], teacher=cfg["teacher"],
                                 teacher_points=cfg["teacher_points"], scale_dir=cfg["scale_dir"],
                                 scale_time=cfg["scale_time"], seed=params_seed)
    summary.update({"model": model, "nfe": int(nfe), "grid": get_sampler(sampler).default_grid,
                    "model_t_grid": [float(t) for t in grid], "train_wall_s": time.perf_counter() - start,
                    "settings": cfg, "train_seed": AMED_TRAIN_SEED})
    return predictor, summary

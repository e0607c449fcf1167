"""Sample one model with one sampler over every (grid × NFE × seed) cell of the params `sampling` section, or compute
the reference PF-ODE solution (`--reference`).

Outputs (read by `evaluate`): S.npz with one float32 array per cell keyed `GRID/nfeN/seedK` (data space, images
NCHW) and S.json = {model, sampler, cells: [{key, grid, nfe, nfe_measured, seed, wall_s, t_grid, ...}], skipped}.
`--reference` writes `_reference.npz` keyed `seedK` and `_reference.json` (solver, steps, self-consistency).
The initial noise of seed K is the same for every sampler and the reference (samplers.sweep.initial_noise).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..samplers.sweep import model_sampling
from . import add_params_arg, section

GITS_WARMUP_SEED = 1_000_000  # warm-up noises are not evaluation seeds (GEO §3.2)


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="a key of the params file's `models` section")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--sampler", help="a sampler name (diffrepro.samplers.SAMPLERS)")
    what.add_argument("--reference", action="store_true", help="high-accuracy PF-ODE reference solution")
    parser.add_argument("--checkpoint", required=True, help="results/models/M/model.pt")
    parser.add_argument("--out", required=True, help="results/samples/M/S.npz (S.json is written beside it)")
    parser.add_argument("--amed-predictor", action="append", default=[], metavar="FILE",
                        help="AMED predictor (`amed train` output) for an AMED sampler; one per NFE. Given any, the "
                             "AMED cells at other NFE are skipped")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.num_threads wins)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def resolve_grids(sampling: dict, sampler_name: str) -> list[str]:
    """Grid names of the sweep for one sampler (`default` = the sampler's recommended grid), checked, unique."""
    from ..errors import UserError
    from ..samplers import GRIDS, get_sampler

    spec = get_sampler(sampler_name)
    names = []
    for i, g in enumerate(sampling["grids"]):
        name = spec.default_grid if g == "default" else g
        if name not in GRIDS and name != "gits":
            raise UserError(f"sampling.grids[{i}] = '{g}' is not a grid (known: {sorted(GRIDS) + ['gits', 'default']})")
        if name not in names:
            names.append(name)
    for key in sampling.get("grid_options", {}):
        if key not in GRIDS and key != "gits":
            raise UserError(f"sampling.grid_options.{key}: not a grid (known: {sorted(GRIDS) + ['gits']})")
    return names


def plan(sampling: dict, sampler_name: str) -> tuple[list[dict], list[dict]]:
    """(cells, skipped): every (grid, nfe, seed) with its step count; unrealisable NFE are skipped, with the reason."""
    from ..samplers import get_sampler

    spec = get_sampler(sampler_name)
    user_opts = sampling.get("sampler_options", {}).get(sampler_name)
    opts = spec.merged_options(user_opts)
    afs, dz = bool(opts.get("afs")), bool(opts.get("denoise_to_zero"))
    per_step = spec.evals_per_step(user_opts)
    cells, skipped = [], []
    for grid in resolve_grids(sampling, sampler_name):
        for nfe in sampling["nfe"]:
            steps = spec.steps_for_nfe(nfe, options=user_opts)
            for seed in sampling["seeds"]:
                key = f"{grid}/nfe{nfe}/seed{seed}"
                if steps is None:
                    skipped.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed,
                                    "reason": f"{sampler_name} uses {per_step} NFE per step "
                                              f"(afs={afs}, denoise_to_zero={dz}): no whole number of steps"})
                else:
                    cells.append({"key": key, "grid": grid, "nfe": nfe, "seed": seed, "steps": steps})
    return cells, skipped


def _progress(total: int, disable: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=disable, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=False)


def _load(cfg, args):
    import torch

    from .. import sources

    model = sources.load_for_params(cfg, args.model, args.checkpoint, args.params, args.threads)
    shape = (model_sampling(cfg, args.model)["n_samples"], *model.data_shape)
    torch.manual_seed(int(cfg["seed"]))
    return model.denoiser(), model.schedule, shape, model.device


def _gits_builder(sampling, cfg, denoiser, schedule, shape, device):
    """steps → GITS grid on the model schedule; the teacher runs once, lazily (EDM coordinates, GEO §3.2)."""
    from ..diffusion.denoisers import reschedule
    from ..samplers import convert_grid
    from ..samplers.grids import edm
    from ..samplers.gits import GITS
    from ..errors import UserError
    from ..samplers.sweep import initial_noise, native_schedule

    o = {"coeff": 1.15, "teacher_steps": 60, "warmup": 256, "metric": "dev", "rho": 7.0, "teacher": "ipndm",
         **sampling.get("grid_options", {}).get("gits", {})}
    state: dict = {}

    def build(steps: int):
        if steps >= int(o["teacher_steps"]):
            raise UserError(f"GITS chooses {steps} steps from a {o['teacher_steps']}-step teacher grid: raise "
                            f"sampling.grid_options.gits.teacher_steps")
        if "gits" not in state:
            sched = native_schedule("edm", schedule)
            teacher_grid = convert_grid(edm(schedule, int(o["teacher_steps"]), rho=float(o["rho"])), schedule, sched)
            eps = initial_noise((int(o["warmup"]), *shape[1:]), cfg["seed"], GITS_WARMUP_SEED).to(device)
            x = eps * float(sched.sigma(float(teacher_grid[0])))
            state["sched"] = sched
            state["gits"] = GITS(reschedule(denoiser, schedule, sched), sched, teacher_grid, x, coeff=float(o["coeff"]),
                                 metric=o["metric"], teacher=o["teacher"])
        return convert_grid(state["gits"](steps), state["sched"], schedule)

    unknown = set(o) - {"coeff", "teacher_steps", "warmup", "metric", "rho", "teacher"}
    if unknown:
        raise UserError(f"sampling.grid_options.gits: unknown option(s) {sorted(unknown)}")
    return build, state


def _coordinate_problem(coords: str, schedule, grid) -> str | None:
    """Why a grid cannot be moved into a sampler's coordinates (None if it can)."""
    if coords == "model":
        return None
    if float(grid[-1]) == 0.0:
        return f"grid ends at t = 0 (clean); samplers in {coords} coordinates cannot step to σ = 0"
    if float(schedule.alpha(float(grid[0]))) <= 0.0:
        return (f"grid starts at pure noise (α = 0) of schedule '{schedule.name}', which has no σ_ve; samplers in "
                f"{coords} coordinates need the model schedule's t_max < 1")
    return None


def _amed_predictors(args) -> dict:
    """NFE → (path, predictor) from `--amed-predictor` files, checked against the model and sampler."""
    from ..amed import load_predictor
    from ..errors import UserError

    out = {}
    for path in args.amed_predictor:
        predictor, payload = load_predictor(path)
        if payload["sampler"] != args.sampler or payload["model"] != args.model:
            raise UserError(f"{path} is a predictor for {payload['model']}/{payload['sampler']}, not "
                            f"{args.model}/{args.sampler}")
        if payload["nfe"] in out:
            raise UserError(f"two AMED predictors for NFE {payload['nfe']}: {out[payload['nfe']][0]} and {path}")
        out[payload["nfe"]] = (path, predictor)
    return out


def _amed_decisions(predictor, sampler: str, schedule, grid) -> dict:
    """The predictor's decisions (one float per step) on a cell's grid in the sampler's coordinates."""
    from ..amed import decisions_for
    from ..samplers import convert_grid, get_sampler
    from ..samplers.sweep import native_schedule

    native = native_schedule(get_sampler(sampler).coords, schedule)
    return decisions_for(predictor, convert_grid(grid, schedule, native).tolist())


def run_sampler(cfg, args) -> int:
    import numpy as np

    from .. import io
    from ..errors import UserError
    from ..samplers import get_sampler
    from ..samplers.sweep import initial_noise, model_grid, noise_seed, run_cell

    sampling = model_sampling(cfg, args.model)
    get_sampler(args.sampler)
    options = sampling.get("sampler_options", {}).get(args.sampler)
    cells, skipped = plan(sampling, args.sampler)
    predictors = _amed_predictors(args)
    if args.amed_predictor and not args.sampler.startswith("amed"):
        raise UserError(f"--amed-predictor is for AMED samplers, not '{args.sampler}'")
    if predictors:  # a learned sampler runs only where it was trained
        skipped += [{**{k: c[k] for k in ("key", "grid", "nfe", "seed")},
                     "reason": f"no AMED predictor for NFE {c['nfe']} (sampling.amed.nfe)"}
                    for c in cells if c["nfe"] not in predictors]
        cells = [c for c in cells if c["nfe"] in predictors]
    denoiser, schedule, shape, device = _load(cfg, args)
    gits, gits_state = _gits_builder(sampling, cfg, denoiser, schedule, shape, device)
    grid_opts = sampling.get("grid_options", {})
    arrays, records = {}, []
    noises = {s: initial_noise(shape, cfg["seed"], s).to(device) for s in sampling["seeds"]}
    start = time.perf_counter()
    bar = _progress(len(cells), args.no_progress, f"sample {args.model}/{args.sampler}")
    for cell in cells:
        g0 = time.perf_counter()
        try:
            grid = model_grid(cell["grid"], schedule, cell["steps"], grid_opts.get(cell["grid"]), gits)
        except UserError as exc:  # a grid this schedule cannot make (e.g. respaced on a continuous schedule)
            skipped.append({**{k: cell[k] for k in ("key", "grid", "nfe", "seed")}, "reason": str(exc)})
            bar.update(1)
            continue
        grid_s = time.perf_counter() - g0
        reason = _coordinate_problem(get_sampler(args.sampler).coords, schedule, grid)
        if reason:
            skipped.append({**{k: cell[k] for k in ("key", "grid", "nfe", "seed")}, "reason": reason})
            bar.update(1)
            continue
        amed = {}
        if cell["nfe"] in predictors:
            path, predictor = predictors[cell["nfe"]]
            amed = {"amed": {"predictor": str(path), **_amed_decisions(predictor, args.sampler, schedule, grid)}}
        cell_options = {**(options or {}), **{k: v for k, v in amed.get("amed", {}).items() if k != "predictor"}}
        out, rec = run_cell(denoiser, schedule, args.sampler, grid, noises[cell["seed"]], options=cell_options,
                            sde_seed=noise_seed(cfg["seed"], cell["seed"]) + 1, batch_size=sampling["batch_size"])
        arrays[cell["key"]] = out.detach().cpu().float().numpy()
        records.append({"key": cell["key"], "grid": cell["grid"], "nfe": cell["nfe"],
                        "nfe_measured": rec["nfe_measured"], "seed": cell["seed"], "wall_s": rec["wall_s"],
                        "t_grid": rec["t_grid"], "coords": rec["coords"], "steps": cell["steps"],
                        "model_t_grid": [float(v) for v in grid], "grid_wall_s": grid_s,
                        "noise_seed": noise_seed(cfg["seed"], cell["seed"]),
                        **({"sde_seed": noise_seed(cfg["seed"], cell["seed"]) + 1}
                           if get_sampler(args.sampler).stochastic else {}),
                        **({"gits_indices": gits_state["gits"].indices[cell["steps"]]} if cell["grid"] == "gits"
                           else {}), **amed})
        bar.update(1)
    bar.close()
    out_path = Path(args.out)
    manifest = {"model": args.model, "sampler": args.sampler, "cells": records, "skipped": skipped,
                "options": get_sampler(args.sampler).merged_options(options), "params_seed": cfg["seed"],
                "n_samples": shape[0], "wall_s": time.perf_counter() - start}
    io.ensure_writable_dir(out_path.parent)
    io.write_with(out_path, lambda tmp: np.savez(tmp, **arrays))
    io.write_json(out_path.with_suffix(".json"), manifest)
    io.write_provenance(out_path, sampling, seed=cfg["seed"], model=args.model, sampler=args.sampler)
    print(f"{args.model}/{args.sampler}: {len(records)} cells ({len(skipped)} skipped) in "
          f"{manifest['wall_s']:.1f} s → {out_path}")
    return 0


def run_reference(cfg, args) -> int:
    import numpy as np

    from .. import io
    from ..samplers.reference import self_consistency
    from ..samplers.sweep import initial_noise, noise_seed

    sampling = model_sampling(cfg, args.model)
    ref = sampling["reference"]
    steps, solver = int(ref.get("steps", 500)), ref.get("solver", "heun")
    denoiser, schedule, shape, device = _load(cfg, args)
    arrays, seeds = {}, []
    start = time.perf_counter()
    bar = _progress(len(sampling["seeds"]), args.no_progress, f"reference {args.model}")
    for seed in sampling["seeds"]:
        eps = initial_noise(shape, cfg["seed"], seed).to(device)
        res = self_consistency(denoiser, schedule, eps, steps, solver)
        arrays[f"seed{seed}"] = res.pop("reference").detach().cpu().float().numpy()
        seeds.append({"seed": seed, "noise_seed": noise_seed(cfg["seed"], seed), **res})
        bar.update(1)
    bar.close()
    out_path = Path(args.out)
    manifest = {"model": args.model, "solver": solver, "steps": steps, "grid": "edm", "rho": 7.0,
                "seeds": seeds, "params_seed": cfg["seed"], "wall_s": time.perf_counter() - start}
    io.ensure_writable_dir(out_path.parent)
    io.write_with(out_path, lambda tmp: np.savez(tmp, **arrays))
    io.write_json(out_path.with_suffix(".json"), manifest)
    io.write_provenance(out_path, sampling, seed=cfg["seed"], model=args.model, reference=True)
    worst = max(s["self_consistency_rmse"] for s in seeds)
    print(f"{args.model}/reference: {solver} {steps} steps, self-consistency RMSE {worst:.2e} (vs {steps // 2} "
          f"steps) in {manifest['wall_s']:.1f} s → {out_path}")
    return 0


def run(args) -> int:
    from .. import config
    from ..samplers import get_sampler

    if Path(args.out).suffix != ".npz":
        from ..errors import UserError

        raise UserError(f"--out {args.out}: the sample file must end in .npz (its manifest .json is written beside it)")
    cfg = config.load(args.params)
    section(cfg, "models", args.model, args.params)
    if args.sampler is not None:
        get_sampler(args.sampler)  # unknown names fail before any model is loaded
        resolve_grids(model_sampling(cfg, args.model), args.sampler)
        return run_sampler(cfg, args)
    return run_reference(cfg, args)

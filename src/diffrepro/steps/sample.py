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

from ..samplers.plan import resolve_grids
from ..samplers.sweep import model_sampling
from . import add_params_arg, section

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


def run_sampler(cfg, args) -> int:
    import numpy as np

    from .. import io
    from ..errors import UserError
    from ..amed import load_predictors
    from ..samplers import get_sampler
    from ..samplers.plan import amed_decisions, coordinate_problem, gits_grid_builder, plan
    from ..samplers.sweep import initial_noise, model_grid, noise_seed, run_cell

    sampling = model_sampling(cfg, args.model)
    get_sampler(args.sampler)
    options = sampling.get("sampler_options", {}).get(args.sampler)
    cells, skipped = plan(sampling, args.sampler)
    predictors = load_predictors(args.amed_predictor, args.model, args.sampler)
    if args.amed_predictor and not args.sampler.startswith("amed"):
        raise UserError(f"--amed-predictor is for AMED samplers, not '{args.sampler}'")
    if predictors:  # a learned sampler runs only where it was trained
        skipped += [{**{k: c[k] for k in ("key", "grid", "nfe", "seed")},
                     "reason": f"no AMED predictor for NFE {c['nfe']} (sampling.amed.nfe)"}
                    for c in cells if c["nfe"] not in predictors]
        cells = [c for c in cells if c["nfe"] in predictors]
    denoiser, schedule, shape, device = _load(cfg, args)
    gits, gits_state = gits_grid_builder(sampling, cfg, denoiser, schedule, shape, device)
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
        reason = coordinate_problem(get_sampler(args.sampler).coords, schedule, grid)
        if reason:
            skipped.append({**{k: cell[k] for k in ("key", "grid", "nfe", "seed")}, "reason": reason})
            bar.update(1)
            continue
        amed = {}
        if cell["nfe"] in predictors:
            path, predictor = predictors[cell["nfe"]]
            amed = {"amed": {"predictor": str(path), **amed_decisions(predictor, args.sampler, schedule, grid)}}
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

"""Sample one model with one sampler over every (grid × NFE × seed) cell of the params `sampling` section, or compute
the reference PF-ODE solution (`--reference`).

Outputs (read by `evaluate`): S.npz with one float32 array per cell keyed `GRID/nfeN/seedK` (data space, images
NCHW) and S.json = {model, sampler, cells: [{key, grid, nfe, nfe_measured, seed, wall_s, t_grid, ...}], skipped}.
`--reference` writes `_reference.npz` keyed `seedK` and `_reference.json` (solver, steps, self-consistency).
The initial noise of seed K is the same for every sampler and the reference (samplers.sweep.initial_noise).
A coefficient-matrix sampler (ni_tuned, ni_sharp, ni_file_<name>) runs its `--matrix` files, each on its own nodes.
Several samplers of one model may run in one process (`--sampler A B --out A.npz B.npz`; `sampling.jobs:
per_model`): the model is loaded and the GITS teacher run once; each file is the same as from its own process.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..samplers.plan import resolve_grids
from ..samplers.sweep import model_sampling
from . import add_params_arg, section, write_sample_file


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="a key of the params file's `models` section")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--sampler", nargs="+", help="sampler name(s) (diffrepro.samplers.SAMPLERS)")
    what.add_argument("--reference", action="store_true", help="high-accuracy PF-ODE reference solution")
    parser.add_argument("--checkpoint", required=True, help="results/models/M/model.pt")
    parser.add_argument("--out", required=True, nargs="+",
                        help="results/samples/M/S.npz (S.json is written beside it), one per --sampler")
    parser.add_argument("--amed-predictor", action="append", default=[], metavar="FILE",
                        help="AMED predictor (`amed train` output) for an AMED sampler; one per (sampler, NFE). Given "
                             "any for a sampler, its AMED cells at other NFE are skipped")
    parser.add_argument("--matrix", action="append", default=[], metavar="SAMPLER=FILE",
                        help="NI coefficient matrix (.npz) of a matrix sampler (ni_tuned, ni_sharp, ni_file_<name>); "
                             "one per (sampler, NFE); its cells run on the matrix's own nodes")
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


def run_samplers(cfg, args) -> int:
    from ..amed import decisions_on_grid, predictors_by_sampler
    from ..natural_inference.sweep import matrix_files, matrix_plans
    from ..samplers import get_sampler
    from ..samplers.plan import gits_grid_builder, plan, sample_cells

    sampling = model_sampling(cfg, args.model)
    predictors = predictors_by_sampler(args.amed_predictor, args.model, args.sampler)
    files = matrix_files(args.matrix, args.sampler)
    plans = {s: plan(sampling, s, trained_nfe=set(predictors[s])) for s in args.sampler if s not in files}
    denoiser, schedule, shape, device = _load(cfg, args)
    matrices = matrix_plans(sampling, files, schedule, plans)  # node-checked on this schedule; their cells join plans
    gits = gits_grid_builder(sampling, cfg, denoiser, schedule, shape, device)  # one teacher run for all samplers
    outputs = []
    for sampler in args.sampler:  # sample everything first, then write: no partial outputs
        cells, skipped = plans[sampler]
        start = time.perf_counter()
        with _progress(len(cells), args.no_progress, f"sample {args.model}/{sampler}") as bar:
            arrays, records = sample_cells(cfg, sampling, sampler, cells, skipped, predictors[sampler],
                                           lambda p, grid, s=sampler: decisions_on_grid(p, s, schedule, grid),
                                           denoiser, schedule, shape, device, bar, gits=gits, matrices=matrices)
        options = sampling.get("sampler_options", {}).get(sampler)
        outputs.append((sampler, arrays, {"model": args.model, "sampler": sampler, "cells": records,
                                          "skipped": skipped, "options": get_sampler(sampler).merged_options(options),
                                          "params_seed": cfg["seed"], "n_samples": shape[0],
                                          "wall_s": time.perf_counter() - start}))
    for out, (sampler, arrays, manifest) in zip(args.out, outputs):
        write_sample_file(out, arrays, manifest, sampling, cfg["seed"], model=args.model, sampler=sampler)
        print(f"{args.model}/{sampler}: {len(manifest['cells'])} cells ({len(manifest['skipped'])} skipped) in "
              f"{manifest['wall_s']:.1f} s → {out}")
    return 0


def run_reference(cfg, args) -> int:
    from ..samplers.plan import reference_cells

    sampling = model_sampling(cfg, args.model)
    steps, solver = int(sampling["reference"].get("steps", 500)), sampling["reference"].get("solver", "heun")
    denoiser, schedule, shape, device = _load(cfg, args)
    start = time.perf_counter()
    with _progress(len(sampling["seeds"]), args.no_progress, f"reference {args.model}") as bar:
        arrays, seeds = reference_cells(cfg, sampling, denoiser, schedule, shape, device, bar)
    manifest = {"model": args.model, "solver": solver, "steps": steps, "grid": "edm", "rho": 7.0,
                "seeds": seeds, "params_seed": cfg["seed"], "wall_s": time.perf_counter() - start}
    write_sample_file(args.out, arrays, manifest, sampling, cfg["seed"], model=args.model, reference=True)
    worst = max(s["self_consistency_rmse"] for s in seeds)
    print(f"{args.model}/reference: {solver} {steps} steps, self-consistency RMSE {worst:.2e} (vs {steps // 2} "
          f"steps) in {manifest['wall_s']:.1f} s → {args.out}")
    return 0


def run(args) -> int:
    from .. import config
    from ..errors import UserError
    from ..samplers import get_sampler
    from ..samplers.registry import is_matrix_sampler

    for out in args.out:
        if Path(out).suffix != ".npz":
            raise UserError(f"--out {out}: the sample file must end in .npz (its manifest .json is written beside it)")
    wanted = len(args.sampler) if args.sampler is not None else 1
    if len(args.out) != wanted:
        raise UserError(f"--out needs one sample file per {'--sampler' if args.sampler else '--reference'} "
                        f"({wanted}), got {len(args.out)}")
    cfg = config.load(args.params)
    section(cfg, "models", args.model, args.params)
    if args.sampler is not None:
        for sampler in args.sampler:  # unknown names fail before any model is loaded
            if not is_matrix_sampler(get_sampler(sampler).name):  # a matrix brings its own grid
                resolve_grids(model_sampling(cfg, args.model), sampler)
        return run_samplers(cfg, args)
    args.out = args.out[0]
    return run_reference(cfg, args)

"""Geometry study (GEO 2305.19947 §3–5): trajectories of a trained model and of the optimal denoiser from the same
noise (diffrepro.studies.geometry), written as tables, figures, `trajectories.npz` and `section.json`
(diffrepro.reports.geometry).

  diffrepro study geometry --params P --model M --checkpoint results/models/M/model.pt \
      --data results/data/D/data.npz --out-dir results/studies/geometry
"""
from __future__ import annotations

import time

from . import add_params_arg


def configure(parser) -> None:
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="model name (a key of 'models')")
    parser.add_argument("--checkpoint", required=True, help="results/models/M/model.pt")
    parser.add_argument("--data", required=True, help="data.npz of the model's dataset (optimal denoiser)")
    parser.add_argument("--out-dir", required=True, help="folder for tables, figures and section.json")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (runtime.num_threads wins)")


def run(args) -> int:
    import numpy as np

    from .. import config, data, io, runtime, sources
    from ..errors import UserError
    from ..reports import geometry as report
    from ..reports.tables import write_table
    from ..studies.geometry import geometry_study

    start = time.perf_counter()
    cfg = config.load(args.params)
    sec = cfg["studies"]["geometry"]
    if args.model not in cfg["models"]:
        raise UserError(f"--model '{args.model}' is not a key of 'models' in {args.params}")
    if sec["sigma_min"] >= sec["sigma_max"]:
        raise UserError("studies.geometry: sigma_min must be smaller than sigma_max")
    out = io.ensure_writable_dir(args.out_dir)
    device = runtime.setup(cfg.get("runtime"), args.threads)
    model = sources.load_model(args.checkpoint, device=device or "cpu")
    result = geometry_study(sec, args.model, model.denoiser(), model.schedule, data.load_train_points(args.data),
                            cfg["seed"], device)
    figures = report.figures(result, sec["n_plot"], out)
    write_table(result["per_sigma"], out / "per_sigma")
    write_table(result["summary"], out / "summary")
    io.write_json(out / "mean_shift_checks.json", result["checks"])
    keep = min(sec["n_plot"], sec["n_trajectories"])
    io.write_with(out / "trajectories.npz", lambda tmp: np.savez_compressed(
        tmp, sigmas=np.asarray(result["sigmas"]),
        **{f"{k}_{part}": v[:, :keep].float().numpy() for k, (xs, den) in result["paths"].items()
           for part, v in (("x", xs), ("denoised", den))},
        **{f"{k}_projection": c[:, :keep].float().numpy() for k, c in result["coords"].items()}))
    io.write_json(out / "section.json", report.section(result, figures, cfg, args.model, str(args.params)))
    io.write_provenance(out / "section.json", sec, seed=cfg["seed"], model=args.model,
                        checkpoint=str(args.checkpoint), wall_s=round(time.perf_counter() - start, 3))
    print(f"geometry study: {sec['n_trajectories']} trajectories x {len(result['sigmas']) - 1} steps, "
          f"d = {result['dim']}, N = {len(result['data'])} in {time.perf_counter() - start:.1f}s -> {out}")
    return 0

"""Weighted-sum degradation study (NI §3.2): tables (parquet + CSV), PNG figures and `section.json`
(diffrepro.studies.degradation computes the rows, diffrepro.reports.degradation the section).

  diffrepro study degradation --params P --out-dir results/studies/degradation \
      [--data NAME=results/data/NAME/data.npz ...] [--checkpoint results/models/M/model.pt]
"""
from __future__ import annotations

import time

from . import add_params_arg, parse_named_paths


def configure(parser) -> None:
    add_params_arg(parser)
    parser.add_argument("--out-dir", required=True, help="folder for tables, figures and section.json")
    parser.add_argument("--data", action="append", default=[], metavar="NAME=PATH",
                        help="data.npz of a dataset named in studies.degradation (sets of kind 'dataset', trained)")
    parser.add_argument("--checkpoint", default=None, help="model.pt of studies.degradation.trained.model")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (runtime.num_threads wins)")


def _trained(cfg: dict, sec: dict, datasets: dict, checkpoint: str | None, device) -> list[dict]:
    from .. import sources
    from ..errors import UserError
    from ..studies.degradation import trained_rows

    model_name = sec["trained"]["model"]
    if model_name not in cfg["models"]:
        raise UserError(f"studies.degradation.trained.model = '{model_name}' is not a key of 'models'")
    if checkpoint is None:
        raise UserError(f"studies.degradation.trained is set: pass --checkpoint results/models/{model_name}/model.pt")
    dataset = cfg["models"][model_name]["dataset"]
    if dataset not in datasets:
        raise UserError(f"studies.degradation.trained: pass --data {dataset}=results/data/{dataset}/data.npz")
    model = sources.load_model(checkpoint, device=device or "cpu")
    return trained_rows(sec, model_name, dataset, datasets[dataset], model.denoiser(), model.schedule, cfg["seed"],
                        device)


def run(args) -> int:
    from .. import config, data, io, runtime
    from ..errors import UserError
    from ..reports import degradation as report
    from ..reports.tables import write_table
    from ..studies.degradation import critical_rows, degradation_rows

    cfg = config.load(args.params)
    sec = cfg["studies"]["degradation"]
    if not sec["enabled"]:
        raise UserError("studies.degradation.enabled is false: nothing to do")
    out = io.ensure_writable_dir(args.out_dir)
    data_paths = parse_named_paths(args.data, "--data")
    device = runtime.setup(cfg.get("runtime"), args.threads)
    start = time.perf_counter()
    datasets = {name: data.load_train_points(path) for name, path in data_paths.items()}
    rows = degradation_rows(sec, cfg["seed"], datasets, device)
    crit = critical_rows(rows, sec)
    trained = _trained(cfg, sec, datasets, args.checkpoint, device) if sec["trained"] else []
    figures = report.figures(rows, crit, trained, out)
    write_table(rows, out / "cells")
    write_table(crit, out / "critical_t")
    if trained:
        write_table(trained, out / "trained_vs_target")
    io.write_json(out / "section.json", report.section(rows, crit, trained, figures, cfg, args.params))
    io.write_provenance(out / "section.json", cfg["studies"], seed=cfg["seed"],
                        wall_s=round(time.perf_counter() - start, 3))
    print(f"degradation study: {len(rows)} cells, {len(crit)} critical-t rows, {len(trained)} trained rows "
          f"in {time.perf_counter() - start:.1f}s -> {out}")
    return 0

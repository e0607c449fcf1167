"""Evaluate every trained MDM of one dataset (test bound with and without the boundary term, samples) and write
the MDM report section: evaluation.json, samples.npz, samples.png and section.json in --out-dir.

Samples are scored by the sweep's scorer (`metrics.scoring.CellScorer`) against the dataset's reference statistics:
the same metric columns, feature space and settings as every other model of the run."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import config
from ..errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params YAML (validated)")
    parser.add_argument("--dataset", required=True, help="key of mdm.studies")
    parser.add_argument("--models", nargs="+", required=True, help="model.pt files written by `mdm train`")
    parser.add_argument("--data", required=True, help="results/data/<dataset>/data.npz")
    parser.add_argument("--refstats", required=True, help="results/refstats/<dataset>.pt (`diffrepro reference-stats`)")
    parser.add_argument("--classifier", help="classifier.pt (default: the one recorded in the refstats file)")
    parser.add_argument("--out-dir", required=True, help="folder for evaluation.json, samples.*, section.json")
    parser.add_argument("--config-name", default=None, help="params file name shown in the report")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")


def run(args: argparse.Namespace) -> None:
    cfg = config.load(args.params)
    from ..metrics.spaces import check_weights_early

    check_weights_early(cfg, args.dataset)  # fail fast: before any model is loaded
    import numpy as np
    import torch

    from ..io import write_json, write_provenance, write_with
    from ..mdm import study as S
    from ..mdm.section import build_section
    from ..metrics.refstats import load as load_refstats
    from ..metrics.scoring import CellScorer
    from ..reports.figures import mdm_samples

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    st = S.study_config(cfg, args.dataset)
    refstats = load_refstats(args.refstats)
    if refstats["dataset"] != args.dataset:
        raise UserError(f"{args.refstats} holds reference statistics of '{refstats['dataset']}', not "
                        f"'{args.dataset}'")
    scorer = CellScorer(cfg, args.dataset, refstats, args.classifier)
    levels = S.levels_of(cfg, args.dataset)
    x_test = S.load_split(args.data, "test", levels)[: st["eval"]["n_test"]]
    times = S.times_of(cfg)
    rows, samples = [], {}
    for path in map(Path, args.models):
        net, diffusion, meta, history = S.load_model(path, cfg)
        if meta["dataset"] != args.dataset:
            raise UserError(f"{path} was trained on '{meta['dataset']}', not '{args.dataset}'")
        row, samples[f"{meta['diffusion']}/seed{meta['seed']}"] = S.evaluation_row(
            cfg, args.dataset, str(path), net, diffusion, meta, history, x_test, times, levels, scorer)
        rows.append(row)
        print(f"mdm evaluate {args.dataset}/{meta['diffusion']}/seed{meta['seed']}: {row['metric']} "
              f"{row['value_no_offset']:.4f} (offset {row['value_offset']:.4f}); "
              + ", ".join(f"{k} {v:.4g}" for k, v in row["sample_metrics"].items() if isinstance(v, (int, float))))
    rows.sort(key=lambda r: (st["diffusions"].index(r["diffusion"]), r["seed"]))
    out = Path(args.out_dir)
    first_seed = min(r["seed"] for r in rows)
    shown = {r["diffusion"]: samples[f"{r['diffusion']}/seed{r['seed']}"] for r in rows if r["seed"] == first_seed}
    figure = out / "samples.png"
    mdm_samples(shown, S.load_split(args.data, "test", levels).numpy(), levels, figure)
    write_with(out / "samples.npz", lambda p: np.savez(p, **{k.replace("/", "__"): v for k, v in samples.items()}))
    write_json(out / "evaluation.json", rows)
    order = 60 + sorted(cfg["mdm"]["studies"]).index(args.dataset)
    scale = cfg.get("report", {}).get("scale", "default")
    section = build_section(args.dataset, cfg["datasets"][args.dataset]["kind"], rows, str(figure),
                            args.config_name or str(args.params), scale, order)
    write_json(out / "section.json", section)
    write_provenance(out / "section.json", cfg_section={"mdm": cfg["mdm"], "metrics": cfg["metrics"]},
                     seed=cfg["seed"], feature_space=refstats["feature_space"], notes=scorer.notes)

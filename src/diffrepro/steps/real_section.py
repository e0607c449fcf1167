"""Write the "Real data" report section of one real image dataset (MNIST / Fashion-MNIST / CIFAR-10): the sweep's
FID against NFE for the high-order samplers (from the aggregated table) and, in the same feature space, the FID of
real train images and of uniform noise against the test split. When the sweep scores in another space (Inception),
our own classifier's space is added: its reference statistics, anchors and per-cell FIDs from the sample files."""
from __future__ import annotations

from pathlib import Path

from . import add_params_arg, add_threads_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--dataset", required=True, help="a key of `datasets` of a real image kind")
    parser.add_argument("--data", required=True, help="results/data/<dataset>/data.npz")
    parser.add_argument("--refstats", required=True, help="results/refstats/<dataset>.pt (the sweep's feature space)")
    parser.add_argument("--classifier", help="classifier.pt: adds the classifier feature space when the sweep's is "
                                             "another one")
    parser.add_argument("--metrics", required=True, help="results/tables/metrics_agg.parquet")
    parser.add_argument("--samples", nargs="*", default=[], help="results/samples/<model>/<sampler>.npz of the "
                                                                  "dataset's models (for the classifier space)")
    parser.add_argument("--reference", nargs="*", default=[], help="results/samples/<model>/_reference.npz: the "
                                                                    "converged PF-ODE solution each FID should approach")
    parser.add_argument("--out-dir", required=True, help="folder for anchors.json and section.json")
    parser.add_argument("--config-name", default=None, help="params file name shown in the report")
    add_threads_arg(parser)


def run(args) -> int:
    from .. import config, data, io, runtime
    from ..errors import UserError
    from ..metrics.spaces import check_weights_early
    from ..reports import realdata

    cfg = config.load(args.params)
    spec = section(cfg, "datasets", args.dataset, args.params)
    if spec["kind"] not in realdata.REAL_KINDS:
        raise UserError(f"datasets.{args.dataset}.kind = '{spec['kind']}' is not a real image dataset "
                        f"({sorted(realdata.REAL_KINDS)})")
    check_weights_early(cfg, args.dataset)
    import polars as pl

    from ..metrics.refstats import load as load_refstats

    runtime.limit_threads(cfg, args.threads)
    models = [m for m in cfg["sampling"]["models"] if cfg["models"][m]["dataset"] == args.dataset]
    arrays = data.load_npz(args.data, ("x_train", "x_test"))
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    meta = io.read_json(Path(args.data).with_suffix(".json")) if Path(args.data).with_suffix(".json").exists() else {}
    split = meta.get("split") or {"train": len(x_train), "test": len(x_test)}
    if not Path(args.metrics).is_file():
        raise UserError(f"missing input file: {args.metrics}")
    spaces = realdata.feature_spaces(cfg, args.dataset, models, load_refstats(args.refstats), args.classifier,
                                     x_train, x_test, pl.read_parquet(args.metrics), args.samples, args.reference)
    sec = realdata.build_section(dataset=args.dataset, kind=spec["kind"], models=models, split=split, spaces=spaces,
                                 config_label=args.config_name or args.params,
                                 scale=cfg.get("report", {}).get("scale", "default"))
    out = io.ensure_writable_dir(args.out_dir)
    io.write_json(out / "anchors.json", [{k: v for k, v in s.items() if k != "cells"} for s in spaces])
    io.write_json(out / "section.json", sec)
    for s in spaces:
        a = s["anchors"]
        print(f"{args.dataset} [{s['name']}]: FID train vs test {a['train']['fid']:.4g}, noise vs test "
              f"{a['noise']['fid']:.4g} ({a['n']} images vs {s['n_reference']})")
    return 0

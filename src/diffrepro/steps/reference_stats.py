"""Reference statistics of one dataset's test split (or of the statistics file `metrics.reference_stats` names),
computed once and reused by every `evaluate`; the payload is described in diffrepro.metrics.refstats."""
from __future__ import annotations

from . import add_params_arg, add_threads_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--dataset", required=True, help="a key of the params file's `datasets` section")
    parser.add_argument("--data", help="the dataset's data.npz (from `diffrepro prepare`; not needed when "
                                      "metrics.reference_stats names a statistics file)")
    parser.add_argument("--classifier", help="classifier.pt (datasets scored in the classifier feature space)")
    add_threads_arg(parser)
    parser.add_argument("--out", required=True, help="output file, e.g. results/refstats/D.pt")


def run(args) -> int:
    from .. import config, data, io, runtime
    from ..errors import UserError
    from ..metrics.spaces import check_weights_early, reference_stats_file

    cfg = config.load(args.params)
    section(cfg, "datasets", args.dataset, args.params)
    check_weights_early(cfg, args.dataset)  # fail fast: before torch is imported or any input is read
    stats_file = reference_stats_file(cfg, args.dataset)
    if not stats_file and not args.data:
        raise UserError(f"reference-stats --dataset {args.dataset}: give --data (or set metrics.reference_stats)")
    import torch

    from ..metrics.refstats import compute, from_file, reference_label
    from ..metrics.spaces import feature_kind

    if feature_kind(cfg, args.dataset) != "vector":
        from ..metrics import fidelity as fd

        fd.feature_space(cfg, args.dataset, args.classifier)  # missing classifier → UserError before any work
    runtime.limit_threads(cfg, args.threads)
    if stats_file:
        stats = from_file(cfg, args.dataset, stats_file, args.classifier)
        source = {"stats_file": str(stats_file), "stats_sha256": stats["reference"]["sha256"]}
    else:
        x_test = data.load_npz(args.data, ("x_test",))["x_test"]
        stats = compute(cfg, args.dataset, x_test, args.classifier)
        source = {"data_sha256": io.sha256_file(args.data)}
    io.write_with(args.out, lambda tmp: torch.save(stats, tmp))
    io.write_provenance(args.out, cfg["metrics"], seed=cfg["seed"], dataset=args.dataset,
                        feature_space=stats["feature_space"], n=stats["n"], weights_sha256=stats.get("weights_sha256"),
                        **source)
    what = reference_label(stats) if "reference" in stats else f"{stats['n']} test points"
    print(f"{args.dataset}: reference statistics of {what} in feature space '{stats['feature_space']}' → {args.out}")
    return 0

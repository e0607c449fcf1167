"""Write a dataset's reference statistics (`results/refstats/D.pt`) as a pytorch-fid / EDM style `.npz`.

The file holds `mu` [D] and `sigma` [D, D] (float64) and `n` (the number of reference images); it can be given back
to the pipeline as `metrics.reference_stats: {D: file.npz}`, or compared with published statistics.
"""
from __future__ import annotations


def configure(parser):
    parser.add_argument("--refstats", required=True, help="results/refstats/D.pt (from `diffrepro reference-stats`)")
    parser.add_argument("--out", required=True, help="output .npz")


def run(args) -> int:
    from ..errors import UserError
    from ..metrics.fidelity import write_reference_npz
    from ..metrics.refstats import load

    stats = load(args.refstats)
    if stats["feature_space"] == "vector":
        raise UserError(f"{args.refstats} holds vector-data points, not FID statistics (no mu/sigma to export)")
    write_reference_npz(args.out, stats["fid_mu"].numpy(), stats["fid_sigma"].numpy(), stats.get("n"))
    print(f"{stats['dataset']}: mu {tuple(stats['fid_mu'].shape)}, sigma {tuple(stats['fid_sigma'].shape)} in "
          f"feature space '{stats['feature_space']}' → {args.out}")
    return 0

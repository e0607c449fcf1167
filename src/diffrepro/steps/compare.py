"""Compare two versions of the results: `diffrepro compare A B` with A, B git revisions, tags, DVC experiment names
or `workspace`. Writes <out-dir>/<A>_vs_<B>.html (self-contained) and .md: params diff, per-(dataset, sampler,
NFE) metric deltas with direction, and metric-vs-NFE figures of both versions overlaid."""
from __future__ import annotations

from pathlib import Path


def configure(parser):
    parser.add_argument("a", help="old version: git revision, tag, DVC experiment name, or 'workspace'")
    parser.add_argument("b", help="new version: git revision, tag, DVC experiment name, or 'workspace'")
    parser.add_argument("--repo", default=".", help="repository root (default: current folder)")
    parser.add_argument("--out-dir", default="reports/compare")
    parser.add_argument("--tol", type=float, default=0.0, help="|delta| at or below this counts as unchanged")
    parser.add_argument("--no-dvc-plots", action="store_true", help="skip `dvc plots diff` (the linked vega-lite page)")


def run(args):
    from ..reports import compare

    repo = Path(args.repo)
    a, b = compare.resolve(args.a, repo), compare.resolve(args.b, repo)
    old, new = compare.load_version(repo, a), compare.load_version(repo, b)
    params = compare.params_diff(repo, a, b)
    out = Path(args.out_dir)
    plots = None if args.no_dvc_plots else compare.dvc_plots(
        repo, a, b, out / f"{compare.stem(a, b)}_dvc_plots")
    written = compare.render_comparison(a, b, old, new, params, compare.metrics_diff_keys(repo, a, b), out,
                                        args.tol, plots)
    print(f"compare: {len(params)} params changed -> {written[0]}, {written[1]}")

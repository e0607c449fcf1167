"""Render the reproduction report: reports/index.html (self-contained), reports/report.md (+ reports/figures/) and
one LaTeX fragment per table (reports/tables/*.tex), from the aggregated tables, the samples, every area's
section.json and the Snakemake benchmark files."""
from __future__ import annotations

from pathlib import Path


def configure(parser):
    parser.add_argument("--params", required=True, help="validated params file")
    parser.add_argument("--results", default="results", help="results root (tables/, samples/, data/)")
    parser.add_argument("--benchmarks", default="benchmarks", help="Snakemake benchmark TSV root")
    parser.add_argument("--out-dir", default="reports")
    parser.add_argument("--sections", nargs="*", default=None,
                        help="section.json files or glob patterns (default: results/**/section.json)")
    parser.add_argument("--config-label", default=None,
                        help="config name shown in the report (default: --params; Snakemake passes the params file)")


def run(args):
    from .. import config
    from ..reports import render
    from ..reports.build import report_context

    cfg = config.load(args.params)
    out = Path(args.out_dir)
    context = report_context(cfg, args.config_label or args.params, Path(args.results), Path(args.benchmarks),
                             args.sections, out / "figures")
    written = render.render_report(context, out)
    print(f"report: {len(context['sections'])} sections, {len(written)} files -> {out / 'index.html'}, "
          f"{out / 'report.md'}")

"""Render the reproduction report: reports/index.html (self-contained), reports/report.md (+ reports/figures/) and
one LaTeX fragment per table (reports/tables/*.tex), from the aggregated tables, the samples, every area's
section.json and the Snakemake benchmark files."""
from __future__ import annotations

import time
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
    from ..reports import claims, layout, paper, provenance, render, sections, spine, tables

    cfg = config.load(args.params)
    results, out = Path(args.results), Path(args.out_dir)
    label = args.config_label or args.params
    agg = tables.read_parquet(results / "tables" / "metrics_agg.parquet", str(results / "tables" / "metrics_agg.parquet"))
    papers = paper.load_paper_numbers()
    fig_dir = out / "figures"
    spine_sec, notes = spine.spine_section(cfg, agg, results, fig_dir, label)
    extra, missing = sections.load_sections(sections.find_section_files(args.sections), papers)
    for sec in extra:  # every section of one run comes from the same params: name the file the user gave
        sec["config"] = label
    built = [spine_sec] + [s for s in [spine.paper_section(cfg, agg, papers, label),
                                       spine.ni_paper_section(cfg, agg, papers, label),
                                       spine.gits_section(cfg, agg, results, label)] if s]
    scale = cfg.get("report", {}).get("scale", "default")
    everything = built + extra
    card = claims.scorecard(claims.load_claims(), everything, agg, papers, scale)
    everything = sorted(everything + [claims.scorecard_section(card, label, scale)], key=lambda s: (s["order"], s["id"]))
    appendix = layout.split_appendix(everything, int(cfg.get("report", {}).get("appendix_rows", 30)))
    prov = provenance.collect(cfg, label, results, Path(args.benchmarks))
    context = {
        "title": cfg.get("report", {}).get("title", "diffrepro reproduction report"),
        "params_file": label, "scale": cfg.get("report", {}).get("scale", "default"),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "notes": notes + missing,
        "sections": everything, "appendix": appendix, "scorecard": card, "verdicts": claims.counts(card),
        "setup": layout.setup_text(cfg, prov), "limitations": layout.LIMITATIONS, "references": layout.REFERENCES,
        "provenance": prov,
    }
    written = render.render_report(context, out)
    print(f"report: {len(context['sections'])} sections, {len(written)} files -> {out / 'index.html'}, "
          f"{out / 'report.md'}")

"""The report's content: every section (the sweep spine, the paper comparisons, each area's section.json), the claims
scorecard, the appendix and the provenance, as the context the templates render (reports.render)."""
from __future__ import annotations

import time
from pathlib import Path

from . import claims, layout, paper, provenance, sections, spine, tables


def report_context(cfg: dict, label: str, results: Path, benchmarks: Path, section_patterns, fig_dir: Path) -> dict:
    """The render context; `label` names the params file in every section, figures of the spine go to `fig_dir`."""
    agg = tables.read_parquet(results / "tables" / "metrics_agg.parquet", str(results / "tables" / "metrics_agg.parquet"))
    papers = paper.load_paper_numbers()
    spine_sec, notes = spine.spine_section(cfg, agg, results, fig_dir, label)
    extra, missing = sections.load_sections(sections.find_section_files(section_patterns), papers)
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
    prov = provenance.collect(cfg, label, results, benchmarks)
    return {
        "title": cfg.get("report", {}).get("title", "diffrepro reproduction report"),
        "params_file": label, "scale": cfg.get("report", {}).get("scale", "default"),
        "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "notes": notes + missing,
        "sections": everything, "appendix": appendix, "scorecard": card, "verdicts": claims.counts(card),
        "setup": layout.setup_text(cfg, prov), "limitations": layout.limitations_text(cfg),
        "references": layout.REFERENCES,
        "provenance": prov,
    }

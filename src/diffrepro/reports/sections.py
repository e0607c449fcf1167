"""The report-section contract (docs/DEVELOPING.md "Report sections"): load, check and order `section.json` files.

A section that is absent (its area produced nothing) becomes a note; a malformed one is a UserError naming the file.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterable

from ..errors import UserError
from ..io import read_json
from .paper import resolve_paper_table

REQUIRED = ("id", "order", "title", "reproduces", "scale", "config")
DEFAULT_GLOB = "results/**/section.json"


def find_section_files(patterns: Iterable[str] | None) -> list[str]:
    """Explicit files are kept even when missing (they become notes); patterns with wildcards are expanded."""
    out: list[str] = []
    for pattern in (patterns if patterns is not None else [DEFAULT_GLOB]):
        if any(ch in pattern for ch in "*?["):
            out += sorted(glob.glob(pattern, recursive=True))
        else:
            out.append(pattern)
    return list(dict.fromkeys(out))


def check_section(section: dict, source: str, papers: dict[str, dict]) -> dict:
    if not isinstance(section, dict):
        raise UserError(f"{source}: a section must be a JSON object")
    missing = [k for k in REQUIRED if k not in section]
    if missing:
        raise UserError(f"{source}: section lacks the key(s) {missing}")
    if not isinstance(section["order"], (int, float)):
        raise UserError(f"{source}: 'order' must be a number")
    section = {"paper": "", "text": [], "tables": [], "figures": [], "notes": [], **section, "source_file": source}
    if not isinstance(section["text"], list) or not all(isinstance(t, str) for t in section["text"]):
        raise UserError(f"{source}: 'text' must be a list of Markdown strings")
    tables = []
    for i, table in enumerate(section["tables"]):
        table = resolve_paper_table(table, papers)
        lacking = [k for k in ("id", "caption", "columns", "rows") if k not in table]
        if lacking:
            raise UserError(f"{source}: tables[{i}] lacks {lacking}")
        if any(len(r) != len(table["columns"]) for r in table["rows"]):
            raise UserError(f"{source}: table {table['id']!r}: every row needs {len(table['columns'])} cells")
        tables.append({"source": "ours", **table})
    section["tables"] = tables
    for i, fig in enumerate(section["figures"]):
        if "path" not in fig or "caption" not in fig:
            raise UserError(f"{source}: figures[{i}] needs 'path' and 'caption'")
    return section


def load_sections(files: Iterable[str], papers: dict[str, dict]) -> tuple[list[dict], list[str]]:
    """(sections ordered by `order` then id, notes for the files that are absent)."""
    sections, notes, seen = [], [], {}
    for f in files:
        if not Path(f).exists():
            notes.append(f"Section file {f} was not produced; that section is absent from this report.")
            continue
        s = check_section(read_json(f), f, papers)
        if s["id"] in seen:
            raise UserError(f"{f}: section id {s['id']!r} already used by {seen[s['id']]}")
        seen[s["id"]] = f
        sections.append(s)
    return sorted(sections, key=lambda s: (s["order"], s["id"])), notes

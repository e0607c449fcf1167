"""The papers' published numbers (`diffrepro/data/paper_numbers.yaml`), always shown labelled as full scale."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import UserError

PAPER_NUMBERS = Path(__file__).resolve().parents[1] / "data" / "paper_numbers.yaml"
FIELDS = ("title", "paper", "citation", "where", "version", "scale", "metric", "columns", "rows")


def load_paper_numbers(path: str | Path = PAPER_NUMBERS) -> dict[str, dict]:
    """`"<area>/<table_id>"` -> table; every table checked for its citation fields and rectangular rows."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"paper numbers file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    out = {}
    for area, tables in data.items():
        if area == "schema_version":
            continue
        for tid, table in (tables or {}).items():
            key = f"{area}/{tid}"
            missing = [f for f in FIELDS if f not in table]
            if missing:
                raise UserError(f"{path}: table {key} lacks {missing}")
            if not str(table["scale"]).startswith("full scale"):
                raise UserError(f"{path}: table {key}: scale must start with 'full scale'")
            width = len(table["columns"])
            if any(len(r) != width for r in table["rows"]):
                raise UserError(f"{path}: table {key}: every row needs {width} cells")
            if "nfe" in table and len(table["nfe"]) != width - 1:
                raise UserError(f"{path}: table {key}: 'nfe' needs one entry per value column ({width - 1})")
            out[key] = table
    return out


def source_line(table: dict) -> str:
    return f"{table['citation']}, {table['where']} ({table['version']}); {table['scale']}"


def as_section_table(key: str, table: dict) -> dict:
    """A paper table in the section-table shape (`source: paper`)."""
    return {"id": key.replace("/", "_"), "caption": f"{table['title']} — {table['metric']}. Published numbers.",
            "columns": list(table["columns"]), "rows": [list(r) for r in table["rows"]], "source": "paper",
            "cites": source_line(table)}


def resolve_paper_table(table: dict, papers: dict[str, dict]) -> dict:
    """A section table `{"source": "paper", "paper_table": "<area>/<id>"}` gets its cells from the numbers file."""
    key = table.get("paper_table")
    if key is None:
        return table
    if key not in papers:
        raise UserError(f"section table {table.get('id')!r} cites paper_table {key!r}, not in {PAPER_NUMBERS.name} "
                        f"(known: {sorted(papers)})")
    full = as_section_table(key, papers[key])
    return {**full, **{k: v for k, v in table.items() if k not in ("rows", "columns", "paper_table")}}


def beside_ours(ours: dict[tuple[str, int], dict], table: dict) -> list[list]:
    """Rows `[sampler, NFE, ours, paper]` for every (sampler, NFE) we ran that the paper table also reports.

    `ours` maps (sampler, nfe) -> {"mean": .., "std": ..}. Matching uses the table's `sampler_of_row` and `nfe`.
    """
    if "nfe" not in table or "sampler_of_row" not in table:
        return []
    by_sampler = {}
    for r in table["rows"]:
        names = table["sampler_of_row"].get(r[0], [])
        for name in [names] if isinstance(names, str) else names:
            by_sampler.setdefault(name, r[1:])
    rows = []
    for (sampler, nfe), value in sorted(ours.items()):
        if sampler in by_sampler and nfe in table["nfe"]:
            rows.append([sampler, nfe, value, by_sampler[sampler][table["nfe"].index(nfe)]])
    return rows

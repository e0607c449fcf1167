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


def row_grid(table: dict, label: str) -> str:
    """The grid the paper ran row `label` on, as a params grid name: `grid_of_row`, else the table's `grid`, else
    `default` (each solver's recommended grid, GEO §3.1)."""
    return table.get("grid_of_row", {}).get(label, table.get("grid", "default"))


def beside_ours(ours: dict[tuple, dict], table: dict, resolve_grid=lambda grid, sampler: grid) -> list[list]:
    """Rows `[sampler, NFE, ours, paper]` for every (sampler, grid, NFE) we ran that the paper table also reports.

    `ours` maps (sampler, grid, nfe) -> {"mean": .., "std": ..}, grid as the sweep records it (`resolve_grid(name,
    sampler)` turns the table's grid names into those, e.g. `default` into the sampler's recommended grid); keys
    (sampler, nfe) stand for cells on the grid each row names. Matching uses the table's `sampler_of_row`, `nfe` and
    `grid` / `grid_of_row`; a row on a grid other than the default is labelled `sampler (grid)`.
    """
    if "nfe" not in table or "sampler_of_row" not in table:
        return []
    wanted = {}
    for r in table["rows"]:
        names = table["sampler_of_row"].get(r[0], [])
        grid = row_grid(table, r[0])
        for name in [names] if isinstance(names, str) else names:
            wanted.setdefault((name, resolve_grid(grid, name)), (grid, r[1:]))
    rows = []
    for key, value in sorted(ours.items(), key=lambda kv: tuple(map(str, kv[0][:-1])) + (kv[0][-1],)):
        sampler, nfe = key[0], key[-1]
        if len(key) == 2:  # grid already chosen by the caller: the rows on the table's own grid
            cells = [v for k, v in wanted.items() if k[0] == sampler and v[0] == table.get("grid", "default")]
        else:
            cells = [wanted[(sampler, key[1])]] if (sampler, key[1]) in wanted else []
        for grid, values in cells:
            if nfe in table["nfe"]:
                label = sampler if grid == "default" else f"{sampler} ({resolve_grid(grid, sampler)})"
                rows.append([label, nfe, value, values[table["nfe"].index(nfe)]])
    return rows

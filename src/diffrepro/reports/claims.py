"""The claims scorecard: every checkable claim of the three papers (`diffrepro/data/claims.yaml`) judged against one
run's outputs (the report sections and the aggregated sweep table).

Pure functions over loaded data: `load_claims()` reads and checks the file, `scorecard(claims, sections, agg, papers,
scale)` returns one row per claim with its verdict and the number that decided it. No verdict is typed anywhere; a
claim whose inputs are absent from the run is "not testable at this scale".

Test kinds (the `test.kind` of a claim):
- `threshold`: one cell compared with a bound (`op`, `value`; optional `partly` bound for a weaker pass).
- `compare`: cell `a` `op` cell `b` (optionally `b` scaled by `factor`); with a spread (std over seeds) on either
  side the difference must exceed the combined spread, else "inconclusive"; fewer seeds than `min_seeds` too.
- `monotone`: a series of cells must rise (`increasing`) or fall (`decreasing`); `partly` when most steps do.
- `sweep`: over sweep cells (model, metric, NFEs) the `a` (sampler, grid) must beat `b` (paired: both share the
  initial noise); reproduced when every NFE agrees, partly when some do.
- `rank`: Spearman ρ between our metric and a published table (per NFE over the samplers both have).
- `not_testable`: needs full-scale models or data (`reason`).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from ..errors import UserError

CLAIMS_FILE = Path(__file__).resolve().parents[1] / "data" / "claims.yaml"
VERDICTS = ("reproduced", "partly", "not reproduced", "inconclusive", "not testable at this scale")
SCALE_LEVEL = {"smoke": 0, "toy": 0, "default": 1, "medium": 1, "paper": 2, "full": 2}
FIELDS = ("id", "paper", "where", "statement", "section", "scale", "test")
KINDS = ("threshold", "compare", "monotone", "sweep", "rank", "not_testable")
OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\s*±\s*([-+]?(?:\d+\.?\d*|\.\d+)"
                    r"(?:[eE][-+]?\d+)?))?")


# ---------------------------------------------------------------------------------------------------------------------
# the claims file
# ---------------------------------------------------------------------------------------------------------------------
def load_claims(path: str | Path = CLAIMS_FILE) -> list[dict]:
    """The claims, each checked for its fields, a known test kind and scale, and a unique id."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"claims file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    claims, seen = data.get("claims") or [], set()
    if not isinstance(claims, list) or not claims:
        raise UserError(f"{path}: expected a non-empty list under 'claims'")
    for i, c in enumerate(claims):
        missing = [f for f in FIELDS if not isinstance(c, dict) or f not in c]
        if missing:
            raise UserError(f"{path}: claims[{i}] lacks {missing}")
        if c["id"] in seen:
            raise UserError(f"{path}: claim id {c['id']!r} appears twice")
        seen.add(c["id"])
        if c["test"].get("kind") not in KINDS:
            raise UserError(f"{path}: claim {c['id']}: test.kind must be one of {list(KINDS)}")
        if c["scale"] not in SCALE_LEVEL:
            raise UserError(f"{path}: claim {c['id']}: scale must be one of {sorted(SCALE_LEVEL)}")
        op = c["test"].get("op")
        if op is not None and op not in OPS:
            raise UserError(f"{path}: claim {c['id']}: op must be one of {list(OPS)}")
    return claims


# ---------------------------------------------------------------------------------------------------------------------
# reading numbers out of section tables
# ---------------------------------------------------------------------------------------------------------------------
def as_number(value) -> tuple[float, float | None] | None:
    """(mean, std or None) of a table cell: numbers, {mean, std} cells and strings such as '0.51 ± 0.63'."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return None if math.isnan(value) else (float(value), None)
    if isinstance(value, dict) and "mean" in value:
        mean = as_number(value["mean"])
        std = value.get("std")
        return None if mean is None else (mean[0], None if std is None else float(std))
    m = NUMBER.match(str(value))
    if not m:
        return None
    return float(m.group(1)), (float(m.group(2)) if m.group(2) else None)


def _matches(cell, wanted) -> bool:
    """Numbers compare numerically, 're:<pattern>' as a full regular-expression match, anything else as text."""
    if isinstance(wanted, str) and wanted.startswith("re:"):
        return re.fullmatch(wanted[3:], str(cell)) is not None
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool):
        got = as_number(cell)
        return got is not None and math.isclose(got[0], float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return str(cell) == str(wanted)


def find_table(sections: list[dict], section: str, table: str) -> dict | None:
    for s in sections:
        if s["id"] == section:
            return next((t for t in s["tables"] if t["id"] == table), None)
    return None


def raw_cells(sections: list[dict], sel: dict) -> list[tuple[list, int]] | None:
    """(row, column index) of every row matching `sel["row"]` (or the one at `row_index`); None if absent."""
    table = find_table(sections, sel["section"], sel["table"])
    if table is None:
        return None
    cols = list(table["columns"])
    if sel["column"] not in cols or any(k not in cols for k in sel.get("row", {})):
        return None
    j = cols.index(sel["column"])
    if "row_index" in sel:
        k = int(sel["row_index"])
        return [(table["rows"][k], j)] if -len(table["rows"]) <= k < len(table["rows"]) else None
    return [(r, j) for r in table["rows"]
            if all(_matches(r[cols.index(k)], v) for k, v in sel.get("row", {}).items())] or None


def cell(sections: list[dict], sel: dict) -> tuple[float, float | None] | None:
    """One number from a section table: `{section, table, row: {column: value, ...} | row_index, column,
    std_column?, reduce?}`: the first matching row, or the min/max over all of them (`reduce`); `std_column: next`
    takes the spread from the column to the right. None when anything is absent."""
    found = raw_cells(sections, sel)
    if found is None:
        return None
    table = find_table(sections, sel["section"], sel["table"])
    values = []
    for r, j in found:
        got = as_number(r[j])
        if got is None:
            continue
        std = sel.get("std_column")
        if std is not None:
            k = j + 1 if std == "next" else list(table["columns"]).index(std)
            spread = as_number(r[k]) if k < len(r) else None
            got = (got[0], None if spread is None else spread[0])
        values.append(got)
    if not values:
        return None
    reduce = sel.get("reduce", "first")
    return {"first": values[0], "min": min(values), "max": max(values)}[reduce]


def series(sections: list[dict], spec: dict) -> list[tuple[str, tuple[float, float | None] | None]]:
    """Cells along a row (`columns: [...]`) or down a column (`rows: [{...}, ...]`) of one table, with labels."""
    base = {k: v for k, v in spec.items() if k not in ("columns", "rows")}
    if "columns" in spec:
        return [(c, cell(sections, {**base, "column": c})) for c in spec["columns"]]
    return [(", ".join(f"{k}={v}" for k, v in r.items()), cell(sections, {**base, "row": {**base.get("row", {}), **r}}))
            for r in spec["rows"]]


# ---------------------------------------------------------------------------------------------------------------------
# the verdicts
# ---------------------------------------------------------------------------------------------------------------------
def fmt(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _with_std(v: tuple[float, float | None]) -> str:
    return fmt(v[0]) + ("" if v[1] is None else f" ± {fmt(v[1])}")


def verdict(kind: str, deciding: str) -> dict:
    return {"verdict": kind, "deciding": deciding}


def absent(what: str) -> dict:
    return verdict("not testable at this scale", f"{what} not in this run")


def judge_threshold(test: dict, sections: list[dict]) -> dict:
    """`op` + `value` (optionally `partly`), `value` ± `tol` (a closeness claim), or `equals` (a text cell)."""
    if "equals" in test:
        found = raw_cells(sections, test["cell"])
        if found is None:
            return absent(f"{test['cell']['table']}[{test['cell']['column']}]")
        got = str(found[0][0][found[0][1]])
        return verdict("reproduced" if got == str(test["equals"]) else "not reproduced",
                       f"'{got}' (needs '{test['equals']}')")
    v = cell(sections, test["cell"])
    if v is None:
        return absent(f"{test['cell']['table']}[{test['cell']['column']}]")
    if "tol" in test:
        text = f"{_with_std(v)} (needs {fmt(test['value'])} ± {fmt(test['tol'])})"
        if abs(v[0] - test["value"]) <= test["tol"]:
            return verdict("reproduced", text)
        if "partly_tol" in test and abs(v[0] - test["value"]) <= test["partly_tol"]:
            return verdict("partly", text + f"; within ± {fmt(test['partly_tol'])}")
        return verdict("not reproduced", text)
    text = f"{_with_std(v)} (needs {test['op']} {fmt(test['value'])})"
    if OPS[test["op"]](v[0], test["value"]):
        return verdict("reproduced", text)
    if "partly" in test and OPS[test["op"]](v[0], test["partly"]):
        return verdict("partly", text + f"; {test['op']} {fmt(test['partly'])} holds")
    return verdict("not reproduced", text)


def difference_verdict(a: tuple, b: tuple, op: str, n_seeds: int | None, min_seeds: int, text: str) -> dict:
    """a op b decided only when the difference exceeds the seeds' spread (and enough seeds were run)."""
    spread = math.sqrt((a[1] or 0.0) ** 2 + (b[1] or 0.0) ** 2)
    if n_seeds is not None and n_seeds < min_seeds:
        return verdict("inconclusive", text + f"; {n_seeds} seed(s), the claim needs ≥ {min_seeds}")
    holds = OPS[op](a[0], b[0])
    if spread > 0 and abs(a[0] - b[0]) <= spread:
        return verdict("inconclusive", text + f"; |Δ| = {fmt(abs(a[0] - b[0]))} within the seed spread "
                                              f"{fmt(spread)}")
    return verdict("reproduced" if holds else "not reproduced", text)


def judge_compare(test: dict, sections: list[dict]) -> dict:
    a, b = cell(sections, test["a"]), cell(sections, test["b"])
    if a is None or b is None:
        missing = test["a"] if a is None else test["b"]
        return absent(f"{missing['table']}[{missing['column']}]")
    factor = float(test.get("factor", 1.0))
    text = (f"{test.get('a_label', 'a')} {_with_std(a)} vs {'' if factor == 1 else f'{fmt(factor)} × '}"
            f"{test.get('b_label', 'b')} {_with_std(b)}")
    b = (b[0] * factor, None if b[1] is None else b[1] * factor)
    seeds = cell(sections, test["seeds"]) if "seeds" in test else None
    return difference_verdict(a, b, test.get("op", "<"), None if seeds is None else int(seeds[0]),
                              int(test.get("min_seeds", 1)), text)


def judge_monotone(test: dict, sections: list[dict]) -> dict:
    values = series(sections, test["series"])
    have = [(label, v[0]) for label, v in values if v is not None]
    if len(have) < 2:
        return absent(f"{test['series']['table']} series")
    sign = 1 if test.get("direction", "increasing") == "increasing" else -1
    steps = [sign * (b - a) > 0 for (_, a), (_, b) in zip(have[:-1], have[1:])]
    text = " → ".join(fmt(v) for _, v in have) + f" ({sum(steps)}/{len(steps)} steps {test.get('direction', 'increasing')})"
    if len(have) < len(values):
        text += f"; {len(values) - len(have)} point(s) absent"
    if all(steps):  # a series with absent points tests only part of the claim
        return verdict("reproduced" if len(have) == len(values) else "partly", text)
    return verdict("partly" if sum(steps) >= len(steps) / 2 else "not reproduced", text)


def sweep_cell(agg, model: str, sampler: str, grid: str, nfe: int, metric: str) -> tuple[float, float | None] | None:
    import polars as pl

    if agg is None or f"{metric}_mean" not in agg.columns:
        return None
    sub = agg.filter((pl.col("model") == model) & (pl.col("sampler") == sampler) & (pl.col("grid") == grid)
                     & (pl.col("nfe") == nfe))
    if sub.height == 0 or sub[f"{metric}_mean"][0] is None:
        return None
    return float(sub[f"{metric}_mean"][0]), sub[f"{metric}_std"][0]


def resolve_grid(grid: str, sampler: str) -> str:
    from .spine import sweep_grid

    return sweep_grid(grid, sampler)


def judge_sweep(test: dict, agg) -> dict:
    """Paired comparison over NFEs: a (sampler, grid) beats b on `metric` at how many of the NFEs both have."""
    wins, total, parts, seeds_short = 0, 0, [], False
    for pair in test["pairs"]:
        for nfe in test["nfe"]:
            sides = []
            for side in ("a", "b"):
                s = pair[side]
                sides.append(sweep_cell(agg, test["model"], s["sampler"], resolve_grid(s["grid"], s["sampler"]),
                                        nfe, test["metric"]))
            a, b = sides
            if a is None or b is None:
                continue
            total += 1
            spread = math.sqrt((a[1] or 0.0) ** 2 + (b[1] or 0.0) ** 2)
            won = OPS[test.get("op", "<")](a[0], b[0])
            if spread > 0 and abs(a[0] - b[0]) <= spread:
                seeds_short = True
                won = False
            wins += won
            parts.append(f"{pair['a']['sampler']}/{pair['a']['grid']} vs {pair['b']['sampler']}/"
                         f"{pair['b']['grid']} NFE {nfe}: {fmt(a[0])} vs {fmt(b[0])}")
    if total == 0:
        return absent(f"{test['model']} sweep cells for {test['metric']}")
    text = f"{wins}/{total} cells agree ({test['metric']}, {test['model']}); " + "; ".join(parts[:4]) + (
        " …" if len(parts) > 4 else "")
    if wins == total:
        return verdict("reproduced", text)
    if wins == 0 and seeds_short:
        return verdict("inconclusive", text + "; differences within the seed spread")
    return verdict("partly" if wins > 0 else "not reproduced", text)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    def ranks(v):
        order = sorted(range(len(v)), key=lambda i: v[i])
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    num = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    den = math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))
    return num / den if den > 0 else float("nan")


def rank_agreement(agg, papers: dict, model: str, metric: str, paper_table: str, grid: str = "default"
                   ) -> list[tuple[int, int, float]]:
    """(NFE, cells, Spearman ρ) between our per-sampler `metric` and the published numbers at each NFE."""
    table = papers.get(paper_table)
    if table is None or "nfe" not in table:
        return []
    out = []
    for j, nfe in enumerate(table["nfe"]):
        ours, theirs = [], []
        for row in table["rows"]:
            published = row[1 + j]
            names = table.get("sampler_of_row", {}).get(row[0], [])
            names = [names] if isinstance(names, str) else names
            if published is None or not names:
                continue
            value = sweep_cell(agg, model, names[0], resolve_grid(grid, names[0]), nfe, metric)
            if value is not None:
                ours.append(value[0])
                theirs.append(float(published))
        if len(ours) >= 3:
            out.append((nfe, len(ours), spearman(ours, theirs)))
    return out


def judge_rank(test: dict, agg, papers: dict) -> dict:
    per_nfe = rank_agreement(agg, papers, test["model"], test["metric"], test["paper_table"], test.get("grid", "default"))
    per_nfe = [(n, c, r) for n, c, r in per_nfe if not math.isnan(r)]
    if not per_nfe:
        return absent(f"{test['model']} cells matching {test['paper_table']}")
    mean = sum(r for _, _, r in per_nfe) / len(per_nfe)
    cells = sum(c for _, c, _ in per_nfe)
    text = (f"mean Spearman ρ = {mean:.2f} over {len(per_nfe)} NFE ({cells} cells); "
            + ", ".join(f"NFE {n}: ρ = {r:.2f} (n = {c})" for n, c, r in per_nfe))
    if mean >= float(test.get("value", 0.5)):
        return verdict("reproduced", text)
    return verdict("partly" if mean > 0 else "not reproduced", text)


def judge(claim: dict, sections: list[dict], agg, papers: dict, run_scale: str) -> dict:
    test = claim["test"]
    if test["kind"] == "not_testable":
        return verdict("not testable at this scale", test["reason"])
    if SCALE_LEVEL[claim["scale"]] > SCALE_LEVEL.get(run_scale, 1):
        return verdict("not testable at this scale", f"needs a {claim['scale']}-scale run (this run: {run_scale})")
    if test["kind"] == "threshold":
        return judge_threshold(test, sections)
    if test["kind"] == "compare":
        return judge_compare(test, sections)
    if test["kind"] == "monotone":
        return judge_monotone(test, sections)
    if test["kind"] == "sweep":
        return judge_sweep(test, agg)
    return judge_rank(test, agg, papers)


def scorecard(claims: list[dict], sections: list[dict], agg, papers: dict, run_scale: str) -> list[dict]:
    """One row per claim: id, paper, where, statement, verdict, deciding number, paper number, section link."""
    present = {s["id"] for s in sections}
    rows = []
    for c in claims:
        v = judge(c, sections, agg, papers, run_scale)
        rows.append({"id": c["id"], "paper": c["paper"], "where": c["where"], "statement": c["statement"],
                     "scale": c["scale"], "paper_value": c.get("paper_value"), **v,
                     "section": c["section"] if c["section"] in present else None,
                     "explanation": c.get("explanation")})
    return rows


def counts(rows: list[dict]) -> dict[str, int]:
    return {k: sum(r["verdict"] == k for r in rows) for k in VERDICTS}


def scorecard_section(rows: list[dict], config_label: str, run_scale: str) -> dict:
    """The scorecard as a report section (order 1: before every paper's sections)."""
    n = counts(rows)
    summary = ", ".join(f"{k} {v}" for k, v in n.items() if v)
    table = {"id": "claims", "source": "ours",
             "caption": "Every checkable claim of the three papers, judged against this run's outputs. "
                        "'Deciding number' is computed from the run; 'paper' is the published number (full scale) "
                        "where one exists.",
             "columns": ["claim", "paper · where", "statement", "verdict", "deciding number (this run)", "paper",
                         "section"],
             "rows": [[r["id"], f"{r['paper']} {r['where']}", r["statement"], r["verdict"], r["deciding"],
                       "–" if r["paper_value"] is None else str(r["paper_value"]),
                       f"[{r['section']}](#{r['section']})" if r["section"] else "–"] for r in rows],
             "markdown_cells": True}
    papers = list(dict.fromkeys(r["paper"] for r in rows))
    summary_table = {"id": "claims_per_paper", "source": "ours",
                     "caption": "Verdicts per paper (counts of claims).",
                     "columns": ["paper", *VERDICTS, "total"],
                     "rows": [[p, *[sum(r["verdict"] == k for r in rows if r["paper"] == p) for k in VERDICTS],
                               sum(r["paper"] == p for r in rows)] for p in papers]}
    explained = [f"**{r['id']}** ({r['verdict']}): {r['explanation']}" for r in rows
                 if r.get("explanation") and r["verdict"] in ("not reproduced", "partly", "inconclusive")]
    return {"id": "scorecard", "order": 1, "paper": "", "title": "Claims scorecard",
            "reproduces": f"{len(rows)} claims from claims.yaml",
            "scale": run_scale, "config": config_label,
            "text": [f"{len(rows)} claims: {summary}. A verdict that rests on a difference between two runs counts only "
                     "when the difference is outside the spread over seeds (else *inconclusive*); claims whose "
                     "inputs need full-scale models are *not testable at this scale*."]
                    + (["What the investigation of each claim that did not reproduce found:"] + explained
                       if explained else []),
             "tables": [summary_table, table], "figures": [], "notes": []}

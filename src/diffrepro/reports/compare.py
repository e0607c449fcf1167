"""Compare two versions of the results (git revisions, tags or DVC experiment names) through DVC and git.

Params diff: `dvc params diff A B --json`; changed metric keys: `dvc metrics diff A B --json`; experiment names:
`dvc exp show --json`; per-cell tables: `results/tables/metrics_agg.parquet` read at each revision with
`dvc.api.read` (DVC cache for DVC outputs, git for git-tracked files). All our metrics are lower-is-better.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import UserError
from . import SCHEMA_VERSION
from .tables import KEYS, aggregated_metrics, read_parquet

WORKSPACE = "workspace"
SUMMARY = "results/metrics.json"
CELLS = "results/tables/metrics_agg.parquet"


@dataclass(frozen=True)
class Version:
    name: str        # as the user gave it
    rev: str | None  # commit sha; None = the working tree

    @property
    def label(self) -> str:
        return self.name if self.rev is None or self.rev.startswith(self.name) else f"{self.name} ({self.rev[:8]})"


def run_tool(args: list[str], repo: Path, what: str) -> str:
    try:
        out = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UserError(f"{what}: could not run {' '.join(args[:3])}: {exc}") from None
    if out.returncode != 0:
        raise UserError(f"{what}: `{' '.join(args)}` failed: {(out.stderr or out.stdout).strip()[-500:]}")
    return out.stdout


def experiment_revs(repo: Path) -> dict[str, str]:
    """DVC experiment name -> commit, from `dvc exp show --json` (any nesting level that has name + rev)."""
    try:
        data = json.loads(run_tool(["dvc", "exp", "show", "--json", "--no-pager"], repo, "dvc exp show") or "[]")
    except (UserError, json.JSONDecodeError):
        return {}
    found: dict[str, str] = {}

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("name"), str) and isinstance(node.get("rev"), str):
                found.setdefault(node["name"], node["rev"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(data)
    return found


def resolve(name: str, repo: Path) -> Version:
    if name == WORKSPACE:
        return Version(name, None)
    out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], cwd=repo,
                         capture_output=True, text=True, timeout=30)
    if out.returncode == 0:
        return Version(name, out.stdout.strip())
    exps = experiment_revs(repo)
    if name in exps:
        return Version(name, exps[name])
    raise UserError(f"unknown revision {name!r}: not a git revision or tag, nor a DVC experiment of {repo.resolve()}"
                    + (f" (experiments: {sorted(exps)})" if exps else ""))


def read_at(repo: Path, path: str, version: Version) -> bytes:
    if version.rev is None:
        file = repo / path
        if not file.exists():
            raise UserError(f"revision {version.name!r}: no stored {path}")
        return file.read_bytes()
    import dvc.api

    try:
        return dvc.api.read(path, repo=str(repo), rev=version.rev, mode="rb")
    except Exception as exc:  # PathMissingError, FileMissingError (not in cache), RevError, ...
        raise UserError(f"revision {version.name!r}: no stored {path} ({type(exc).__name__}: "
                        f"{str(exc).strip()[:200]}; run the pipeline there, or `dvc pull`)") from None


def load_version(repo: Path, version: Version) -> pl.DataFrame:
    """Schema-checked per-cell table of one version; UserError naming the revision when absent or incompatible."""
    try:
        summary = json.loads(read_at(repo, SUMMARY, version))
    except json.JSONDecodeError:
        raise UserError(f"revision {version.name!r}: {SUMMARY} is not valid JSON") from None
    found = summary.get("schema_version") if isinstance(summary, dict) else None
    if found != SCHEMA_VERSION:
        raise UserError(f"revision {version.name!r}: {SUMMARY} has schema version {found!r}, this diffrepro reads "
                        f"version {SCHEMA_VERSION}; re-run `diffrepro aggregate` at that revision")
    return read_parquet(read_at(repo, CELLS, version), f"revision {version.name!r} ({CELLS})")


def dvc_rev_args(a: Version, b: Version) -> list[str]:
    return [a.rev or "HEAD"] + ([b.rev] if b.rev else [])


def params_diff(repo: Path, a: Version, b: Version) -> list[dict]:
    """Changed params, one row per (file, key) from `dvc params diff --json`."""
    data = json.loads(run_tool(["dvc", "params", "diff", *dvc_rev_args(a, b), "--json"], repo, "params diff") or "{}")
    return [{"file": f, "key": k, "old": v.get("old"), "new": v.get("new")}
            for f, keys in sorted(data.items()) for k, v in sorted(keys.items())]


def metrics_diff_keys(repo: Path, a: Version, b: Version) -> int:
    """How many metric keys `dvc metrics diff` reports changed (its own view, shown beside our cell deltas)."""
    data = json.loads(run_tool(["dvc", "metrics", "diff", *dvc_rev_args(a, b), "--json"], repo, "metrics diff") or "{}")
    return sum(1 for keys in data.values() for k in keys if k != "schema_version")


def dvc_plots(repo: Path, a: Version, b: Version, out_dir: Path) -> Path | None:
    """`dvc plots diff` of the plots declared in dvc.yaml (vega-lite page, scripts from a CDN): linked, not embedded.
    None when DVC declares no plots or cannot render them; the comparison does not depend on it."""
    dest = Path(out_dir).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)  # dvc writes the page but does not create missing parents
    try:
        run_tool(["dvc", "plots", "diff", *dvc_rev_args(a, b), "-o", str(dest)], repo, "plots diff")
    except UserError:
        return None
    page = dest / "index.html"
    return page if page.exists() else None


def long_means(agg: pl.DataFrame) -> pl.DataFrame:
    metrics = aggregated_metrics(agg)
    return (agg.select(*KEYS, *[pl.col(f"{m}_mean").alias(m) for m in metrics])
               .unpivot(index=list(KEYS), variable_name="metric", value_name="value")
               .filter(pl.col("value").is_not_null()))


def deltas(old: pl.DataFrame, new: pl.DataFrame, tol: float = 0.0) -> pl.DataFrame:
    """Per (cell, metric): old, new, delta = new − old, relative delta, direction (lower is better)."""
    joined = long_means(old).join(long_means(new), on=[*KEYS, "metric"], how="full", coalesce=True, suffix="_new")
    delta = pl.col("new") - pl.col("old")
    direction = (pl.when(pl.col("old").is_null()).then(pl.lit("added"))
                   .when(pl.col("new").is_null()).then(pl.lit("removed"))
                   .when(delta.abs() <= tol).then(pl.lit("same"))
                   .when(delta < 0).then(pl.lit("better")).otherwise(pl.lit("worse")))
    return (joined.rename({"value": "old", "value_new": "new"})
                  .with_columns(delta.alias("delta"), direction.alias("direction"))
                  .with_columns((pl.col("delta") / pl.col("old").abs()).alias("relative"))
                  .sort(*KEYS, "metric"))


def stem(a: Version, b: Version) -> str:
    from .render import slug

    return f"{slug(a.name)}_vs_{slug(b.name)}"


def render_comparison(a: Version, b: Version, old: pl.DataFrame, new: pl.DataFrame, params: list[dict],
                      dvc_changed_keys: int | None, out_dir: Path, tol: float = 0.0,
                      dvc_plots_page: Path | None = None) -> list[Path]:
    """Write <out_dir>/<A>_vs_<B>.{html,md} and the overlaid metric-vs-NFE figures beside them."""
    import time

    from . import figures, render
    from .spine import metrics_of

    stem_ = stem(a, b)
    table = deltas(old, new, tol)
    both = pl.concat([old, new], how="diagonal_relaxed")
    figs = []
    for model in sorted(set(both["model"])):
        metrics = [m for m in metrics_of(both, model) if m != "wall_s"][:4]
        if metrics:
            dest = figures.metric_vs_nfe([(a.name, old), (b.name, new)], model, metrics,
                                         Path(out_dir) / f"{stem_}_figures" / f"{model}.png",
                                         f"{model}: {a.name} (solid) vs {b.name} (dashed)")
            figs.append({"path": str(dest), "caption": f"Model {model}: {', '.join(metrics)} against NFE, "
                                                       f"{a.label} solid, {b.label} dashed."})
    context = {"title": f"diffrepro comparison: {a.name} vs {b.name}", "a": a, "b": b,
               "generated": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "params": params,
               "dvc_changed_keys": dvc_changed_keys, "counts": dict(sorted(table.group_by("direction").len().rows())),
               "deltas": table.rows(named=True), "tol": tol, "figures": figs,
               "dvc_plots": None if dvc_plots_page is None else Path(dvc_plots_page).resolve().relative_to(
                   Path(out_dir).resolve()).as_posix()}
    return render.render_compare(context, Path(out_dir), stem_)

"""The report's provenance block: git revision, params hash, dataset hashes, package versions, machine, and time and
peak memory per stage from Snakemake `benchmark:` TSV files."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import polars as pl

from ..config import config_hash
from ..errors import UserError
from ..io import git_revision, package_versions


def dataset_hashes(results: Path, datasets) -> dict[str, dict]:
    """sha256, size, shape and source of each of `datasets` (the params file's, read from their data.json: declared
    inputs of the report, never a folder listing)."""
    out = {}
    for path in (results / "data" / name / "data.json" for name in sorted(datasets)):
        if not path.is_file():
            continue
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON: {exc}") from None
        out[path.parent.name] = {k: meta.get(k) for k in ("sha256", "N", "shape", "source")}
    return out


def read_benchmark(path: Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, separator="\t", null_values=["-", "NA", ""], infer_schema_length=None)
    except Exception as exc:
        raise UserError(f"benchmark file {path} is not a Snakemake benchmark TSV: {exc}") from None


def stage_table(benchmarks: Path) -> pl.DataFrame:
    """Per stage (first folder under `benchmarks/` = the rule): jobs, summed seconds, peak max_rss (MB)."""
    frames = []
    for path in sorted(benchmarks.rglob("*.tsv")) if benchmarks.is_dir() else []:
        df = read_benchmark(path)
        if "s" not in df.columns:
            raise UserError(f"benchmark file {path} has no 's' column")
        rss = pl.col("max_rss").cast(pl.Float64) if "max_rss" in df.columns else pl.lit(None, pl.Float64)
        stage = path.relative_to(benchmarks).parts[0].removesuffix(".tsv")
        frames.append(df.select(pl.lit(stage).alias("stage"), pl.col("s").cast(pl.Float64), rss.alias("max_rss")))
    if not frames:
        return pl.DataFrame(schema={"stage": pl.String, "jobs": pl.UInt32, "seconds": pl.Float64,
                                    "peak_rss_mb": pl.Float64})
    return (pl.concat(frames).group_by("stage")
              .agg(pl.len().alias("jobs"), pl.col("s").sum().alias("seconds"), pl.col("max_rss").max().alias("peak_rss_mb"))
              .sort("seconds", descending=True))


def collect(cfg: dict, params_path: str, results: Path, benchmarks: Path) -> dict:
    stages = stage_table(benchmarks)
    return {
        "git": git_revision(Path.cwd()),  # the checkout the pipeline runs in
        "params_file": params_path,
        "params_hash": config_hash(cfg),
        "seed": cfg.get("seed"),
        "datasets": dataset_hashes(results, cfg.get("datasets", {})),
        "versions": package_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count()},
        "stages": stages.rows(named=True),
        "total_seconds": float(stages["seconds"].sum()) if stages.height else None,
        "benchmarks_found": stages.height > 0,
    }

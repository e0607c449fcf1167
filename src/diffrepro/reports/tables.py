"""Metric rows (written by `diffrepro evaluate`) -> polars tables and the flat `metrics.json` DVC diffs.

A *cell* is one (dataset, model, sampler, grid, nfe); seeds are replicates of a cell. Every numeric column that is not
a key is a metric; all our metrics (FID, KID, SWD, MMD, energy, trajectory RMSE, wall time) are lower-is-better.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import polars as pl

from ..errors import UserError
from ..io import read_json
from . import SCHEMA_VERSION

KEYS = ("dataset", "model", "sampler", "grid", "nfe")
REQUIRED = (*KEYS, "seed")
NOT_METRICS = (*REQUIRED, "nfe_measured")
LABELS = ("feature_space", "fid_protocol")  # text columns of image rows (what each FID is), kept per cell
SCHEMA_KEY = "diffrepro_schema_version"


def read_metric_rows(paths: Iterable[str | Path]) -> pl.DataFrame:
    """Concatenate the JSON row lists of the evaluate step; UserError naming the file on a malformed one."""
    rows = []
    for path in paths:
        data = read_json(path)
        if not isinstance(data, list):
            raise UserError(f"{path}: expected a JSON list of metric rows, got {type(data).__name__}")
        for i, row in enumerate(data):
            missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
            if missing:
                raise UserError(f"{path}: row {i} lacks the key(s) {missing}")
        rows += data
    if not rows:
        raise UserError("no metric rows found (every metrics file is empty or none was given)")
    df = pl.DataFrame(rows, infer_schema_length=None)
    numeric = [c for c, t in df.schema.items() if c not in NOT_METRICS and (t.is_numeric() or t == pl.Null)]
    return df.with_columns(pl.col(*numeric).cast(pl.Float64), pl.col("nfe", "seed").cast(pl.Int64)).sort(REQUIRED)


def metric_columns(df: pl.DataFrame) -> list[str]:
    """Numeric non-key columns; `<metric>_std` (a within-cell spread, e.g. KID over subsets) stays in the per-seed
    table but is not a metric of its own: the aggregated table reports the spread over seeds."""
    return [c for c, t in df.schema.items() if c not in NOT_METRICS and (t.is_numeric() or t == pl.Null)
            and not (c.endswith("_std") and c[:-4] in df.columns)]


def aggregate(df: pl.DataFrame) -> pl.DataFrame:
    """Mean and (sample) standard deviation over seeds, one row per cell; `<metric>_mean`, `<metric>_std`."""
    metrics = metric_columns(df)
    extra = [pl.col("nfe_measured").mean()] if "nfe_measured" in df.columns else []
    extra += [pl.col(c).drop_nulls().first() for c in LABELS if c in df.columns]
    return (df.group_by(KEYS, maintain_order=True)
              .agg(*extra, pl.len().alias("n_seeds"),
                   *[pl.col(m).mean().alias(f"{m}_mean") for m in metrics],
                   *[pl.col(m).std().alias(f"{m}_std") for m in metrics])
              .sort(KEYS))


def aggregated_metrics(agg: pl.DataFrame) -> list[str]:
    return [c[: -len("_mean")] for c in agg.columns if c.endswith("_mean")]


def flat_metrics(agg: pl.DataFrame) -> dict:
    """`<model>/<sampler>/<grid>/nfe<N>/<metric>` -> seed mean: one key per cell for `dvc metrics diff`."""
    out: dict = {"schema_version": SCHEMA_VERSION}
    for row in agg.iter_rows(named=True):
        for m in aggregated_metrics(agg):
            value = row[f"{m}_mean"]
            if value is not None:
                out[f"{row['model']}/{row['sampler']}/{row['grid']}/nfe{row['nfe']}/{m}"] = value
    return out


def write_parquet(df: pl.DataFrame, dest: Path) -> None:
    df.write_parquet(dest, metadata={SCHEMA_KEY: str(SCHEMA_VERSION)})


def read_parquet(source: str | Path | bytes, what: str) -> pl.DataFrame:
    """Read one of our parquet tables; UserError naming `what` (file or revision) on a missing or foreign schema."""
    if isinstance(source, (str, Path)) and not Path(source).exists():
        raise UserError(f"missing input file: {source}")
    handle = (lambda: io.BytesIO(source)) if isinstance(source, bytes) else (lambda: source)
    try:
        meta = pl.read_parquet_metadata(handle())
        df = pl.read_parquet(handle())
    except Exception as exc:  # polars raises several types for a corrupt file
        raise UserError(f"{what}: cannot read the metrics table: {exc}") from None
    check_schema_version(meta.get(SCHEMA_KEY), what)
    return df


def check_schema_version(found, what: str) -> None:
    if found is None or str(found) != str(SCHEMA_VERSION):
        raise UserError(f"{what}: metrics schema version {found!r} is not the supported version {SCHEMA_VERSION} "
                        f"(results written by an incompatible diffrepro; re-run `diffrepro aggregate` there)")


def write_table(rows: list[dict], dest_stem: Path) -> None:
    """rows → `<stem>.parquet` and `<stem>.csv` (list-valued columns only in parquet)."""
    from ..io import write_with

    frame = pl.DataFrame(rows)
    write_with(dest_stem.with_suffix(".parquet"), lambda tmp: frame.write_parquet(tmp))
    flat = frame.select([c for c, dt in frame.schema.items() if not isinstance(dt, pl.List)])
    write_with(dest_stem.with_suffix(".csv"), lambda tmp: flat.write_csv(tmp))

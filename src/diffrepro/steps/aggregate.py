"""Aggregate every metrics file into results tables: per-seed rows and seed means (parquet + CSV), and the flat
`metrics.json` that `dvc metrics diff` compares (one key per cell)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..io import json_text, write_all, write_provenance


def configure(parser):
    parser.add_argument("--params", required=True, help="validated params file")
    parser.add_argument("--metrics", default="results/metrics",
                        help="folder of <model>/<sampler>.json metric files, or metric files themselves")
    parser.add_argument("--inputs", nargs="*", default=None,
                        help="explicit metric files (overrides the folder scan; Snakemake passes its inputs)")
    parser.add_argument("--out-dir", default="results/tables")
    parser.add_argument("--summary", default="results/metrics.json", help="flat metrics for `dvc metrics diff`")


def metric_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"metrics folder not found: {folder}")
    files = sorted(p for p in folder.glob("*/*.json") if not p.name.endswith(".prov.json"))
    if not files:
        raise UserError(f"no metric files (<model>/<sampler>.json) under {folder}")
    return files


def run(args):
    from .. import config
    from ..reports import tables

    cfg = config.load(args.params)
    files = [Path(p) for p in args.inputs] if args.inputs else metric_files(Path(args.metrics))
    rows = tables.read_metric_rows(files)
    agg = tables.aggregate(rows)
    out = Path(args.out_dir)
    summary = json_text(tables.flat_metrics(agg))
    write_all([  # all or nothing (a full disk half-way keeps the previous tables)
        (out / "metrics.parquet", lambda p: tables.write_parquet(rows, p)),
        (out / "metrics.csv", lambda p: p.write_text(rows.write_csv())),
        (out / "metrics_agg.parquet", lambda p: tables.write_parquet(agg, p)),
        (out / "metrics_agg.csv", lambda p: p.write_text(agg.write_csv())),
        (Path(args.summary), lambda p: p.write_text(summary)),
    ])
    write_provenance(out / "metrics.parquet", cfg_section={k: cfg.get(k) for k in ("sampling", "metrics")},
                     inputs=[str(f) for f in files])
    print(f"aggregate: {rows.height} rows, {agg.height} cells from {len(files)} files -> {out}, {args.summary}")

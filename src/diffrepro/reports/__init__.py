"""Layer 9: polars aggregation of metric rows, figures, Jinja2 rendering (HTML / Markdown / LaTeX), version comparison.

Modules: `tables` (metric rows -> per-cell and per-seed-aggregated tables, flat metrics.json), `paper` (the published
numbers file), `figures` (matplotlib), `sections` (the section.json contract), `provenance`, `render` (Jinja2),
`compare` (two versions through DVC and git). Steps in `diffrepro.steps.{aggregate,report,compare}` do the I/O.
"""
SCHEMA_VERSION = 1  # of metrics.json / metrics.parquet; bump when keys or columns change meaning

# owned by the metrics area; see docs/DEVELOPING.md

# owned by the report area; see docs/DEVELOPING.md

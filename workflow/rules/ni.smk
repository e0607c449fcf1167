# owned by the ni area; see docs/DEVELOPING.md

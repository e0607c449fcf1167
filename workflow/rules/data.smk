# owned by the data area; see docs/DEVELOPING.md

# owned by the studies area; see docs/DEVELOPING.md

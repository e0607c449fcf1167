# owned by the sample area; see docs/DEVELOPING.md

# owned by the train area; see docs/DEVELOPING.md

# owned by the mdm area; see docs/DEVELOPING.md

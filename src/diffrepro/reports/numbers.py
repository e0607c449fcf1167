"""Numbers in section prose and tables, spelled one way."""
from __future__ import annotations

import math


def fmt(v, digits: int = 3, notation: str = "f") -> str:
    """`v` with `digits` decimals (notation "f"; None and NaN read "n/a") or `digits` significant digits ("g");
    anything that is not a float is written as str(v)."""
    if notation == "g":
        return f"{v:.{digits}g}" if isinstance(v, float) else str(v)
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def rounded(v, digits: int):
    """round(v, digits), None for None and NaN (JSON table cells)."""
    return None if v is None or math.isnan(v) else round(v, digits)

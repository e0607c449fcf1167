"""Linear forms: a sampler state written as coefficients over x0-predictions y_j and noise draws ε_j (NI spec §3.4).

    x = Σ_j y[j]·y_j + Σ_j eps[j]·ε_j

A `LinearForm` supports exactly the operators the sampler contract allows (docs/DEVELOPING.md "Samplers"): `+`, `−`
between forms, `*` and `/` by a scalar, unary `−`, and `sum()` (via `0 + form`). Anything else — adding a constant,
multiplying two forms, calling a torch function — raises `TypeError`, because the sampler would then not be linear
in {y_j, ε_j} and its Natural Inference matrices would not exist.

Coefficients are float64 numpy vectors that grow as new predictions and noises are created; shorter vectors are
zero-padded on combination.
"""
from __future__ import annotations

import numbers

import numpy as np


def as_scalar(c) -> float:
    """A Python float from a real scalar (float, int, numpy scalar, 0-d array or tensor); TypeError otherwise."""
    if isinstance(c, bool):
        raise TypeError("a boolean is not a sampler coefficient")
    if isinstance(c, numbers.Real):
        return float(c)
    shape = getattr(c, "shape", None)
    if shape is not None and tuple(shape) == () and not isinstance(c, LinearForm):
        return float(c)
    raise TypeError(f"linear forms combine only with real scalars, got {type(c).__name__}")


def _pad(v: np.ndarray, n: int) -> np.ndarray:
    return v if len(v) == n else np.concatenate([v, np.zeros(n - len(v))])


class LinearForm:
    """Coefficient vectors (`y`, `eps`) of a state over predictions and noises. Immutable."""

    __slots__ = ("y", "eps")
    __array_priority__ = 1000  # numpy scalars defer to our reflected operators

    def __init__(self, y=(), eps=()):
        self.y = np.asarray(y, dtype=np.float64)
        self.eps = np.asarray(eps, dtype=np.float64)

    @classmethod
    def unit(cls, kind: str, index: int) -> "LinearForm":
        """The form of the single symbol y_index (`kind="y"`) or ε_index (`kind="eps"`)."""
        e = np.zeros(index + 1)
        e[index] = 1.0
        return cls(y=e) if kind == "y" else cls(eps=e)

    # --- arithmetic allowed by the sampler contract ---------------------------------------------------------------
    def _lincomb(self, other: "LinearForm", a: float, b: float) -> "LinearForm":
        ny, ne = max(len(self.y), len(other.y)), max(len(self.eps), len(other.eps))
        return LinearForm(a * _pad(self.y, ny) + b * _pad(other.y, ny), a * _pad(self.eps, ne) + b * _pad(other.eps, ne))

    def _scaled(self, c: float) -> "LinearForm":
        return LinearForm(c * self.y, c * self.eps)

    def __add__(self, other):
        if isinstance(other, LinearForm):
            return self._lincomb(other, 1.0, 1.0)
        if _is_zero(other):  # sum() starts from 0
            return self
        return NotImplemented

    __radd__ = __add__

    def __sub__(self, other):
        if isinstance(other, LinearForm):
            return self._lincomb(other, 1.0, -1.0)
        if _is_zero(other):
            return self
        return NotImplemented

    def __rsub__(self, other):
        if _is_zero(other):
            return -self
        return NotImplemented

    def __mul__(self, c):
        try:
            return self._scaled(as_scalar(c))
        except TypeError:
            return NotImplemented

    __rmul__ = __mul__

    def __truediv__(self, c):
        try:
            return self._scaled(1.0 / as_scalar(c))
        except TypeError:
            return NotImplemented

    def __neg__(self):
        return self._scaled(-1.0)

    def __pos__(self):
        return self

    # --- refused: these would make the sampler non-linear or hide an unsupported operation -------------------------
    def __rtruediv__(self, other):
        raise TypeError("dividing by a state is not linear (refused in trace mode)")

    def __pow__(self, other):
        raise TypeError("powers of a state are not linear (refused in trace mode)")

    def __bool__(self):
        raise TypeError("a sampler may not branch on its state (data-dependent branch refused in trace mode)")

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        raise TypeError(f"torch function {getattr(func, '__name__', func)} applied to a state (refused in trace mode)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.multiply and method == "__call__" and len(inputs) == 2:
            scalar = inputs[0] if inputs[1] is self else inputs[1]
            return self * scalar
        raise TypeError(f"numpy ufunc {ufunc.__name__} applied to a state (refused in trace mode)")

    # --- inspection -----------------------------------------------------------------------------------------------
    def padded(self, n_y: int, n_eps: int) -> tuple[np.ndarray, np.ndarray]:
        return _pad(self.y, n_y), _pad(self.eps, n_eps)

    def __repr__(self):
        return f"LinearForm(y={np.round(self.y, 6).tolist()}, eps={np.round(self.eps, 6).tolist()})"


def _is_zero(v) -> bool:
    try:
        return as_scalar(v) == 0.0
    except TypeError:
        return False

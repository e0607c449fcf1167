"""The Natural Inference triple (C, B, nodes) and its storage in the paper repository's `.npz` layout (NI spec §3.1, §3.3).

    x_0 = σ(τ_0)·ε_0,   y_k = D(x_k, τ_k),   x_{k+1} = Σ_{j≤k} C[k,j]·y_j + Σ_j B[k,j]·ε_j     (k = 0..n−1)

Row k of C and B gives the model input at node k+1 (the final output for k = n−1). Column j ≥ 1 of B is the j-th
fresh noise draw of the sampler, in draw order. `nodes` rows are [τ_k, α(τ_k), σ(τ_k)] for k = 0..n in the model
schedule's coordinates. Files hold exactly the keys `past_xstart_coeff` (C, n×n), `past_epsilon_coeff` (B, n×(n+1);
the paper's tuned files use n×n and are padded on load) and `node_coeff` ((n+1)×3).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError

KEYS = ("past_xstart_coeff", "past_epsilon_coeff", "node_coeff")


@dataclass
class NIMatrix:
    C: np.ndarray
    B: np.ndarray
    nodes: np.ndarray
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.C = np.asarray(self.C, dtype=np.float64)
        self.B = np.asarray(self.B, dtype=np.float64)
        self.nodes = np.asarray(self.nodes, dtype=np.float64)
        n = self.C.shape[0] if self.C.ndim == 2 else -1
        if self.C.shape != (n, n) or n < 1:
            raise ValueError(f"C must be square n×n, got {self.C.shape}")
        if self.B.ndim != 2 or self.B.shape[0] != n or self.B.shape[1] < 1:
            raise ValueError(f"B must be n×m with n = {n}, got {self.B.shape}")
        if self.nodes.shape != (n + 1, 3):
            raise ValueError(f"nodes must be (n+1)×3 = {(n + 1, 3)}, got {self.nodes.shape}")
        if np.any(np.triu(self.C, 1) != 0):
            raise ValueError("C must be lower-triangular (a prediction cannot feed an earlier node)")

    # --- views ----------------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.C.shape[0]

    @property
    def times(self) -> np.ndarray:
        return self.nodes[:, 0]

    @property
    def alphas(self) -> np.ndarray:
        return self.nodes[:, 1]

    @property
    def sigmas(self) -> np.ndarray:
        return self.nodes[:, 2]

    @property
    def deterministic(self) -> bool:
        return not np.any(self.B[:, 1:])

    def replay(self, denoiser, eps0, noise=None):
        """x_n from the initial noise ε_0 (`executor.execute`): how the registry's matrix samplers run this triple."""
        from .executor import execute

        return execute(self, denoiser, eps0, noise)

    def row_normalised(self) -> np.ndarray:
        """C divided row-wise by its diagonal (the current prediction's weight), as the paper prints its matrices."""
        d = np.diag(self.C).copy()
        d[d == 0] = np.nan
        return self.C / d[:, None]

    def bandwidth(self) -> int:
        """Largest k − j with C[k, j] ≠ 0: each row uses at most the last `bandwidth + 1` predictions."""
        k, j = np.nonzero(self.C)
        return int((k - j).max()) if len(k) else 0

    def marginals(self) -> dict:
        """Row sums of C vs α(τ_{k+1}) and row ℓ2 norms of B vs σ(τ_{k+1}) (NI spec §3.1 marginal constraints)."""
        row_sum, noise_norm = self.C.sum(1), np.linalg.norm(self.B, axis=1)
        alpha, sigma = self.alphas[1:], self.sigmas[1:]
        return {"t": self.times[1:], "row_sum": row_sum, "alpha": alpha, "signal_err": row_sum - alpha,
                "noise_norm": noise_norm, "sigma": sigma, "noise_err": noise_norm - sigma}

    def with_noise_columns(self, m: int) -> "NIMatrix":
        """A copy whose B has exactly m columns (zero-padded; refuses to drop non-zero columns)."""
        if m < self.B.shape[1] and np.any(self.B[:, m:]):
            raise ValueError(f"B uses {self.B.shape[1]} noise columns; cannot truncate to {m}")
        B = np.zeros((self.n, m))
        k = min(m, self.B.shape[1])
        B[:, :k] = self.B[:, :k]
        return NIMatrix(self.C.copy(), B, self.nodes.copy(), dict(self.meta))

    # --- storage --------------------------------------------------------------------------------------------------
    def arrays(self) -> dict:
        """The three arrays under the paper repository's keys; B padded to at least n+1 columns."""
        m = max(self.n + 1, self.B.shape[1])
        return {"past_xstart_coeff": self.C, "past_epsilon_coeff": self.with_noise_columns(m).B,
                "node_coeff": self.nodes}

    def save(self, path: str | Path) -> Path:
        """Atomic `.npz` write with exactly the keys of KEYS."""
        from ..io import write_with

        arrays = self.arrays()
        return write_with(path, lambda tmp: np.savez(tmp, **arrays))

    @classmethod
    def load(cls, path: str | Path) -> "NIMatrix":
        path = Path(path)
        if not path.exists():
            raise UserError(f"NI matrix file not found: {path}")
        try:
            with np.load(path) as z:
                missing = [k for k in KEYS if k not in z.files]
                if missing:
                    raise UserError(f"{path}: not an NI matrix file, missing keys {missing} (expected {list(KEYS)})")
                C, B, nodes = (np.array(z[k], dtype=np.float64) for k in KEYS)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: cannot read NI matrix ({exc})") from None
        for key, arr in zip(KEYS, (C, B, nodes)):
            if not np.all(np.isfinite(arr)):
                raise UserError(f"{path}: {key} holds non-finite values (NaN or inf); expected finite coefficients")
        try:
            m = cls(C, B, nodes, {"source": str(path)})
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
        return m.with_noise_columns(max(m.n + 1, m.B.shape[1])) if m.B.shape[1] < m.n + 1 else m

    def to_csv(self, path: str | Path, which: str = "C", decimals: int = 3) -> Path:
        """C (or `row_normalised`, or B) rounded to `decimals`, rows labelled by output time τ_{k+1}, columns by
        prediction time τ_j (noise index for B), plus a `sum` column (ℓ2 `norm` for B) — the paper's CSV layout."""
        from ..io import write_text

        if which == "B":
            M, extra, cols = self.B, ("norm", np.linalg.norm(self.B, axis=1)), [f"eps{j}" for j in range(self.B.shape[1])]
        else:
            M = self.C if which == "C" else np.nan_to_num(self.row_normalised())
            extra, cols = ("sum", M.sum(1)), [_fmt_t(t) for t in self.times[:-1]]
        lines = [",".join(["t_out", *cols, extra[0]])]
        for k in range(self.n):
            vals = [f"{v:.{decimals}f}" for v in M[k]] + [f"{extra[1][k]:.{decimals}f}"]
            lines.append(",".join([_fmt_t(self.times[k + 1]), *vals]))
        return write_text(path, "\n".join(lines) + "\n")


NODE_ATOL = 1e-6  # |Δα|, |Δσ| allowed between a file's nodes and the model schedule (the paper's files: ≤ 1e-7)


def check_nodes(matrix: NIMatrix, schedule, source: str, atol: float = NODE_ATOL, require_vp: bool = True) -> float:
    """Refuse (UserError) a matrix whose nodes [τ, α, σ] are not those of `schedule` (NI spec claim 12).

    A stored matrix is only meaningful for the schedule it was built on: its coefficients assume α(τ_k), σ(τ_k) at
    the nodes where the model is evaluated. Checks, per node: α² + σ² = 1 (a VP matrix) and the model schedule is VP
    there (with `require_vp`: the paper's files are VP matrices), and |α_file − α(τ)|, |σ_file − σ(τ)| ≤ atol.
    Returns the largest node difference found.
    """
    t, a, s = matrix.times, matrix.alphas, matrix.sigmas
    vp = np.abs(a * a + s * s - 1.0)
    if require_vp and vp.max() > atol:
        k = int(vp.argmax())
        raise UserError(f"{source}: node {k} (t = {t[k]:.6g}) has α² + σ² = {a[k] ** 2 + s[k] ** 2:.9g}, not 1: "
                        f"not a variance-preserving matrix (tolerance {atol:g})")
    lo, hi = 0.0, float(getattr(schedule, "t_upper", 1.0))
    outside = np.nonzero((t < lo) | (t > hi))[0]
    if len(outside):
        k = int(outside[0])
        raise UserError(f"{source}: node {k} has t = {t[k]:.6g}, outside the model schedule's domain [{lo:g}, {hi:g}] "
                        f"({schedule.name})")
    import torch

    tt = torch.as_tensor(t, dtype=torch.float64)
    ma, ms = (schedule.alpha(tt).numpy(), schedule.sigma(tt).numpy())
    if require_vp and (not schedule.variance_preserving or np.abs(ma * ma + ms * ms - 1.0).max() > atol):
        raise UserError(f"{source}: the model schedule '{schedule.name}' is not variance preserving at the file's "
                        "nodes; NI files replay only on VP models")
    diff = np.maximum(np.abs(a - ma), np.abs(s - ms))
    bad = np.nonzero(diff > atol)[0]
    if len(bad):
        k = int(bad[0])
        raise UserError(f"{source}: node {k} (t = {t[k]:.6g}) does not match the model schedule '{schedule.name}': "
                        f"file α = {a[k]:.9g}, σ = {s[k]:.9g}; model α(t) = {ma[k]:.9g}, σ(t) = {ms[k]:.9g} "
                        f"(tolerance {atol:g})")
    return float(diff.max())


def _fmt_t(t: float) -> str:
    return f"{t:.4g}"


def max_abs_diff(a: NIMatrix, b: NIMatrix) -> float:
    """Largest entry-wise difference between two triples (C, B padded to a common width, nodes)."""
    m = max(a.B.shape[1], b.B.shape[1])
    if a.n != b.n:
        return float("inf")
    return float(max(np.abs(a.C - b.C).max(), np.abs(a.with_noise_columns(m).B - b.with_noise_columns(m).B).max(),
                     np.abs(a.nodes - b.nodes).max()))


def marginal_lines(m: NIMatrix) -> list[str]:
    """The marginal table of a matrix as text lines: per row, ΣC against α and ‖B‖ against σ (NI §3.1)."""
    mg = m.marginals()
    lines = [f"{'t_out':>9} {'sum C':>9} {'alpha':>9} {'|B|':>9} {'sigma':>9}"]
    for k in range(m.n):
        lines.append(f"{mg['t'][k]:9.4g} {mg['row_sum'][k]:9.5f} {mg['alpha'][k]:9.5f} "
                     f"{mg['noise_norm'][k]:9.5f} {mg['sigma'][k]:9.5f}")
    return lines

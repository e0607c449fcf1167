"""Sample-set distances for vector data (toy2d, gaussian, gaussian_mixture) and the trajectory error.

Pure functions on tensors `[N, ...]` (flattened to `[N, D]`), computed in float64. Every distance is a V-statistic
or an exact 1-D transport, so two identical sets give exactly 0.
"""
from __future__ import annotations

import torch

from ..diffusion.trajectory import trajectory_error  # noqa: F401 - the math core has it (NI uses it too)


def _flat64(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x.reshape(len(x), -1).to(torch.float64)


def _quantiles(sorted_values: torch.Tensor, n: int) -> torch.Tensor:
    """Empirical quantile function of each column at the levels (k + 1/2)/n, by linear interpolation."""
    m = sorted_values.shape[0]
    if m == n:
        return sorted_values
    pos = (torch.arange(n, dtype=torch.float64) + 0.5) * m / n - 0.5
    pos = pos.clamp(0, m - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=m - 1)
    w = (pos - lo).unsqueeze(1)
    return sorted_values[lo] * (1 - w) + sorted_values[hi] * w


class VectorReference:
    """A reference set with its own terms of the three vector distances computed once (projection directions and
    sorted projections, mean kernel, mean distance), so that scoring many cells against it costs only the cells'
    terms. The values equal the stand-alone functions below exactly (same operations in the same order)."""

    def __init__(self, reference, projections: int = 256, bandwidth: float | None = None, seed: int = 0):
        self.y = _flat64(reference)
        self.projections, self.bandwidth, self.seed = projections, bandwidth, seed
        self._memo: dict = {}

    def _once(self, key, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def _check(self, x):
        x = _flat64(x)
        if x.shape[1] != self.y.shape[1]:
            raise ValueError(f"dimension mismatch: {x.shape[1]} vs {self.y.shape[1]}")
        return x

    def swd(self, x) -> float:
        """Sliced 2-Wasserstein distance sqrt(E_θ W2²(θ·x, θ·y)), θ uniform on the unit sphere.

        The projections come from a fixed seed, so every (sampler, NFE) cell is scored with the same directions.
        Sets of unequal size are compared through their quantile functions on a common grid.
        For y = x + m every projection is a pure shift: SW2² = mean_θ (θ·m)², whose expectation is |m|²/D.
        """
        x = self._check(x)

        def directions():
            gen = torch.Generator().manual_seed(self.seed)
            theta = torch.randn(x.shape[1], self.projections, generator=gen, dtype=torch.float64)
            return theta / theta.norm(dim=0, keepdim=True)

        theta = self._once("theta", directions)
        py = self._once("py", lambda: (self.y @ theta).sort(dim=0).values)
        px = (x @ theta).sort(dim=0).values
        n = max(len(px), len(py))
        w2_squared = (_quantiles(px, n) - self._once(("qy", n), lambda: _quantiles(py, n))).pow(2).mean(dim=0)
        return float(w2_squared.mean().sqrt())

    def _kernel_mean(self, a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * self.bandwidth**2)).mean()

    def mmd(self, x) -> float:
        """Squared maximum mean discrepancy with k(a, b) = exp(-|a-b|² / (2h²)) (biased V-statistic, ≥ 0)."""
        x = self._check(x)
        kyy = self._once("kyy", lambda: self._kernel_mean(self.y, self.y))
        return float(self._kernel_mean(x, x) + kyy - 2 * self._kernel_mean(x, self.y))

    def energy(self, x) -> float:
        """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Székely & Rizzo; V-statistic, ≥ 0)."""
        x = self._check(x)
        dyy = self._once("dyy", lambda: torch.cdist(self.y, self.y).mean())
        return float(2 * torch.cdist(x, self.y).mean() - torch.cdist(x, x).mean() - dyy)

    def metrics(self, x) -> dict[str, float]:
        """The vector-data metric columns of an evaluation row."""
        return {"swd": self.swd(x), "mmd": self.mmd(x), "energy": self.energy(x)}


def sliced_wasserstein(x, y, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance between the sets x and y (`VectorReference.swd`)."""
    return VectorReference(y, projections, seed=seed).swd(x)


def median_bandwidth(reference) -> float:
    """Median heuristic on the *reference* set only, so every sampler is scored with the same kernel."""
    r = _flat64(reference)
    d = torch.cdist(r, r)
    off_diagonal = d[~torch.eye(len(r), dtype=torch.bool)]
    return float(off_diagonal.median()) if off_diagonal.numel() else 1.0


def mmd_rbf(x, y, bandwidth: float) -> float:
    """Squared RBF maximum mean discrepancy between x and y (`VectorReference.mmd`)."""
    return VectorReference(y, bandwidth=bandwidth).mmd(x)


def energy_distance(x, y) -> float:
    """Energy distance between x and y (`VectorReference.energy`)."""
    return VectorReference(y).energy(x)


def vector_metrics(samples, reference, projections: int, bandwidth: float, seed: int = 0) -> dict[str, float]:
    """The vector-data metric columns of an evaluation row (one cell; `VectorReference.metrics` for many)."""
    return VectorReference(reference, projections, bandwidth, seed).metrics(samples)

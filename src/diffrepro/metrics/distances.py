"""Sample-set distances for vector data (toy2d, gaussian, gaussian_mixture) and the trajectory error.

Pure functions on tensors `[N, ...]` (flattened to `[N, D]`), computed in float64. Every distance is a V-statistic
or an exact 1-D transport, so two identical sets give exactly 0.
"""
from __future__ import annotations

import torch


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


def sliced_wasserstein(x, y, projections: int = 256, seed: int = 0) -> float:
    """Sliced 2-Wasserstein distance sqrt(E_θ W2²(θ·x, θ·y)), θ uniform on the unit sphere.

    The projections come from a fixed seed, so every (sampler, NFE) cell is scored with the same directions.
    Sets of unequal size are compared through their quantile functions on a common grid.
    For y = x + m every projection is a pure shift: SW2² = mean_θ (θ·m)², whose expectation is |m|²/D.
    """
    x, y = _flat64(x), _flat64(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimension mismatch: {x.shape[1]} vs {y.shape[1]}")
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(x.shape[1], projections, generator=gen, dtype=torch.float64)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, py = (x @ theta).sort(dim=0).values, (y @ theta).sort(dim=0).values
    n = max(len(px), len(py))
    w2_squared = (_quantiles(px, n) - _quantiles(py, n)).pow(2).mean(dim=0)
    return float(w2_squared.mean().sqrt())


def median_bandwidth(reference) -> float:
    """Median heuristic on the *reference* set only, so every sampler is scored with the same kernel."""
    r = _flat64(reference)
    d = torch.cdist(r, r)
    off_diagonal = d[~torch.eye(len(r), dtype=torch.bool)]
    return float(off_diagonal.median()) if off_diagonal.numel() else 1.0


def mmd_rbf(x, y, bandwidth: float) -> float:
    """Squared maximum mean discrepancy with k(a, b) = exp(-|a-b|² / (2h²)) (biased V-statistic, ≥ 0)."""
    x, y = _flat64(x), _flat64(y)
    def mean_kernel(a, b):
        return torch.exp(-torch.cdist(a, b).pow(2) / (2 * bandwidth**2)).mean()
    return float(mean_kernel(x, x) + mean_kernel(y, y) - 2 * mean_kernel(x, y))


def energy_distance(x, y) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Székely & Rizzo; V-statistic, ≥ 0)."""
    x, y = _flat64(x), _flat64(y)
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def trajectory_error(samples, reference) -> float:
    """RMSE of each final sample to the reference PF-ODE solution from the same noise, averaged over samples."""
    s, r = _flat64(samples), _flat64(reference)
    if s.shape != r.shape:
        raise ValueError(f"samples {tuple(s.shape)} and reference {tuple(r.shape)} differ in shape")
    return float((s - r).pow(2).mean(dim=1).sqrt().mean())


def vector_metrics(samples, reference, projections: int, bandwidth: float, seed: int = 0) -> dict[str, float]:
    """The vector-data metric columns of an evaluation row."""
    return {"swd": sliced_wasserstein(samples, reference, projections, seed),
            "mmd": mmd_rbf(samples, reference, bandwidth),
            "energy": energy_distance(samples, reference)}


"""Sharpness control by editing the coefficient matrix (NI spec §5.3, claim 14 of §8).

The paper's SD3 "standard" matrix weights every past prediction by the drop in σ over its step,
W[k,j] ∝ σ_j − σ_{j+1} (j ≤ k), and feeds x_{k+1} = σ_{k+1}·ε_0 + α_{k+1}·ȳ_k with ȳ_k the row-normalised average
(`delta_sigma_matrix`). Its "sharp" matrix truncates each row to a window of recent predictions and raises the last
prediction's weight in the final row (`sharpen`). Averaging in early, blurry predictions softens the result;
truncating and boosting the latest one sharpens it. Both keep the marginal scales: rows sum to α(τ_{k+1}).
"""
from __future__ import annotations

import numpy as np
import torch

from .matrix import NIMatrix


def delta_sigma_matrix(nodes: np.ndarray) -> NIMatrix:
    """The SD3 "standard" NI matrix on the given nodes: relative weights σ_j − σ_{j+1}, rows summing to α(τ_{k+1})."""
    nodes = np.asarray(nodes, dtype=np.float64)
    n, sigma, alpha = len(nodes) - 1, nodes[:, 2], nodes[:, 1]
    W = np.tril(np.broadcast_to(sigma[:-1] - sigma[1:], (n, n)))
    C = W / W.sum(1, keepdims=True) * alpha[1:, None]
    B = np.zeros((n, n + 1))
    B[:, 0] = sigma[1:]
    return NIMatrix(C, B, nodes.copy(), {"variant": "delta_sigma"})


def sharpen(base: NIMatrix, window: int | None = None, last_weight: float = 1.0) -> NIMatrix:
    """Keep only the last `window` predictions in every row (None: all) and multiply the final row's weight on the
    last prediction by `last_weight`; every row is renormalised to its original sum, so the marginals are unchanged.
    `sharpen(base, None, 1.0)` returns `base`'s C."""
    n = base.n
    C = base.C.copy()
    sums = C.sum(1)
    if window is not None:
        if window < 1:
            raise ValueError(f"window must be ≥ 1, got {window}")
        C[np.tril(np.ones((n, n), dtype=bool), -window)] = 0.0
    C[-1, -1] *= float(last_weight)
    C = C / C.sum(1, keepdims=True) * sums[:, None]
    return NIMatrix(C, base.B.copy(), base.nodes.copy(),
                    {**base.meta, "variant": "sharp", "window": window, "last_weight": float(last_weight)})


def high_frequency_energy(images: torch.Tensor) -> float:
    """Mean squared discrete Laplacian (5-point stencil, replicate padding) of NCHW images: the sharpness proxy."""
    x = images.double()
    p = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    lap = p[..., 1:-1, :-2] + p[..., 1:-1, 2:] + p[..., :-2, 1:-1] + p[..., 2:, 1:-1] - 4 * x
    return float((lap ** 2).mean())


def nearest_train_distance(samples: torch.Tensor, train: torch.Tensor, chunk: int = 1024) -> float:
    """Mean Euclidean distance (per coordinate RMS) from each sample to its nearest training sample."""
    a, b = samples.flatten(1).double(), train.flatten(1).double()
    best = []
    for i in range(0, len(a), chunk):
        best.append(torch.cdist(a[i:i + chunk], b).min(1).values)
    return float(torch.cat(best).mean() / np.sqrt(a.shape[1]))

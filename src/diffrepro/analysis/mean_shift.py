"""The optimal denoiser as annealed mean shift (GEO spec §4.3), written from the kernel density alone.

For a training set {y_k} the noisy marginal at level h is the Gaussian KDE p_h(x) = (1/n) Σ_k N(x; y_k, h²I).
Mean shift moves x to m(x) = x + h²·∇ log p_h(x) (the kernel-weighted mean of the data). Nothing here calls the
optimal denoiser: the studies test that an Euler step with D* equals a partial mean-shift step computed this way.
Vectors are flattened to [B, d]; everything is float64.
"""
from __future__ import annotations

import math

import torch

F64 = torch.float64


def kde_log_density(x: torch.Tensor, data: torch.Tensor, bandwidth: float, chunk: int = 4096) -> torch.Tensor:
    """log p_h(x) for each row of x [B, d] under the Gaussian KDE of `data` [n, d] with bandwidth h (GEO §4.3)."""
    x, data = x.to(F64), data.to(F64)
    n, d = data.shape
    h2 = float(bandwidth) ** 2
    parts = []
    for start in range(0, x.shape[0], chunk):
        q = x[start:start + chunk]
        sq = (q * q).sum(1, keepdim=True) + (data * data).sum(1) - 2.0 * q @ data.T
        parts.append(torch.logsumexp(-sq.clamp_min(0.0) / (2.0 * h2), dim=1))
    return torch.cat(parts) - math.log(n) - 0.5 * d * math.log(2.0 * math.pi * h2)


def mean_shift_target(x: torch.Tensor, data: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """m(x) = x + h²·∇_x log p_h(x): the mean-shift iterate with a Gaussian kernel of bandwidth h (autograd)."""
    x = x.detach().to(F64).requires_grad_(True)
    (grad,) = torch.autograd.grad(kde_log_density(x, data, bandwidth).sum(), x)
    return (x + float(bandwidth) ** 2 * grad).detach()


def annealed_mean_shift_step(x: torch.Tensor, data: torch.Tensor, h_now: float, h_next: float) -> torch.Tensor:
    """A partial mean-shift step x + (1 − h_next/h_now)·(m(x) − x) at bandwidth h_now (GEO §4.3)."""
    m = mean_shift_target(x, data, h_now)
    return x.to(F64) + (1.0 - h_next / h_now) * (m - x.to(F64))


def density_gain(x_before: torch.Tensor, x_after: torch.Tensor, data: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """log p_h(x_after) − log p_h(x_before) per row: never negative for a step toward m(x) (Jensen, GEO §4.3)."""
    return kde_log_density(x_after, data, bandwidth) - kde_log_density(x_before, data, bandwidth)

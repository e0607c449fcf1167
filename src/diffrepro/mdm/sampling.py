"""Getting back (spec §4): reverse-time SDE (Euler–Maruyama) and probability-flow ODE (Euler) on the extended state.

Generative time τ = 1 − s on the quadratic grid τ_j = τ_max(1 − (1 − j/N)²), τ_max = 1 − t_min (spec §4.1).
    reverse SDE: du = [−β A₀ u + 2βD s_θ] dτ + √(2βD) dW,   PF-ODE: du = [−β A₀ u + βD s_θ] dτ,
with s_θ = −L_s⁻ᵀ ε_θ from the hybrid kernel. The last SDE step adds no noise ('denoise').
"""
from __future__ import annotations

import torch

from .elbo import EpsNet
from .linear import F64, LinearDiffusion, apply, drift_matrix, safe_cholesky


def generative_grid(steps: int, t_min: float) -> torch.Tensor:
    """Forward times s_j = 1 − τ_j, decreasing from 1 to t_min."""
    j = torch.arange(steps + 1, dtype=F64) / steps
    return 1.0 - (1.0 - t_min) * (1.0 - (1.0 - j) ** 2)


@torch.no_grad()
def sample(eps_net: EpsNet, diffusion: LinearDiffusion, n: int, data_shape: tuple[int, ...], steps: int,
           t_min: float, generator: torch.Generator | None = None, method: str = "sde") -> torch.Tensor:
    """Draw n samples; returns the x block [n, *data_shape] (float32, in the diffusion's data coordinates).

    'sde': Euler–Maruyama on the reverse SDE (spec §4.1); 'ode': Heun on the probability-flow ODE (2 NFE per step,
    the last step Euler), since Euler converges slowly on the oscillatory D₀₀ = 0 flows.
    """
    if method not in ("sde", "ode"):
        raise ValueError(f"method must be 'sde' or 'ode', not {method!r}")
    q, d = diffusion.matrices()
    a0 = drift_matrix(q, d)
    grid = generative_grid(steps, t_min)
    chols = safe_cholesky(diffusion.kernel(grid)[1], f"{diffusion.name} sampling kernels")
    score_weight = 2.0 if method == "sde" else 1.0

    def velocity(u: torch.Tensor, j: int) -> torch.Tensor:  # du/dτ at forward time grid[j]
        beta = float(diffusion.beta.beta(grid[j]))
        eps_hat = eps_net(u.float(), torch.full((n,), float(grid[j]))).to(F64)
        score = -apply(torch.linalg.inv(chols[j]).mT, eps_hat)
        return -beta * apply(a0, u) + score_weight * beta * apply(d, score)

    noise_scale = torch.diag(torch.sqrt(2.0 * torch.diagonal(d)))
    u = torch.randn((n, diffusion.k, *data_shape), generator=generator, dtype=F64)
    for j in range(steps):
        dtau = float(grid[j] - grid[j + 1])
        v = velocity(u, j)
        if method == "ode" and j < steps - 1:
            u = u + 0.5 * dtau * (v + velocity(u + dtau * v, j + 1))
            continue
        u = u + dtau * v
        if method == "sde" and j < steps - 1:
            beta = float(diffusion.beta.beta(grid[j]))
            u = u + (beta * dtau) ** 0.5 * apply(noise_scale, torch.randn(u.shape, generator=generator, dtype=F64))
    return u[:, 0].float()

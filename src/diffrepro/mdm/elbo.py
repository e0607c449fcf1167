"""The MDM ELBO (spec §2): hybrid denoising score matching in ε-form, importance-sampled time, boundary term.

Per data point x ∈ R^d (nats, summed over dimensions):

    ELBO = E log π(u_1) + ∫_{t_min}^1 ℓ_t dt + H[q(v₀)] (+ boundary term at t_min, evaluation only)
    ℓ_t  = −½ Σ_p r_pᵀ W r_p + ½ d·tr W + d·β(t)·tr A₀,     r = ε_θ(u_t, t) − ε,  W = L⁻¹ (2βD) L⁻ᵀ   (spec §2.3)

The terminal cross-entropy and the auxiliary entropy are taken in closed form (exact expectations given x; spec §2.4
steps 5–6 and pitfall 8 recommend the exact entropy), so the only Monte-Carlo noise is t and ε.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from .linear import F64, BetaSchedule, LinearDiffusion, apply, drift_matrix, safe_cholesky

LOG_2PI = math.log(2 * math.pi)
EpsNet = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (u [n, K, ...], t [n]) -> ε̂ like u


def log_expm1(b: torch.Tensor) -> torch.Tensor:
    """log(e^b − 1) without cancellation for small b."""
    return b + torch.log(-torch.expm1(-b))


@dataclass(frozen=True)
class ImportanceTime:
    """p(t) ∝ β(t)/(1 − e^{−B(t)}) on [t_min, 1] (the VP likelihood weighting; spec §2.4 step 3).

    Its CDF is (log(e^{B(t)} − 1) − c₀)/Z, so the inverse is closed form: B = softplus(c₀ + Z·u), then t = B⁻¹.
    """

    beta: BetaSchedule = BetaSchedule()
    t_min: float = 1e-3

    @cached_property  # constants of the sampler: computed once per instance (it sits on every training step)
    def _c0(self) -> float:
        return float(log_expm1(self.beta.integral(torch.tensor(self.t_min, dtype=F64))))

    @cached_property
    def normaliser(self) -> float:
        return float(log_expm1(self.beta.integral(torch.tensor(1.0, dtype=F64)))) - self._c0

    def from_uniform(self, u: torch.Tensor) -> torch.Tensor:
        b = torch.nn.functional.softplus(self._c0 + self.normaliser * u.to(F64))
        return self.beta.time_of_integral(b).clamp(self.t_min, 1.0)

    def weight(self, t: torch.Tensor) -> torch.Tensor:
        """1/p(t) = Z·(1 − e^{−B(t)})/β(t): the unbiased importance weight (no extra (1 − t_min); pitfall 4)."""
        return self.normaliser * -torch.expm1(-self.beta.integral(t)) / self.beta.beta(t)


def dequantise_logit(x: torch.Tensor, levels: int, generator: torch.Generator | None, alpha: float = 0.05):
    """Pixels in [-1, 1] with `levels` grey levels → (logit-space y, log-Jacobian per image) (spec §4.3).

    k = integer level; x̃ = (k + U)/levels; s = α + (1 − 2α)x̃; y = logit(s); ldj = Σ log(1 − 2α) − log s(1 − s).
    """
    k = torch.round((x.to(F64) + 1) * 0.5 * (levels - 1))
    s = alpha + (1 - 2 * alpha) * (k + torch.rand(k.shape, generator=generator, dtype=F64)) / levels
    y = torch.log(s) - torch.log1p(-s)
    ldj = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)).flatten(1).sum(1)
    return y, ldj


def inverse_logit(y: torch.Tensor, alpha: float = 0.05) -> torch.Tensor:
    """Logit-space samples → pixels in [-1, 1] (spec §4.1 output, then the pipeline's [-1, 1] convention)."""
    return (((torch.sigmoid(y) - alpha) / (1 - 2 * alpha)).clamp(0, 1)) * 2 - 1


def bits_per_dim(elbo: torch.Tensor, ldj: torch.Tensor, dims: int, levels: int) -> torch.Tensor:
    """BPD = −(ELBO + ldj)/(d ln 2) + log₂(levels) (spec §4.3; +log₂17 for 8×8 digits)."""
    return -(elbo + ldj) / (dims * math.log(2)) + math.log2(levels)


def prior_cross_entropy(diffusion: LinearDiffusion, x: torch.Tensor) -> torch.Tensor:
    """E_{q_hybrid(u_1|x)} log N(u_1; 0, I) per data point, in closed form."""
    phi, sigma = diffusion.kernel(torch.ones(1, dtype=F64))
    mean_sq = phi[0, :, 0].pow(2).sum() * x.to(F64).flatten(1).pow(2).sum(1)
    dims = x[0].numel()
    return -0.5 * (mean_sq + dims * torch.diagonal(sigma[0]).sum() + dims * diffusion.k * LOG_2PI)


def aux_entropy(diffusion: LinearDiffusion, dims: int) -> float:
    """H[q(v₀)] = (K − 1)·d·½log(2πe σ₀²) (−0.8836 nats per coordinate per auxiliary at σ₀² = 0.01)."""
    return (diffusion.k - 1) * dims * 0.5 * (LOG_2PI + 1 + math.log(diffusion.aux_var))


def sample_hybrid(diffusion: LinearDiffusion, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor):
    """u_t = Φ[x; 0] + (L ⊗ I)ε from the hybrid kernel; returns (u_t, L, Φ)."""
    phi, sigma = diffusion.kernel(t)
    chol = safe_cholesky(sigma, f"{diffusion.name} hybrid kernel")
    mean = phi[:, :, 0].reshape(*phi.shape[:2], *([1] * (x.dim() - 1))) * x.to(F64)[:, None]
    return mean + apply(chol, eps.to(F64)), chol, phi


def score_weight(chol: torch.Tensor, beta: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """W = L⁻¹GL⁻ᵀ with G = 2βD (D diagonal): one triangular solve against G^½ and one product, per t."""
    root_g = torch.sqrt(2.0 * beta)[:, None, None] * torch.diag(torch.sqrt(torch.diagonal(d)))
    half = torch.linalg.solve_triangular(chol, root_g, upper=False)         # L⁻¹G^½
    return half @ half.mT


def integrand(diffusion: LinearDiffusion, chol: torch.Tensor, t: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """ℓ_t per data point (spec §2.3) from the hybrid Cholesky factor and r = ε̂ − ε."""
    q, d = diffusion.matrices()
    a0 = drift_matrix(q, d)
    beta = diffusion.beta.beta(t)
    w = score_weight(chol, beta, d)
    r = residual.to(F64).flatten(2)                                         # [n, K, d]
    dims = r.shape[-1]
    quad = torch.einsum("nkd,nkj,njd->n", r, w, r)
    return -0.5 * quad + 0.5 * dims * torch.diagonal(w, dim1=-2, dim2=-1).sum(-1) + dims * beta * torch.trace(a0)


def elbo(eps_net: EpsNet, diffusion: LinearDiffusion, x: torch.Tensor, times: ImportanceTime,
         generator: torch.Generator | None = None, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """One-sample ELBO estimate without the boundary term, per data point (nats). Differentiable in net and (Q, D).

    `uniform` (optional, [n]) fixes the time quantiles, for common random numbers across diffusions.
    """
    n, dims = x.shape[0], x[0].numel()
    if uniform is None:
        uniform = torch.rand(n, generator=generator, dtype=F64)
    t = times.from_uniform(uniform)
    eps = torch.randn((n, diffusion.k, *x.shape[1:]), generator=generator, dtype=F64)
    u_t, chol, _ = sample_hybrid(diffusion, x, t, eps)
    residual = eps_net(u_t.float(), t.float()).to(F64) - eps
    integral = integrand(diffusion, chol, t, residual) * times.weight(t)
    return prior_cross_entropy(diffusion, x) + integral + aux_entropy(diffusion, dims)


def boundary_term(eps_net: EpsNet, diffusion: LinearDiffusion, x: torch.Tensor, t_min: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """log p_θ(u₀ | u_b) − log q(u_b | u₀) at t_b = t_min with a Tweedie decoder (spec §2.5), per data point.

    u₀ = [x; v₀], u_b = Φu₀ + L_nh ε with the non-hybrid kernel; the score s_θ = −L_h⁻ᵀ ε_θ uses the hybrid factor
    the network was trained with (it estimates the marginal score either way). With M = L_nhᵀ L_h⁻ᵀ:
        offset = −½‖ε − Mε_θ‖² + ½‖ε‖² + d·log|det Φ|.
    Raises FloatingPointError when the non-hybrid Σ is singular in float64 (ALDA at t = 10⁻³; spec §3.2).
    """
    n, dims, k = x.shape[0], x[0].numel(), diffusion.k
    t = torch.full((n,), t_min, dtype=F64)
    v0 = torch.randn((n, k - 1, *x.shape[1:]), generator=generator, dtype=F64) * math.sqrt(diffusion.aux_var)
    u0 = torch.cat([x.to(F64)[:, None], v0], dim=1)
    eps = torch.randn((n, k, *x.shape[1:]), generator=generator, dtype=F64)
    phi, sigma_nh = diffusion.kernel(t[:1], hybrid=False)
    _, sigma_h = diffusion.kernel(t[:1], hybrid=True)
    chol_nh = safe_cholesky(sigma_nh[0], f"{diffusion.name} non-hybrid kernel at t_min")
    chol_h = safe_cholesky(sigma_h[0], f"{diffusion.name} hybrid kernel at t_min")
    u_b = apply(phi[0], u0) + apply(chol_nh, eps)
    eps_hat = eps_net(u_b.float(), t.float()).to(F64)
    m = torch.linalg.solve_triangular(chol_h, chol_nh, upper=False).mT    # (L_h⁻¹ L_nh)ᵀ = L_nhᵀ L_h⁻ᵀ
    gap = (eps - apply(m, eps_hat)).flatten(1)
    log_det_phi = diffusion.beta.integral(t[0]) * torch.trace(diffusion.drift())  # det expm(BA₀) = e^{B tr A₀}
    return -0.5 * gap.pow(2).sum(1) + 0.5 * eps.flatten(1).pow(2).sum(1) + dims * log_det_phi

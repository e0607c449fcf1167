"""Closed-form denoisers for Gaussian and Gaussian-mixture data; the exact probability-flow ODE map for Gaussian data.

Everything is written in a schedule's *native* coordinates, x_t = α(t)·x0 + σ(t)·ε, so the formulas stay finite at
α = 0 (flow / cosine at t = 1: pure noise, the denoiser returns the prior mean). All arithmetic is float64; outputs
take the input's dtype and device.

For one component N(μ, Σ) with Σ = U·diag(λ)·Uᵀ (eigen-decomposition), in the eigenbasis z = Uᵀ(x − αμ):
  x_t ~ N(αμ, α²Σ + σ²I)                                    (marginal; variances v_i = α²λ_i + σ²)
  E[x0 | x_t] = μ + U·diag(α·λ_i / v_i)·z                   (posterior mean; NI §2.1 with a Gaussian prior)
and for a mixture Σ_k π_k N(μ_k, Σ_k) the posterior mean is Σ_k p(k | x_t)·E_k[x0 | x_t] with
p(k | x_t) ∝ π_k·N(x_t; αμ_k, α²Σ_k + σ²I).

PF-ODE (GEO §1.1, "dx/dσ = (x − D)/σ" in VE coordinates): the flow keeps each whitened coordinate z_i/√v_i fixed,
i.e. in VE coordinates each eigen-direction of (x_ve − μ) scales by √((λ_i + σ'²)/(λ_i + σ²)). In native coordinates
  x_to = α_to·μ + U·diag(√(v_i(t_to) / v_i(t_from)))·Uᵀ·(x_from − α_from·μ).
"""
from __future__ import annotations

import math

import torch

from .schedules import Schedule

F64 = torch.float64


def _eigh(cov, batch_dims: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Covariance(s) → (eigenvalues [..., d], eigenvectors [..., d, d]); a diagonal input [..., d] (variances) gives
    eigenvectors None. `batch_dims` leading dimensions index components."""
    cov = torch.as_tensor(cov, dtype=F64)
    if cov.ndim not in (batch_dims + 1, batch_dims + 2):
        raise ValueError(f"covariance of shape {tuple(cov.shape)}: expected {batch_dims} batch dims + [d] or [d, d]")
    if cov.ndim == batch_dims + 2:
        vals, vecs = torch.linalg.eigh(0.5 * (cov + cov.transpose(-1, -2)))
        return vals.clamp(min=0.0), vecs
    return cov.clamp(min=0.0), None


def _to_eig(v: torch.Tensor, vecs: torch.Tensor | None) -> torch.Tensor:
    """v [B, K, d] → Uᵀv per component (vecs [K, d, d])."""
    return v if vecs is None else torch.einsum("bkd,kde->bke", v, vecs)


def _from_eig(z: torch.Tensor, vecs: torch.Tensor | None) -> torch.Tensor:
    return z if vecs is None else torch.einsum("bke,kde->bkd", z, vecs)


class GaussianMixtureDenoiser:
    """Exact posterior mean E[x0 | x_t] for data ~ Σ_k w_k N(μ_k, Σ_k), as a denoiser `D(x, t, y=None)`.

    weights [K] (normalised here), means [K, d]; give exactly one of
      covs [K, d, d] (full) or [K, d] (diagonal variances), or stds [K] (isotropic N(μ_k, std_k² I)).
    `y` (optional, int or [B] int64): restrict the posterior to component y (class-conditional mixture); a value
    equal to K (the null label) means unconditional for that row.
    """

    def __init__(self, weights, means, covs=None, schedule: Schedule | None = None, *, stds=None):
        if schedule is None:
            raise ValueError("GaussianMixtureDenoiser needs a schedule")
        if (covs is None) == (stds is None):
            raise ValueError("give exactly one of covs (covariances / diagonal variances) or stds (isotropic)")
        self.schedule = schedule
        w = torch.as_tensor(weights, dtype=F64).reshape(-1)
        self.log_weights = torch.log(w / w.sum())
        self.means = torch.as_tensor(means, dtype=F64).reshape(len(w), -1)
        K, d = self.means.shape
        if stds is not None:
            var = torch.as_tensor(stds, dtype=F64).reshape(K, 1) ** 2
            self.eigvals, self.eigvecs = var.expand(K, d).clone(), None
        else:
            self.eigvals, self.eigvecs = _eigh(covs, batch_dims=1)
        if self.eigvals.shape != (K, d):
            raise ValueError(f"covariances give eigenvalues {tuple(self.eigvals.shape)}, expected {(K, d)}")
        self._cache: dict = {}

    @property
    def num_components(self) -> int:
        return self.means.shape[0]

    def _params(self, device):
        if device not in self._cache:
            move = lambda v: None if v is None else v.to(device)  # noqa: E731
            self._cache[device] = tuple(move(v) for v in (self.log_weights, self.means, self.eigvals, self.eigvecs))
        return self._cache[device]

    def _components(self, x: torch.Tensor, t: float):
        """Per-component log p(k, x_t) [B, K] and posterior means [B, K, d] (float64, x flattened to [B, d])."""
        alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        logw, means, vals, vecs = self._params(x.device)
        z = _to_eig(x[:, None, :] - alpha * means[None], vecs)         # [B, K, d], eigenbasis of each Σ_k
        var = alpha**2 * vals + sigma**2                                # [K, d] marginal variances
        if bool((var <= 0).any()):
            raise ValueError(f"Gaussian denoiser at t={t}: σ(t)=0 with a singular covariance (posterior undefined)")
        log_joint = logw - 0.5 * ((z**2 / var).sum(-1) + torch.log(var).sum(-1) + x.shape[1] * math.log(2 * math.pi))
        post = means[None] + _from_eig(z * (alpha * vals / var), vecs)  # E_k[x0 | x_t]
        return log_joint, post

    def _masked(self, log_joint: torch.Tensor, y) -> torch.Tensor:
        if y is None:
            return log_joint
        K = self.num_components
        y = torch.as_tensor(y, device=log_joint.device).reshape(-1).expand(log_joint.shape[0])
        if bool(((y < 0) | (y > K)).any()):
            raise ValueError(f"component label out of range [0, {K}] (K = null label)")
        keep = (torch.arange(K, device=y.device)[None] == y[:, None]) | (y[:, None] == K)
        return log_joint.masked_fill(~keep, -math.inf)

    def posterior_component_weights(self, x: torch.Tensor, t: float, y=None) -> torch.Tensor:
        """p(k | x_t) [B, K]."""
        log_joint, _ = self._components(x.reshape(len(x), -1).to(F64), t)
        return torch.softmax(self._masked(log_joint, y), dim=1)

    def marginal_log_prob(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """log p_t(x_t) [B] of the noised data in native coordinates."""
        log_joint, _ = self._components(x.reshape(len(x), -1).to(F64), t)
        return torch.logsumexp(log_joint, dim=1)

    def __call__(self, x: torch.Tensor, t: float, y=None) -> torch.Tensor:
        log_joint, post = self._components(x.reshape(len(x), -1).to(F64), t)
        resp = torch.softmax(self._masked(log_joint, y), dim=1)
        return torch.einsum("bk,bkd->bd", resp, post).reshape(x.shape).to(x.dtype)


class GaussianDenoiser(GaussianMixtureDenoiser):
    """Exact posterior mean for data ~ N(mean, cov): cov [d, d] (full) or [d] (diagonal variances)."""

    def __init__(self, mean, cov, schedule: Schedule):
        cov = torch.as_tensor(cov, dtype=F64)
        super().__init__(torch.ones(1, dtype=F64), torch.as_tensor(mean, dtype=F64).reshape(1, -1), cov[None], schedule)


def gaussian_ode_solution(x: torch.Tensor, t_from: float, t_to: float, mean, cov, schedule: Schedule) -> torch.Tensor:
    """Exact PF-ODE map x(t_from) → x(t_to) for data ~ N(mean, cov) (cov [d, d] or diagonal [d]), native coordinates.

    Valid for any pair of times with marginal variances α²λ_i + σ² > 0 (so t_from may be the pure-noise end α = 0).
    """
    mean = torch.as_tensor(mean, dtype=F64).reshape(-1).to(x.device)
    vals, vecs = _eigh(cov, batch_dims=0)
    vals = vals.to(x.device)
    vecs = None if vecs is None else vecs.to(x.device)
    a0, s0 = float(schedule.alpha(t_from)), float(schedule.sigma(t_from))
    a1, s1 = float(schedule.alpha(t_to)), float(schedule.sigma(t_to))
    v0, v1 = a0**2 * vals + s0**2, a1**2 * vals + s1**2
    if bool((v0 <= 0).any()):
        raise ValueError(f"gaussian_ode_solution: zero marginal variance at t_from={t_from} "
                         "(cannot leave a point mass)")
    flat = x.reshape(len(x), -1).to(F64)
    z = flat - a0 * mean
    z = z if vecs is None else z @ vecs
    z = z * torch.sqrt(v1 / v0)
    z = z if vecs is None else z @ vecs.T
    return (a1 * mean + z).reshape(x.shape).to(x.dtype)

"""Weighted-sum degradation of the denoising target in high dimension (NI spec §2, §1.4, §8 claims 11 and 17).

The optimal denoiser is a softmax-weighted sum of training samples, w_j ∝ exp(−‖x_t/α − x_j‖²/(2(σ/α)²)). Noise a
training sample i (the "source") at time t and ask how much weight the posterior puts on one sample: when the
data are sparse in high dimension the target degrades from a weighted mean to the single source sample.

Pure functions on float64 [N, D] data. The posterior log-weights come from the exact optimal denoiser of
`diffusion.optimal` (`DenoiserPosterior`) or, for a whole grid at once, from its Gram-matrix factorisation
(`SourcePosterior`, checked against the optimal denoiser in the tests).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..diffusion.schedules import Schedule
from ..errors import UserError

F64 = torch.float64
LogWeights = Callable[[torch.Tensor, float], torch.Tensor]

# "exact": the posterior of NI §2.1 (query x_t/α); "unscaled": the paper code's quirk (query x_t itself with the
# width σ/α, NI §2.2), reported only for comparison and always labelled.
VARIANTS = ("exact", "unscaled")
FLOW_END_SCALE = 1e-5  # NI §1.4: the flow variant's data scale runs linspace(1, 1e-5, M)


# --- the study's time axis: integer timesteps of a 1000-step grid (NI §1.4) ----------------------------------------

def timestep_to_t(schedule: Schedule, timestep: float, num_timesteps: int = 1000) -> float:
    """Continuous t of an integer timestep: ᾱ_i of the discrete VP chain, or the flow's data scale
    s_i = linspace(1, 1e-5, M)[i] (t = 1 − s_i) (NI §1.4); other schedules use t = (i + 1)/M."""
    if schedule.name == "vp_discrete":
        return schedule.t_of_index(float(timestep))
    if schedule.name == "flow":
        return float(timestep) * (1.0 - FLOW_END_SCALE) / (num_timesteps - 1)
    return (float(timestep) + 1.0) / num_timesteps


def t_to_timestep(schedule: Schedule, t: float, num_timesteps: int = 1000) -> float:
    """Inverse of `timestep_to_t` (fractional timesteps allowed)."""
    if schedule.name == "vp_discrete":
        return schedule.index(float(t))
    if schedule.name == "flow":
        return float(t) * (num_timesteps - 1) / (1.0 - FLOW_END_SCALE)
    return float(t) * num_timesteps - 1.0


# --- data sets of the grid -----------------------------------------------------------------------------------------

def gaussian_data(n: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """iid N(0, I_D) samples, [n, D] (NI §2.3 table rows 1–5)."""
    return torch.randn(n, dim, generator=generator, dtype=F64)


def subspace_data(n: int, dim: int, rank: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian data on a random rank-r subspace of R^D, scaled to unit per-coordinate variance (NI §2.3 last row)."""
    if rank > dim:
        raise UserError(f"studies.degradation: subspace rank {rank} exceeds the dimension {dim}")
    basis, _ = torch.linalg.qr(torch.randn(dim, rank, generator=generator, dtype=F64))
    return torch.randn(n, rank, generator=generator, dtype=F64) @ basis.T * math.sqrt(dim / rank)


def upsample_images(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling of [N, C, H, W] images: raises D by factor² with no new information (NI §2.3)."""
    return images.repeat_interleave(factor, dim=-2).repeat_interleave(factor, dim=-1)


# --- weights and their statistics ----------------------------------------------------------------------------------

def noised_queries(sources: torch.Tensor, alpha: float, sigma: float, noise: torch.Tensor,
                   variant: str) -> torch.Tensor:
    """x_t = α·x_i + σ·ε (NI §2.3 step 2), in the native coordinates the optimal denoiser expects.

    The "unscaled" variant feeds α·x_t, so that the denoiser's query x/α equals the raw x_t of the paper code.
    """
    check_variant(variant)
    x_t = alpha * sources + sigma * noise
    return x_t if variant == "exact" else alpha * x_t


def check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise UserError(f"studies.degradation.variants: unknown variant '{variant}' (known: {list(VARIANTS)})")


class DenoiserPosterior:
    """Posterior logits of noised sources straight from an optimal denoiser's `log_weights(x, t)` (normalised)."""

    def __init__(self, log_weights: LogWeights, data: torch.Tensor, sources: torch.Tensor, noise: torch.Tensor):
        self.fn, self.clean, self.noise = log_weights, data[sources].to(F64), noise.to(F64)

    def logits(self, t: float, alpha: float, sigma: float, variant: str) -> torch.Tensor:
        return self.fn(noised_queries(self.clean, alpha, sigma, self.noise, variant), t)


class SourcePosterior:
    """The same log-weights for every (t, variant) of a grid from two Gram matrices (common noise ε for all t).

    A query q = a·x_i + b·ε at width s = σ/α has logits (q·x_j − ½‖x_j‖²)/s² up to a per-row constant, and
    q·x_j = a·(x_i·x_j) + b·(ε·x_j): exact posterior a = 1, b = s (q = x_t/α); paper-code variant a = α, b = σ
    (q = x_t). Two [B, N] products replace one per cell; tests check it against the optimal denoiser.
    The logits are unnormalised (softmax-invariant per-row constants dropped).
    """

    def __init__(self, data: torch.Tensor, sources: torch.Tensor, noise: torch.Tensor):
        data = data.to(F64)
        self.half_sq_norms = 0.5 * (data * data).sum(1)
        self.gram_noise = noise.to(F64) @ data.T
        self.gram_source = (data[sources] @ data.T).sub_(self.half_sq_norms)  # x_i·x_j − ½‖x_j‖²

    def logits(self, t: float, alpha: float, sigma: float, variant: str) -> torch.Tensor:
        check_variant(variant)
        s = sigma / alpha
        if variant == "exact":   # (x_i·x_j − ½‖x_j‖² + s·ε·x_j)/s²
            return torch.mul(self.gram_source, 1.0 / (s * s)).add_(self.gram_noise, alpha=1.0 / s)
        # (α·x_i·x_j + σ·ε·x_j − ½‖x_j‖²)/s² = (α·(x_i·x_j − ½‖x_j‖²) + σ·ε·x_j + (α − 1)·½‖x_j‖²)/s²
        return (torch.mul(self.gram_source, alpha / (s * s)).add_(self.gram_noise, alpha=sigma / (s * s))
                .add_(self.half_sq_norms, alpha=(alpha - 1.0) / (s * s)))


def weight_statistics(logits: torch.Tensor, source: torch.Tensor, bins: int = 100) -> dict:
    """Per-query posterior weights w = softmax(logits) [B, N] → the statistics of NI §2.2.

    mean max weight, fraction with own-source weight > 0.9, mean own weight, fraction whose largest weight is the
    source, mean entropy (nats) and effective number of samples exp(H), plus `bins`-bin histograms on [0, 1] of the
    max and own weights (fractions of queries).
    """
    logits = logits.to(F64)
    top, arg = logits.max(1)
    shifted = logits - top[:, None]                       # ≤ 0, max 0 per row
    w = shifted.exp()                                     # unnormalised weights, max 1
    z = w.sum(1)
    w_max = 1.0 / z
    own = shifted.gather(1, source[:, None]).squeeze(1).exp() / z
    finite = torch.where(w > 0, shifted, 0.0) if bool(torch.isneginf(shifted).any()) else shifted
    # H = −Σ p·log p with p = w/z: log z − Σ w·shifted / z (row dot products as one batched matmul)
    entropy = z.log() - torch.bmm(w[:, None, :], finite[:, :, None]).reshape(-1) / z
    n = float(w.shape[0])

    def histogram(v):  # `bins` equal bins on [0, 1], the last one closed
        return (torch.bincount((v * bins).long().clamp_(0, bins - 1), minlength=bins).double() / n).tolist()
    return {
        "mean_max_weight": float(w_max.mean()),
        "frac_own_gt_0_9": float((own > 0.9).double().mean()),
        "mean_own_weight": float(own.mean()),
        "frac_argmax_source": float((arg == source).double().mean()),
        "mean_entropy": float(entropy.mean()),
        "mean_effective_n": float(entropy.exp().mean()),
        "hist_max": histogram(w_max),
        "hist_own": histogram(own),
    }


def degradation_curve(posterior, schedule: Schedule, timesteps, sources: torch.Tensor, *, variant: str = "exact",
                      bins: int = 100, num_timesteps: int = 1000) -> list[dict]:
    """Statistics of the posterior weights of noised training samples, one row per timestep (NI §2.3).

    `posterior` is a `SourcePosterior` or `DenoiserPosterior` built on the data, the source indices `sources` [B]
    and one noise draw ε [B, D] shared by all timesteps (common random numbers: curves over t differ by the
    schedule only).
    """
    rows = []
    for step in timesteps:
        t = timestep_to_t(schedule, step, num_timesteps)
        alpha, sigma = schedule.alpha(t), schedule.sigma(t)
        stats = weight_statistics(posterior.logits(t, alpha, sigma, variant), sources, bins)
        rows.append({"timestep": step, "t": t, "alpha": alpha, "sigma": sigma, "noise_ratio": sigma / alpha, **stats})
    return rows


# --- onset of degradation ------------------------------------------------------------------------------------------

def critical_timestep(timesteps, values, threshold: float = 0.9) -> float:
    """Noisiest timestep at which the mean max weight is still ≥ threshold, interpolated linearly between the two
    grid points where the curve crosses it; NaN when the curve never reaches the threshold or never leaves it."""
    pairs = sorted(zip(timesteps, values))
    if not pairs or pairs[0][1] < threshold:
        return math.nan
    for (t0, v0), (t1, v1) in zip(pairs, pairs[1:]):
        if v1 < threshold <= v0:
            return t0 + (v0 - threshold) * (t1 - t0) / (v0 - v1)
    return math.nan


def rule_of_thumb_ratio(dim: int, n: int) -> float:
    """Noise ratio s = σ/α below which the target is a single sample, by the rule of thumb of NI §2.3.

    For unit-variance iid data the source's log-weight margin over its strongest competitor is about
    D/s² − (√(2D)/s)·√(2 ln N); setting D/s² = ln N + (√(2D)/s)·√(2 ln N) gives s* = √(D/ln N)/(1 + √2).
    """
    if n < 2:
        raise UserError(f"the degradation rule of thumb needs N ≥ 2 samples, got {n}")
    return math.sqrt(dim / math.log(n)) / (1.0 + math.sqrt(2.0))


def rule_of_thumb_timestep(schedule: Schedule, dim: int, n: int, num_timesteps: int = 1000) -> float:
    """The rule-of-thumb ratio s* as a timestep of `schedule` (its t where σ/α = s*)."""
    return t_to_timestep(schedule, schedule.t_from_sigma_ve(rule_of_thumb_ratio(dim, n)), num_timesteps)


# --- what a trained denoiser learns (NI §9 limitation 2) ----------------------------------------------------------

def trained_vs_target(denoiser: Callable, optimal: Callable, log_weights: LogWeights, sources: torch.Tensor,
                      schedule: Schedule, ts, noise: torch.Tensor) -> list[dict]:
    """Distance of a trained denoiser's output to the noised source sample and to the exact weighted mean, per t.

    `sources` are clean training samples [B, ...] (the denoisers' input shape), `noise` has their shape. Distances
    are root-mean-square per coordinate. `frac_closer_to_source` counts outputs nearer the single source sample
    than the posterior mean; where the two coincide (degraded target) it is uninformative, so the table also gives
    the gap ‖D* − x_i‖ itself.
    """
    rows = []
    src = sources.to(F64)
    dim = src[0].numel()

    def rms(a, b):
        return torch.linalg.vector_norm((a.to(F64) - b.to(F64)).flatten(1), dim=1) / math.sqrt(dim)

    for t in ts:
        t = float(t)
        x_t = schedule.alpha(t) * src + schedule.sigma(t) * noise.to(F64)
        d_model = denoiser(x_t.to(sources.dtype), t).to(F64)
        d_star = optimal(x_t, t).to(F64)
        w_max = log_weights(x_t, t).exp().max(1).values
        to_source, to_mean = rms(d_model, src), rms(d_model, d_star)
        rows.append({
            "t": t, "noise_ratio": schedule.sigma(t) / schedule.alpha(t),
            "model_to_source": float(to_source.mean()), "model_to_mean": float(to_mean.mean()),
            "mean_to_source": float(rms(d_star, src).mean()),
            "frac_closer_to_source": float((to_source < to_mean).double().mean()),
            "mean_max_weight": float(w_max.mean()),
        })
    return rows

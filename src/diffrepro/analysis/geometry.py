"""Geometry of sampling and denoising trajectories (GEO spec §4.1, §4.2, §4.5), in VE/EDM coordinates.

Conventions: `xs` [K+1, B, d] is the sampling trajectory x_0..x_K at noise levels σ_0 > … > σ_K (x_0 = σ_0·z);
`denoised` [K, B, d] is the denoising trajectory R_i = D(x_i; σ_i), i < K; `sigmas` holds the K+1 levels. All
statistics are per point and per trajectory ([K+1, B] or [K, B]); callers summarise them over B.
"""
from __future__ import annotations

import torch

F64 = torch.float64
EPS = 1e-300


def _norm(v: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(v, dim=-1)


def chord_direction(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """Unit vector u = (end − start)/‖end − start‖ per trajectory, [B, d]."""
    chord = end - start
    return chord / _norm(chord).clamp_min(EPS)[:, None]


def chord_deviation(path: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Perpendicular distance of every point from the chord through the path's own end points (GEO §4.2 item 2).

    Returns (dev [P, B], chord length [B]); dev is 0 at both ends by construction.
    """
    path = path.to(F64)
    u = chord_direction(path[0], path[-1])
    rel = path[-1] - path
    along = (rel * u).sum(-1, keepdim=True)
    return _norm(rel - along * u), _norm(path[-1] - path[0])


def distance_to(path: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """‖path_i − target‖ per point (GEO §4.2 item 3; target = the final sample x_K), [P, B]."""
    return _norm(path.to(F64) - target.to(F64))


def ode_directions(xs: torch.Tensor, denoised: torch.Tensor, sigmas) -> torch.Tensor:
    """d_i = (x_i − R_i)/σ_i, the PF-ODE direction dx/dσ (= the noise estimate ε̂), [K, B, d] (GEO §1.1)."""
    s = torch.as_tensor(sigmas, dtype=F64)[: denoised.shape[0], None, None]
    return (xs[: denoised.shape[0]].to(F64) - denoised.to(F64)) / s


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1) / (_norm(a) * _norm(b)).clamp_min(EPS)


def direction_alignment(xs: torch.Tensor, denoised: torch.Tensor, sigmas) -> torch.Tensor:
    """cos(d_i, x_i − x_K): does the ODE direction point at the eventual sample? (GEO §4.2 item 4), [K, B]."""
    k = denoised.shape[0]
    return cosine(ode_directions(xs, denoised, sigmas), xs[:k].to(F64) - xs[-1].to(F64))


def chord_pca_projection(path: torch.Tensor, n_components: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Chord coordinate plus the top principal components of the off-chord residual, per trajectory (GEO §4.5).

    Coordinates are relative to the final point: c_i = ⟨p_i − p_K, u⟩ along the chord, with u pointing from the end
    to the start (c_0 = chord length, c_K = 0), and r_i = (p_i − p_K) − c_i·u off it; the residual's principal
    axes are those of its second moment about the final point (the residual is 0 at both ends). Signs are flipped
    so each component's largest excursion is positive.
    Returns (coords [P, B, 1 + n_components], explained-variance ratio of the kept components [B]).
    """
    path = path.to(F64)
    rel = path - path[-1]
    u = chord_direction(path[-1], path[0])
    along = (rel * u).sum(-1)
    resid = (rel - along[..., None] * u).transpose(0, 1)        # [B, P, d]
    _, s, vh = torch.linalg.svd(resid, full_matrices=False)     # rows of vh: principal axes
    axes = vh[:, :n_components]                                 # [B, m, d]
    pcs = torch.einsum("bpd,bmd->bpm", resid, axes)
    peak = pcs.gather(1, pcs.abs().argmax(1, keepdim=True))     # [B, 1, m]
    pcs = pcs * torch.where(peak < 0, -1.0, 1.0)
    energy = (s**2).sum(1).clamp_min(EPS)
    ratio = (s[:, :n_components] ** 2).sum(1) / energy
    return torch.cat([along.transpose(0, 1)[..., None], pcs], -1).transpose(0, 1), ratio


def trajectory_statistics(xs: torch.Tensor, denoised: torch.Tensor, sigmas) -> dict[str, torch.Tensor]:
    """Every per-point statistic of GEO §4.2 for one batch of trajectories; each value is [P, B].

    Keys: sigma-aligned rows 0..K for the sampling trajectory (`dev_sampling`, `dev_sampling_rel` = deviation over
    the chord length, `dist_x_end`, `norm_x`), rows 0..K−1 for the denoiser outputs (`dev_denoising` against the
    denoising trajectory's own chord R_0 → R_{K−1}, `dist_denoised_end` = ‖R_i − x_K‖, `cos_direction_end`,
    `norm_denoised`, `norm_direction`).
    """
    xs, denoised = xs.to(F64), denoised.to(F64)
    dev_x, chord_x = chord_deviation(xs)
    dev_r, chord_r = chord_deviation(denoised)
    return {
        "dev_sampling": dev_x,
        "dev_sampling_rel": dev_x / chord_x.clamp_min(EPS),
        "chord_sampling": chord_x.expand_as(dev_x),
        "dist_x_end": distance_to(xs, xs[-1]),
        "norm_x": _norm(xs),
        "dev_denoising": dev_r,
        "dev_denoising_rel": dev_r / chord_r.clamp_min(EPS),
        "dist_denoised_end": distance_to(denoised, xs[-1]),
        "cos_direction_end": direction_alignment(xs, denoised, sigmas),
        "norm_denoised": _norm(denoised),
        "norm_direction": _norm(ode_directions(xs, denoised, sigmas)),
    }

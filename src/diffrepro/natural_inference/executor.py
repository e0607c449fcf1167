"""Replay a Natural Inference triple (C, B, nodes) with a denoiser and a noise stream (NI spec §3.1).

    x_0 = σ(τ_0)·ε_0,   y_k = D(x_k, τ_k),   x_{k+1} = Σ_j C[k,j]·y_j + Σ_j B[k,j]·ε_j

Memory and time: a prediction (or noise) is dropped as soon as no later row uses it, so a matrix of bandwidth w keeps
w + 1 predictions, never n; and a dense matrix that is a one-step recursion (DDIM, DDPM, DPM-Solver++ 2M, ...) is
replayed as that recursion, x_{k+1} = γ_k·x_k + a few new terms (`replay_plan`), so it costs and holds what the
native sampler does. Noise j ≥ 1 is drawn from `noise.draw(like)` in column order, so a replay with the same
generator sees the same noise as the original sampler.

Two accumulation modes: plain float coefficients (in-place, no autograd; the fast path) and tensor coefficients that
require grad (out-of-place; used by the matrix search to differentiate samples with respect to C).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from .matrix import NIMatrix


def last_use(M: np.ndarray) -> np.ndarray:
    """For each column j, the last row that has a non-zero in it (−1 if none)."""
    nz = M != 0
    rows = np.arange(M.shape[0])[:, None]
    return np.where(nz.any(0), np.where(nz, rows, -1).max(0), -1)


def _combine(terms):
    """Σ c·v over (coefficient, state) pairs; in place for float coefficients on tensors, differentiable for tensor
    coefficients."""
    if any(isinstance(c, torch.Tensor) for c, _ in terms):
        return sum(c * v for c, v in terms)
    acc = None
    for c, v in terms:
        if acc is None:
            acc = v * c
        elif isinstance(acc, torch.Tensor):
            acc.add_(v, alpha=c)
        else:  # a float or linear-form state (call-time probe, tracer): the sampler contract's operators only
            acc = acc + v * c
    return acc


def replay_plan(matrix: NIMatrix, rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(γ, R_y, R_ε): row k of the recursion is x_{k+1} = γ_k·x_k + Σ_j R_y[k,j]·y_j + Σ_j R_ε[k,j]·ε_j.

    Matrices of one-step samplers are dense but semiseparable: row k is a multiple of row k−1 on every old column
    plus a few new terms (DDIM: γ_k = σ_{k+1}/σ_k and one new prediction). Carrying x_k then costs what the native
    sampler costs and holds only the predictions the new terms use. γ_k is read off the ε_0 column; a row whose
    remainder (entries above rtol relative) is not sparser than the row itself is replayed directly (γ_k = 0).
    """
    C, B = matrix.C, matrix.B
    gamma, Ry, Re = np.zeros(matrix.n), C.copy(), B.copy()
    for k in range(1, matrix.n):
        if B[k - 1, 0] == 0 or B[k, 0] == 0:
            continue
        g = B[k, 0] / B[k - 1, 0]
        q = np.concatenate([C[k], B[k]])
        r = q - g * np.concatenate([C[k - 1], B[k - 1]])
        r[np.abs(r) <= rtol * np.maximum(np.abs(q), np.abs(g) * np.abs(q - r))] = 0.0
        r[C.shape[1]] = 0.0  # the ε_0 column defines γ
        if np.count_nonzero(r) < np.count_nonzero(q):
            gamma[k], Ry[k], Re[k] = g, r[:C.shape[1]], r[C.shape[1]:]
    return gamma, Ry, Re


def execute(matrix: NIMatrix, denoiser: Callable, eps0: torch.Tensor, noise=None, C: torch.Tensor | None = None,
            trajectory: list | None = None, stats: dict | None = None) -> torch.Tensor:
    """The final sample x_n of the NI recursion.

    `eps0` is the initial noise ε_0 (x_0 = σ(τ_0)·ε_0); `noise.draw(like)` supplies ε_1, ε_2, ... when B uses them.
    `C` optionally overrides `matrix.C` with a (differentiable) tensor; rows are then combined directly.
    `trajectory`, if a list, collects (τ_k, x_k, y_k) for every evaluation. `stats`, if a dict, receives
    `max_kept`: the most predictions held at once (the memory figure).
    """
    n = matrix.n
    if C is None:
        gamma, Ry, Re = replay_plan(matrix)
        coef = [[float(c) for c in row] for row in Ry]
    else:
        gamma, Ry, Re = np.zeros(n), C.detach().cpu().numpy(), matrix.B
        coef = C
        if C.requires_grad:
            Ry = np.tril(np.ones((n, n)))  # a zero entry still carries a gradient: keep the full pattern
    keep_y, keep_eps = last_use(Ry), last_use(Re)
    if np.any(matrix.B[:, 1:]) and noise is None:
        raise ValueError("this matrix injects fresh noise (B has non-zero columns ≥ 1): pass a noise source")
    ys: dict[int, torch.Tensor] = {}
    eps: dict[int, torch.Tensor] = {0: eps0}
    drawn = 0
    times = matrix.times
    x = eps0 * float(matrix.sigmas[0])
    for k in range(n):
        y = denoiser(x, float(times[k]))
        if trajectory is not None:
            trajectory.append((float(times[k]), x, y))
        ys[k] = y
        if stats is not None:
            stats["max_kept"] = max(stats.get("max_kept", 0), len(ys))
        while drawn < max(_last_nonzero(Re[k]), _last_nonzero(matrix.B[k])):
            drawn += 1
            eps[drawn] = noise.draw(eps0)
        terms = [(float(gamma[k]), x)] if gamma[k] != 0 else []
        terms += [(coef[k][j], ys[j]) for j in range(k + 1) if Ry[k, j] != 0]
        terms += [(float(Re[k, j]), eps[j]) for j in range(Re.shape[1]) if Re[k, j] != 0]
        x = _combine(terms) if terms else eps0 * 0.0
        for j in [j for j in ys if keep_y[j] <= k]:
            del ys[j]
        for j in [j for j in eps if j > 0 and keep_eps[j] <= k]:
            del eps[j]
    return x


def _last_nonzero(row: np.ndarray) -> int:
    nz = np.nonzero(row)[0]
    return int(nz[-1]) if len(nz) else 0


def peak_kept(matrix: NIMatrix) -> int:
    """How many predictions the executor holds at once (≤ bandwidth + 1 for banded C; the memory figure)."""
    keep = last_use(replay_plan(matrix)[1])
    return max(sum(1 for j in range(k + 1) if keep[j] >= k) for k in range(matrix.n))

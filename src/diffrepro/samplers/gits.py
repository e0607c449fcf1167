"""GITS — geometry-inspired time scheduling (Chen et al., ICML 2024; GEO §3.2).

1. Teacher: a fine grid T_0 > … > T_{N−1} (EDM ρ = 7, N = 61) and warm-up trajectories X_j (iPNDM-4 by default)
   with the single-point directions d_j = (X_j − D(X_j; T_j))/T_j, all in VE coordinates.
2. Cost c(i, j), i < j: one Euler jump X̂ = X_i + (T_j − T_i)·d_i, scored by `l2` (mean ‖X̂ − X_j‖), `l1`, or `dev`
   (default): mean perpendicular distance of X̂ from the teacher chord X_0 → X_{N−1}, minus that of X_j (0 at j = N−1).
3. DP: V[i][1] = c(i, N−1), V[j][k] = min_{j<i<N−1} c(j, i) + coeff·V[i][k−1]; the path from 0 minimises
   Σ_k coeff^k·c(s_k, s_{k+1}); ties take the smallest index.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from . import solvers


def teacher_trajectories(denoiser, schedule, grid, x, teacher: str = "ipndm", teacher_options=None):
    """(X [N, B, d], d [N−1, B, d], σ_ve [N]) of the teacher run on `grid` (schedule's t) from states x, in VE."""
    traj = []
    fn = getattr(solvers, teacher)
    final = fn(denoiser, x, list(grid), schedule, None, trajectory=traj, **(teacher_options or {}))
    t = torch.as_tensor([float(v) for v in grid], dtype=torch.float64)
    alpha, sig_ve = schedule.alpha(t), schedule.sigma_ve(t)
    if len(traj) != len(t) - 1:
        raise ValueError(f"GITS teacher '{teacher}' must evaluate once per grid point (got {len(traj)} calls for "
                         f"{len(t) - 1} steps)")
    flat = lambda v: v.reshape(len(v), -1).to(torch.float64)  # noqa: E731
    states = torch.stack([flat(s) / float(alpha[i]) for i, (_, s, _) in enumerate(traj)]
                         + [flat(final) / float(alpha[-1])])
    dirs = torch.stack([(flat(s) / float(alpha[i]) - flat(d)) / float(sig_ve[i]) for i, (_, s, d) in enumerate(traj)])
    return states, dirs, sig_ve


def cost_matrix(states: torch.Tensor, dirs: torch.Tensor, sig_ve: torch.Tensor, metric: str = "dev") -> np.ndarray:
    """c[i, j] for i < j (+inf elsewhere), averaged over the warm-up samples."""
    n = len(sig_ve)
    cost = np.full((n, n), np.inf)
    if metric == "dev":
        end = states[-1]
        u = end - states[0]
        u = u / u.norm(dim=1, keepdim=True)

        def dev(y):  # [..., B, d] → mean over samples of the distance from the chord
            r = end - y
            return (r - (r * u).sum(-1, keepdim=True) * u).norm(dim=-1).mean(-1)

        dev_teacher = dev(states)
        dev_teacher[-1] = 0.0
    for i in range(n - 1):
        jumps = states[i][None] + (sig_ve[i + 1:] - sig_ve[i])[:, None, None] * dirs[i][None]  # [n−i−1, B, d]
        if metric == "dev":
            row = dev(jumps) - dev_teacher[i + 1:]
        elif metric in ("l2", "l1"):
            p = 2 if metric == "l2" else 1
            row = (jumps - states[i + 1:]).norm(p=p, dim=-1).mean(-1)
        else:
            raise ValueError(f"unknown GITS metric '{metric}' (known: dev, l2, l1)")
        cost[i, i + 1:] = row.numpy()
    return cost


def dp_schedule(cost: np.ndarray, steps: int, coeff: float = 1.15) -> list[int]:
    """Indices 0 = s_0 < … < s_K = N−1 minimising Σ_k coeff^k·c(s_k, s_{k+1}) (dynamic programming)."""
    n = len(cost)
    if not 1 <= steps <= n - 1:
        raise ValueError(f"GITS: {steps} steps cannot be chosen from a {n}-point teacher grid")
    value = np.full((steps + 1, n), np.inf)
    choice = np.zeros((steps + 1, n), dtype=int)
    value[1, :-1] = cost[:-1, -1]
    for k in range(2, steps + 1):
        for j in range(n - 1):
            cand = cost[j, j + 1:n - 1] + coeff * value[k - 1, j + 1:n - 1]
            if len(cand):
                best = int(np.argmin(cand))  # first minimum = smallest index
                value[k, j], choice[k, j] = cand[best], j + 1 + best
    path, j = [0], 0
    for k in range(steps, 1, -1):
        j = int(choice[k, j])
        path.append(j)
    return path + [n - 1]


def brute_force_schedule(cost: np.ndarray, steps: int, coeff: float = 1.15) -> list[int]:
    """Exhaustive search over all index paths (for testing the DP on small grids)."""
    n = len(cost)
    best, best_path = np.inf, None
    for mid in itertools.combinations(range(1, n - 1), steps - 1):
        path = [0, *mid, n - 1]
        val = sum(coeff**k * cost[a, b] for k, (a, b) in enumerate(zip(path[:-1], path[1:])))
        if val < best - 1e-12:
            best, best_path = val, path
    return best_path


class GITS:
    """Teacher run once, then a DP grid for any number of steps: `GITS(...)(steps) -> grid` in `schedule`'s t."""

    def __init__(self, denoiser, schedule, teacher_grid, x_warmup, coeff: float = 1.15, metric: str = "dev",
                 teacher: str = "ipndm", teacher_options=None):
        self.grid = torch.as_tensor([float(v) for v in teacher_grid], dtype=torch.float64)
        states, dirs, sig_ve = teacher_trajectories(denoiser, schedule, self.grid, x_warmup, teacher,
                                                    teacher_options)
        self.cost = cost_matrix(states, dirs, sig_ve, metric)
        self.coeff = coeff
        self.indices: dict[int, list[int]] = {}

    def __call__(self, steps: int) -> torch.Tensor:
        self.indices[steps] = dp_schedule(self.cost, steps, self.coeff)
        return self.grid[self.indices[steps]]

"""Memorisation and empirical score deviation (GEO spec §4.3, §7 claims 4 and 22).

With the optimal denoiser D* every PF-ODE trajectory ends on a training sample; a trained denoiser D_θ deviates
from D* and its samples do not copy the training set. Distances are Euclidean on flattened [B, d] float64 rows.
"""
from __future__ import annotations

from typing import Callable

import torch

F64 = torch.float64


def nearest_neighbour(queries: torch.Tensor, data: torch.Tensor, exclude_self: bool = False,
                      chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query's nearest row of `data`; `exclude_self` skips the diagonal (queries = data)."""
    queries, data = queries.to(F64).flatten(1), data.to(F64).flatten(1)
    data_sq = (data * data).sum(1)
    dists, idx = [], []
    for start in range(0, queries.shape[0], chunk):
        q = queries[start:start + chunk]
        sq = ((q * q).sum(1, keepdim=True) + data_sq - 2.0 * q @ data.T).clamp_min(0.0)
        if exclude_self:
            rows = torch.arange(q.shape[0])
            sq[rows, rows + start] = float("inf")
        best, where = sq.min(1)
        dists.append(best.sqrt())
        idx.append(where)
    return torch.cat(dists), torch.cat(idx)


def training_spacing(data: torch.Tensor) -> torch.Tensor:
    """Each training sample's distance to its nearest other training sample (the set's own NN spacing)."""
    return nearest_neighbour(data, data, exclude_self=True)[0]


def memorisation_summary(samples: torch.Tensor, data: torch.Tensor) -> dict[str, float]:
    """Nearest-training-sample distance of generated samples against the training set's own NN spacing.

    `ratio_median` ≪ 1 means the samples sit on training points (copies); ≈ 1 or more means they do not.
    `frac_copies` counts samples closer to a training point than a tenth of the median spacing.
    """
    nn, _ = nearest_neighbour(samples, data)
    spacing = training_spacing(data).median()
    return {
        "nn_median": float(nn.median()),
        "nn_max": float(nn.max()),
        "train_spacing_median": float(spacing),
        "ratio_median": float(nn.median() / spacing),
        "frac_copies": float((nn < 0.1 * spacing).double().mean()),
    }


def denoiser_gap(denoiser: Callable, outputs: torch.Tensor, states: torch.Tensor, ts) -> torch.Tensor:
    """‖D(x_i, t_i) − outputs_i‖ along a recorded trajectory (states [K, B, ...], outputs of the other denoiser at
    those states, [K, B, ...]): the score deviation ‖D_θ − D*‖ of GEO §4.2 item 5, [K, B]."""
    rows = []
    for x, ref, t in zip(states, outputs, ts):
        rows.append(torch.linalg.vector_norm((denoiser(x, float(t)).to(F64) - ref.to(F64)).flatten(1), dim=1))
    return torch.stack(rows)

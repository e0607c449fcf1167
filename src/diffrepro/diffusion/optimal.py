"""The exact empirical (optimal) denoiser over a training set {x_i}, i = 1..N (NI §2.1, GEO §4.3):

    D*(x_t, t) = Σ_i w_i·x_i,   w_i = softmax_i( −‖x_t − α·x_i‖² / (2σ²) ).

Computed chunk by chunk over the training set with a streaming (online) log-sum-exp, so working memory is
O(B·chunk + B·d) whatever N is. Per chunk: logits from ‖x − αx_i‖² = ‖x‖² − 2α·x·x_i + α²‖x_i‖² (the ‖x‖² term is
a per-row constant and drops out of the softmax) with ½‖x_i‖² precomputed — one addmm — then one matmul of the
weights with the chunk.

Pruning (exact to the working precision): a training point whose weight, relative to the running row maximum, is
below `weight_tol` for every query row is left out of the weighted sum (it still counts in the normaliser). The
running maximum only grows, so each dropped weight is < weight_tol relative to the final maximum and the output
changes by at most N·weight_tol·max‖x_i‖∞; the default weight_tol = eps(dtype)/N keeps that at one rounding unit of
the data scale. In high dimension the softmax is nearly one-hot for most σ, which makes the second matmul cheap.

Speed: exponentials that underflow take a slow path on CPUs, so relative log-weights are floored at ½·log(tiny)
before exp (weight ≈ 1e-19 in float32, 1e-154 in float64). Floored points are far below weight_tol, so they only
enter the normaliser, changing it by at most N·e^floor relative — many orders below the rounding unit.

Precision: in float32 the expanded distance loses ~eps·‖x‖²/σ² in the logits, i.e. it is unreliable for
σ/α ≪ 1 on high-dimensional data; use float64 (the default) for exact studies.
"""
from __future__ import annotations

import math

import torch

from .schedules import Schedule


class OptimalDenoiser:
    """`D(x, t, y=None) -> x0_hat` for the empirical distribution of `train_x` [N, ...] under `schedule`.

    labels [N] (int64) enable class conditioning: y (int or [B]) restricts each query to its class's points;
    y == num_classes (the null label, default labels.max() + 1) means unconditional for that row.
    """

    def __init__(self, train_x: torch.Tensor, schedule: Schedule, chunk_size: int = 4096,
                 dtype: torch.dtype = torch.float64, labels: torch.Tensor | None = None,
                 num_classes: int | None = None, weight_tol: float | None = None, device=None):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
        device = train_x.device if device is None else torch.device(device)
        self.schedule, self.chunk_size, self.dtype = schedule, int(chunk_size), dtype
        self.train_x = train_x.reshape(len(train_x), -1).to(device=device, dtype=dtype).contiguous()
        self.half_sq_norms = 0.5 * (self.train_x * self.train_x).sum(1)
        n = len(self.train_x)
        self.weight_tol = torch.finfo(dtype).eps / n if weight_tol is None else float(weight_tol)
        self.log_weight_floor = 0.5 * math.log(torch.finfo(dtype).tiny)
        self.labels = None
        if labels is not None:
            self.labels = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
            if len(self.labels) != n:
                raise ValueError(f"{len(self.labels)} labels for {n} training points")
            self.num_classes = int(self.labels.max()) + 1 if num_classes is None else int(num_classes)
            self.class_counts = torch.bincount(self.labels, minlength=self.num_classes)

    def __len__(self) -> int:
        return len(self.train_x)

    # --- pieces ---------------------------------------------------------------------------------------------------
    def _query(self, x: torch.Tensor) -> torch.Tensor:
        q = x.reshape(len(x), -1).to(device=self.train_x.device, dtype=self.dtype)
        if q.shape[1] != self.train_x.shape[1]:
            raise ValueError(f"query dimension {q.shape[1]} != training dimension {self.train_x.shape[1]}")
        return q

    def _scales(self, t: float) -> tuple[float, float]:
        """logits = a·(x·x_i) + b·½‖x_i‖² with a = α/σ², b = −α²/σ²."""
        alpha, sigma = float(self.schedule.alpha(t)), float(self.schedule.sigma(t))
        if not sigma > 0:
            raise ValueError(f"optimal denoiser at t={t}: σ = 0 (the limit is the nearest training point; use t > 0)")
        return alpha / sigma**2, -(alpha**2) / sigma**2

    def _class_mask(self, y, batch: int) -> torch.Tensor | None:
        """[B] class per row, or None when every row is unconditional; −1 marks an unconditional row."""
        if y is None:
            return None
        if self.labels is None:
            raise ValueError("class-conditional query on an optimal denoiser built without labels")
        y = torch.as_tensor(y, dtype=torch.long, device=self.train_x.device).reshape(-1).expand(batch)
        if bool(((y < 0) | (y > self.num_classes)).any()):
            raise ValueError(f"class label out of range [0, {self.num_classes}] ({self.num_classes} = null label)")
        y = torch.where(y == self.num_classes, -1, y)
        conditional = y[y >= 0]
        if len(conditional) and bool((self.class_counts[conditional] == 0).any()):
            raise ValueError("class-conditional query for a class with no training points")
        return None if not len(conditional) else y

    def _chunk_logits(self, q_scaled, start, stop, b, rows_class) -> torch.Tensor:
        """logits [B, chunk] = (a·q)·x_iᵀ + b·½‖x_i‖²: one matmul and one broadcast add."""
        logits = torch.mm(q_scaled, self.train_x[start:stop].T).add_(self.half_sq_norms[start:stop], alpha=b)
        if rows_class is not None:
            other = (self.labels[None, start:stop] != rows_class[:, None]) & (rows_class[:, None] >= 0)
            logits.masked_fill_(other, -math.inf)
        return logits

    # --- public ---------------------------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, t: float, y=None) -> torch.Tensor:
        q = self._query(x)
        (a, b), rows_class = self._scales(t), self._class_mask(y, len(q))
        q_scaled = a * q
        B = len(q)
        run_max = torch.full((B,), -math.inf, dtype=self.dtype, device=q.device)
        norm = torch.zeros(B, dtype=self.dtype, device=q.device)
        acc = torch.zeros(B, q.shape[1], dtype=self.dtype, device=q.device)
        for start in range(0, len(self), self.chunk_size):
            stop = min(start + self.chunk_size, len(self))
            logits = self._chunk_logits(q_scaled, start, stop, b, rows_class)
            new_max = torch.maximum(run_max, logits.amax(1))
            shift = torch.where(torch.isneginf(new_max), 0.0, new_max)  # rows with no admissible point yet
            rescale = torch.exp(run_max - shift)
            weights = logits.sub_(shift[:, None]).clamp_(min=self.log_weight_floor).exp_()
            norm.mul_(rescale).add_(weights.sum(1))
            acc.mul_(rescale[:, None])
            keep = weights.amax(0) >= self.weight_tol
            n_keep = int(keep.sum())
            if 2 * n_keep >= stop - start:
                acc.addmm_(weights, self.train_x[start:stop])
            elif n_keep:
                idx = keep.nonzero().squeeze(1)
                acc.addmm_(weights.index_select(1, idx), self.train_x[start:stop].index_select(0, idx))
            run_max = new_max
        out = acc / norm[:, None]
        return out.reshape(x.shape).to(device=x.device, dtype=x.dtype)

    def log_weights(self, x: torch.Tensor, t: float, y=None) -> torch.Tensor:
        """log w_i for every query and training point: [B, N] (normalised; −inf outside the query's class)."""
        q = self._query(x)
        (a, b), rows_class = self._scales(t), self._class_mask(y, len(q))
        q_scaled = a * q
        logits = torch.cat([self._chunk_logits(q_scaled, s, min(s + self.chunk_size, len(self)), b, rows_class)
                            for s in range(0, len(self), self.chunk_size)], dim=1)
        return torch.log_softmax(logits, dim=1)

    def posterior_weights(self, x: torch.Tensor, t: float, y=None) -> torch.Tensor:
        """w_i = p(x0 = x_i | x_t): [B, N], rows sum to 1."""
        return torch.exp(self.log_weights(x, t, y))

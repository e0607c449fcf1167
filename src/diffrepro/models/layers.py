"""Shared building blocks: noise-level embedding, class embedding with a null label, GroupNorm sizing."""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal(u: torch.Tensor, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer/DDPM positional features of `scale·u` (scale 1000 makes t ∈ [0, 1] look like DDPM steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=u.device, dtype=torch.float32) / half)
    args = (scale * u)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class Conditioning(nn.Module):
    """Embedding of (t, y): sinusoidal features of the time input through a 2-layer MLP, plus a learned class vector.

    The time input is what `diffusion.denoisers.network_inputs` hands the net: the schedule's t (∈ [0, 1]) for
    eps/x0/v, ¼·ln σ_ve for edm; both are O(1), so one embedding serves both.

    Class-conditional nets hold `num_classes + 1` class vectors; label `num_classes` (and `y=None`) is the null
    class used for classifier-free guidance (trained through label dropout).
    """

    def __init__(self, features: int, dim: int, num_classes: int = 0):
        super().__init__()
        self.features, self.num_classes = features, num_classes
        self.mlp = nn.Sequential(nn.Linear(features, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(num_classes + 1, dim) if num_classes > 0 else None

    def forward(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        emb = self.mlp(sinusoidal(t.float(), self.features))
        if self.label is not None:
            if y is None:
                y = torch.full((t.shape[0],), self.num_classes, dtype=torch.long, device=t.device)
            emb = emb + self.label(y.long())
        return emb


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with about 4+ channels per group (32 groups at 128+ channels, as in DDPM)."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return nn.GroupNorm(groups, channels)


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def expand_t(t, batch: int, device) -> torch.Tensor:
    """Accept a float or a [B] tensor; return a float32 [B] tensor (networks always take a batch of t)."""
    t = torch.as_tensor(t, dtype=torch.float32, device=device)
    return t.expand(batch) if t.dim() == 0 else t.float()

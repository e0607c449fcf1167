"""Residual MLP for vector data (toy 2-D, Gaussian beds): `net(x [B, d], t [B], y=None) -> [B, d]`."""
from __future__ import annotations

import torch
from torch import nn

from .layers import Conditioning, expand_t, zero_init


class ResidualLayer(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.inner = nn.Linear(hidden, hidden)
        self.emb = nn.Linear(hidden, hidden)
        self.outer = zero_init(nn.Linear(hidden, hidden))

    def forward(self, h, emb):
        silu = torch.nn.functional.silu
        return h + self.outer(silu(self.inner(silu(self.norm(h))) + self.emb(emb)))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int = 256, depth: int = 4, time_embed: int = 64, num_classes: int = 0):
        super().__init__()
        self.cond = Conditioning(time_embed, hidden, num_classes)
        self.inp = nn.Linear(dim, hidden)
        self.layers = nn.ModuleList(ResidualLayer(hidden) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x, t, y=None):
        emb = torch.nn.functional.silu(self.cond(expand_t(t, x.shape[0], x.device), y))
        h = self.inp(x)
        for layer in self.layers:
            h = layer(h, emb)
        return self.out(h)

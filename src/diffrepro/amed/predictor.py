"""The AMED predictor (GEO §3.3): a tiny network choosing each step's intermediate time r (and optionally the
direction scale c and the time scale g) from the denoiser network's bottleneck feature and the two noise levels.

feature (64-d: the bottleneck averaged over channels) → Linear(64, 128) → SiLU → Linear(128, 4);
σ_i and σ_{i+1} → sinusoidal embeddings of ¼·ln σ (8 channels) → Linear + SiLU each; the 20-d concatenation feeds one
Linear head per output: r = sigmoid(·), c = 1 + a·tanh(·), g = 1 + b·tanh(·). The heads start at zero, so an
untrained predictor is DPM-Solver-2 (r = ½, c = g = 1). A network without a bottleneck gets the zero feature (as the
paper's first step under AFS); its decisions then depend on (σ_i, σ_{i+1}) only and are the same for every sample.
"""
from __future__ import annotations

import math

import torch
from torch import nn

FEATURE_DIM = 64
EMBED_DIM = 8
OUTPUTS = ("r", "scale_dir", "scale_time")
R_MIN = 1e-4


def sigma_embedding(sigma: float, channels: int = EMBED_DIM) -> torch.Tensor:
    """[cos, sin](¼·ln σ · 2^k), k = 0..channels/2 − 1: a smooth code of the noise level."""
    c = 0.25 * math.log(float(sigma))
    freqs = 2.0 ** torch.arange(channels // 2, dtype=torch.float32)
    return torch.cat([torch.cos(c * freqs), torch.sin(c * freqs)])


class AMEDPredictor(nn.Module):
    def __init__(self, scale_dir: float = 0.0, scale_time: float = 0.0, feature_dim: int = FEATURE_DIM,
                 hidden: int = 128):
        super().__init__()
        self.scale_dir, self.scale_time, self.feature_dim = float(scale_dir), float(scale_time), int(feature_dim)
        self.feature = nn.Sequential(nn.Linear(feature_dim, hidden), nn.SiLU(), nn.Linear(hidden, 4))
        self.embed_cur = nn.Sequential(nn.Linear(EMBED_DIM, EMBED_DIM), nn.SiLU())
        self.embed_next = nn.Sequential(nn.Linear(EMBED_DIM, EMBED_DIM), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(4 + 2 * EMBED_DIM, 1) for k in self.outputs})
        for head in self.heads.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(k for k in OUTPUTS if k == "r" or getattr(self, k) > 0)

    def forward(self, feature: torch.Tensor, sigma_cur: float, sigma_next: float) -> dict[str, torch.Tensor]:
        """Decisions per sample ([B] each) for the step σ_cur → σ_next."""
        b = len(feature)
        h = torch.cat([self.feature(feature),
                       self.embed_cur(sigma_embedding(sigma_cur)).expand(b, -1),
                       self.embed_next(sigma_embedding(sigma_next)).expand(b, -1)], dim=1)
        z = {k: head(h).squeeze(1) for k, head in self.heads.items()}
        out = {"r": R_MIN + (1.0 - 2.0 * R_MIN) * torch.sigmoid(z["r"])}  # inside (0, 1) even when saturated
        for k in ("scale_dir", "scale_time"):
            if k in z:
                out[k] = 1.0 + getattr(self, k) * torch.tanh(z[k])
        return out

    def config(self) -> dict:
        return {"scale_dir": self.scale_dir, "scale_time": self.scale_time, "feature_dim": self.feature_dim}


def step_decisions(predictor: AMEDPredictor, sigmas, feature: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Decisions for every step of the σ grid `sigmas` (K + 1 values) as tensors [K] (differentiable): the batch mean
    of the per-sample outputs (our denoisers take one time per batch; with the zero feature all samples agree)."""
    feature = torch.zeros(1, predictor.feature_dim) if feature is None else feature
    per_step = [predictor(feature, float(s0), float(s1)) for s0, s1 in zip(sigmas[:-1], sigmas[1:])]
    return {k: torch.stack([d[k].mean() for d in per_step]) for k in predictor.outputs}


def as_options(decisions: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """Sampler options (`r`, `scale_dir`, `scale_time`: one float per step) from `step_decisions`."""
    return {k: [float(v) for v in t.detach().double()] for k, t in decisions.items()}

"""The feature-space classifier: a small CNN trained on a dataset's training split.

Its penultimate layer is the feature space for FID/KID on datasets without an Inception protocol (digits, MNIST);
its logits give IS and the class accuracy used by the CFG study. Images are NCHW floats in [-1, 1].
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError

FORMAT = "diffrepro-classifier/1"


class FeatureClassifier(nn.Module):
    """conv → conv(stride 2) → 2×2 average pool → linear (features) → linear (logits)."""

    def __init__(self, in_channels: int, num_classes: int, image_size: int, width: int = 32, feature_dim: int = 64):
        super().__init__()
        self.arch = dict(in_channels=in_channels, num_classes=num_classes, image_size=image_size, width=width,
                         feature_dim=feature_dim)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2), nn.Flatten(),
            nn.Linear(8 * width, feature_dim), nn.ReLU(),
        )
        self.head = nn.Linear(feature_dim, num_classes)
        # RMS of the training set's penultimate activations: features() are unit-scale, so FID/KID values read
        # on a scale like Inception's whatever the width (set once after training).
        self.register_buffer("feature_scale", torch.ones(()))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) / self.feature_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def accuracy(model: FeatureClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    labels, _ = classify(model, x, batch_size)
    return float((labels == y.to(labels.device)).double().mean())


def train_classifier(x_train, y_train, steps: int, batch_size: int, lr: float, width: int, feature_dim: int,
                     seed: int, device: str = "cpu") -> FeatureClassifier:
    """Cross-entropy training with Adam on uniformly drawn minibatches; deterministic for a given seed on CPU."""
    x_train = torch.as_tensor(x_train, dtype=torch.float32)
    y_train = torch.as_tensor(y_train, dtype=torch.int64)
    if x_train.dim() != 4:
        raise UserError(f"the feature classifier needs images [N, C, H, W]; got shape {tuple(x_train.shape)}")
    torch.manual_seed(seed)
    model = FeatureClassifier(x_train.shape[1], int(y_train.max()) + 1, x_train.shape[-1], width, feature_dim)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x_train), (min(batch_size, len(x_train)),), generator=gen)
        loss = F.cross_entropy(model(x_train[idx].to(device)), y_train[idx].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        sq = sum(model.body(x_train[b].to(device)).pow(2).sum() for b in _batches(len(x_train), 1000))
        model.feature_scale.fill_(float(sq / (len(x_train) * feature_dim)) ** 0.5 or 1.0)
    return model


def checkpoint(model: FeatureClassifier, **extra) -> dict:
    """What `classifier.pt` holds: format tag, architecture, CPU weights and extra metadata (dataset, accuracy)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "arch": dict(model.arch), "state_dict": state, **extra}


def load_classifier(path: str | Path, device: str = "cpu") -> FeatureClassifier:
    from ..training.state import read_torch_file

    path = Path(path)
    if not path.exists():
        raise UserError(f"missing classifier file: {path} (run `diffrepro train-classifier`)")
    ckpt = read_torch_file(path, ("format", "arch", "state_dict"), "classifier file")
    try:
        if ckpt.get("format") != FORMAT:
            raise ValueError(f"format tag is {ckpt.get('format')!r}, expected {FORMAT!r}")
        model = FeatureClassifier(**ckpt["arch"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # corrupt or foreign file: name it
        raise UserError(f"cannot read classifier {path}: {exc}") from None
    return model.to(device).eval().requires_grad_(False)


@torch.no_grad()
def classify(model: FeatureClassifier, samples, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted labels `[N]` and class probabilities `[N, K]` (CPU) for images NCHW in [-1, 1]."""
    x = torch.as_tensor(samples, dtype=torch.float32)
    device = next(model.parameters()).device
    probs = torch.cat([model(x[s].to(device)).softmax(dim=1).cpu() for s in _batches(len(x), batch_size)])
    return probs.argmax(dim=1), probs


def classifier_params(cfg: dict, dataset: str) -> dict:
    """`classifier.<dataset>` with the schema's defaults filled in (also when the entry is absent)."""
    from ..config import load_schema

    fields = load_schema()["properties"]["classifier"]["additionalProperties"]["properties"]
    return {**{k: v["default"] for k, v in fields.items()}, **cfg.get("classifier", {}).get(dataset, {})}

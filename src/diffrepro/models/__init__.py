"""Networks `net(x, t_batch, y=None)` (DEVELOPING "schedule and denoiser vocabulary"): an MLP for vectors and a
small UNet for images, both optionally class-conditional with a null class = `num_classes` (for CFG)."""
from __future__ import annotations

from torch import nn

from ..errors import UserError
from .mlp import MLP
from .unet import UNet


def build_model(model_spec: dict, data_shape, num_classes: int = 0) -> nn.Module:
    """Build the network of one `models.<name>` params entry for data of per-item shape `data_shape`.

    `num_classes` is used only when `class_conditional` is set (0 → unconditional).
    """
    shape = tuple(int(s) for s in data_shape)
    classes = int(num_classes) if model_spec.get("class_conditional", False) else 0
    if model_spec.get("class_conditional", False) and classes < 1:
        raise UserError("class_conditional model needs a labelled dataset (num_classes = 0)")
    arch = model_spec["arch"]
    if arch == "mlp":
        if len(shape) != 1:
            raise UserError(f"arch 'mlp' needs vector data [N, d], got items of shape {list(shape)}")
        return MLP(shape[0], num_classes=classes, **model_spec.get("mlp", {}))
    if arch == "unet":
        if len(shape) != 3 or shape[1] != shape[2]:
            raise UserError(f"arch 'unet' needs square images [N, C, H, W], got items of shape {list(shape)}")
        return UNet(shape[0], shape[1], num_classes=classes, **model_spec.get("unet", {}))
    raise UserError(f"unknown arch '{arch}' (known: mlp, unet)")


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())

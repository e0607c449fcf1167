"""The ε-network on the extended state (spec §2.3): u = [n, K, *data_shape] and t → ε̂ of the same shape.

A thin wrapper over the shared networks (`diffrepro.models.build_model`): the K variables enter as extra input and
output features — K·d inputs for the MLP (images are flattened), K·C channels for the UNet — with the rest of the
architecture fixed, so every diffusion of a study uses the same network. The shared networks embed 1000·t
(pitfall 11).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import UserError
from ..models import build_model


def inner_shape(arch: str, k: int, data_shape: tuple[int, ...]) -> tuple[int, ...]:
    if arch == "mlp":
        return (k * math.prod(data_shape),)
    if arch == "unet":
        if len(data_shape) != 3:
            raise UserError(f"mdm network arch 'unet' needs image data [N, C, H, W], got items {list(data_shape)}")
        return (k * data_shape[0], *data_shape[1:])
    raise UserError(f"unknown mdm network arch '{arch}' (known: mlp, unet)")


class ExtendedStateNet(nn.Module):
    def __init__(self, spec: dict, k: int, data_shape: tuple[int, ...]):
        super().__init__()
        arch = spec.get("arch", "mlp")
        self.shape = inner_shape(arch, k, tuple(data_shape))
        self.inner = build_model({"arch": arch, arch: spec.get(arch, {})}, self.shape)

    def forward(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.inner(u.reshape(u.shape[0], *self.shape), t).reshape(u.shape)


class OnDevice(nn.Module):
    """Runs the network on `device` (CUDA when configured) while the K×K float64 algebra and the state stay on the
    CPU: inputs go over, ε̂ comes back (autograd follows). A no-op wrapper on CPU."""

    def __init__(self, net: nn.Module, device: torch.device):
        super().__init__()
        self.net, self.device = net.to(device), device

    def forward(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return self.net(u, t)
        return self.net(u.to(self.device, non_blocking=True), t.to(self.device)).to(u.device)


def build_network(spec: dict, k: int, data_shape: tuple[int, ...]) -> nn.Module:
    """Network from `mdm.studies.<dataset>.network` ({arch, mlp: {...}, unet: {...}})."""
    return ExtendedStateNet(spec, k, data_shape)

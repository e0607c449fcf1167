"""An EDM-format network for the benchmarks, built from our UNet with random weights (no download, no pickle).

NVlabs EDM's networks are preconditioned and called `net(x, sigma, class_labels=None) -> D(x; σ)` with x in VE
scale (x = x0 + σ·ε). `EDMFormatVP` is EDM's VP preconditioner around one of our UNets: c_skip = 1,
c_out = −σ, c_in = 1/√(σ²+1), and the noise input is the VP time t(σ) with σ(t) = √(exp(½β_d t² + β_min t) − 1),
β_d = 19.9, β_min = 0.1 (EDM passes (M−1)·t to its DDPM++; our UNet takes t ∈ [0, 1], which only rescales its
embedding).

`edm_denoiser(net, schedule)` turns such a net into the pipeline's `D(x, t)` on the VP schedule it was trained on
(x_ve = x/α(t), σ = σ(t)/α(t)); it stands in for `diffrepro.sources.load_model(...).denoiser()` until that lands:
the benchmarks take any `denoiser_for(net) -> D` so the real loader's adapter can be measured the same way.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..diffusion.denoisers import TimeTable
from ..diffusion.schedules import VPLinear

BETA_D, BETA_MIN = 19.9, 0.1


def vp_schedule() -> VPLinear:
    """EDM's VP schedule in the pipeline's vocabulary: β(t) = β_min + t·β_d (β1 = 20)."""
    return VPLinear(beta0=BETA_MIN, beta1=BETA_MIN + BETA_D)


class EDMFormatVP(nn.Module):
    """EDM's VP preconditioner around `unet(x, t_batch)` (an ε-prediction network): returns D(x; σ)."""

    def __init__(self, unet: nn.Module, img_resolution: int, img_channels: int):
        super().__init__()
        self.model, self.img_resolution, self.img_channels, self.label_dim = unet, img_resolution, img_channels, 0
        self.sigma_min = math.sqrt(math.expm1(0.5 * BETA_D * 1e-5**2 + BETA_MIN * 1e-5))
        self.sigma_max = math.sqrt(math.expm1(0.5 * BETA_D + BETA_MIN))

    def forward(self, x, sigma, class_labels=None):
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
        c_in = 1 / (sigma**2 + 1).sqrt()
        t = ((BETA_MIN**2 + 2 * BETA_D * torch.log1p(sigma**2)).sqrt() - BETA_MIN) / BETA_D
        out = self.model(c_in * x, t.flatten().expand(x.shape[0]))
        return x - sigma * out.to(torch.float32)


class EDMDenoiser:
    """`D(x, t)` on a VP schedule around an EDM-format `net(x_ve, sigma) -> D`; per-t scalars in a `TimeTable`."""

    def __init__(self, net, schedule):
        self.net, self.schedule = net, schedule
        self.scalars = TimeTable(lambda t: (1 / schedule.alpha(t), schedule.sigma_ve(t)))

    def on_schedule(self, schedule) -> "EDMDenoiser":
        """The same network read in another schedule (equal λ is equal σ_ve): what `reschedule` asks for."""
        return EDMDenoiser(self.net, schedule)

    def prepare(self, times) -> None:
        self.scalars.prepare(times)

    def __call__(self, x, t: float):
        inv_alpha, sigma = self.scalars(float(t))
        x_ve = x if inv_alpha == 1.0 else x * inv_alpha
        with torch.no_grad():
            return self.net(x_ve, torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device))


def edm_denoiser(net, schedule=None) -> EDMDenoiser:
    return EDMDenoiser(net, schedule or vp_schedule())


class FrozenNet:
    """Zero-cost stand-in for a network, whatever its calling convention (ours `net(x, t, y)`, EDM's
    `net(x, sigma, class_labels)`): returns one precomputed output and counts the calls."""

    def __init__(self, output):
        self.output, self.calls = output, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.output


def ddpmpp_sized(channels: int = 128, image_size: int = 32, img_channels: int = 3) -> EDMFormatVP:
    """A UNet the size of ScoreSDE's DDPM++ CIFAR-10 network (128 channels, ×(2, 2, 2), 4 blocks per level,
    attention at 16×16: 53.6 M parameters against DDPM++'s 55.7 M), random weights, in EDM's VP format."""
    from ..models.unet import UNet

    unet = UNet(img_channels, image_size, channels=channels, channel_mult=(2, 2, 2), num_res_blocks=4,
                attention_resolutions=(image_size // 2,))
    for layer in unet.modules():  # our training init zeroes each block's last conv: a random net should not be x
        if isinstance(layer, nn.Conv2d) and not bool(layer.weight.any()):
            layer.reset_parameters()
    return EDMFormatVP(unet, image_size, img_channels)

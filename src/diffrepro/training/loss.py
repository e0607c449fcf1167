"""Denoising score matching (DSM) with the parameterisation of `diffusion.denoisers`: the network input, its time
input and the regression target all come from that module, so training and sampling agree by construction."""
from __future__ import annotations

import torch

from ..diffusion import denoisers
from ..diffusion.schedules import Schedule, VPDiscrete

# EDM's training noise distribution ln σ ~ N(P_mean, P_std²) (Karras et al. 2022, Table 1), used for `edm`-schedule
# models: a uniform t = σ over [0.002, 80] would spend almost every step at high noise.
EDM_P_MEAN, EDM_P_STD = -1.2, 1.2


def sample_times(schedule: Schedule, batch: int, generator: torch.Generator, device) -> torch.Tensor:
    """Training noise levels t [B] (float64): discrete VP → a uniform integer timestep mapped by `t_of_index`;
    EDM → log-normal σ clipped to [σ_min, σ_max]; otherwise t ~ U[t_min, t_max]."""
    if isinstance(schedule, VPDiscrete):
        i = torch.randint(0, schedule.M, (batch,), generator=generator, device=device)
        return schedule.t_of_index(i.to(torch.float64))
    if schedule.name == "edm":
        z = torch.randn(batch, generator=generator, device=device, dtype=torch.float64)
        return torch.exp(EDM_P_MEAN + EDM_P_STD * z).clamp(schedule.t_min, schedule.t_max)
    u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
    return schedule.t_min + (schedule.t_max - schedule.t_min) * u


def dsm_loss(net, x0: torch.Tensor, y: torch.Tensor | None, schedule: Schedule, parameterisation: str,
             generator: torch.Generator) -> torch.Tensor:
    """E‖F(c_in·x_t, c_noise, y) − target‖² with x_t = α·x0 + σ·ε (mean over batch and dimensions)."""
    t = sample_times(schedule, len(x0), generator, x0.device).cpu()  # schedules keep their tables on the CPU
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    shape = (-1,) + (1,) * (x0.ndim - 1)
    alpha = schedule.alpha(t).to(x0.device, x0.dtype).reshape(shape)
    sigma = schedule.sigma(t).to(x0.device, x0.dtype).reshape(shape)
    x_t = alpha * x0 + sigma * eps
    x_in, time = denoisers.network_inputs(parameterisation, x_t, schedule, t)
    target = denoisers.parameterisation_target(parameterisation, x0, eps, schedule, t)
    out = net(x_in, time, y) if y is not None else net(x_in, time)
    return (out.float() - target.float()).pow(2).mean()

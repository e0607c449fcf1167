"""The trajectory error: how far sampled end points are from the reference PF-ODE solution of the same initial
noises (the sweep's `traj_rmse` column and the objective of the NI matrix search). Pure torch, float64; shared by the
metrics (layer 7) and the NI search (layer 3), so it lives in the math core."""
from __future__ import annotations

import torch


def trajectory_error(samples, reference) -> float:
    """RMSE of each final sample to the reference PF-ODE solution from the same noise, averaged over samples
    (float64)."""
    s = torch.as_tensor(samples).reshape(len(samples), -1).to(torch.float64)
    r = torch.as_tensor(reference).reshape(len(reference), -1).to(torch.float64)
    if s.shape != r.shape:
        raise ValueError(f"samples {tuple(s.shape)} and reference {tuple(r.shape)} differ in shape")
    return float((s - r).pow(2).mean(dim=1).sqrt().mean())

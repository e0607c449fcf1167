"""Joint training of the ε-network and the diffusion (spec §2.6, §8): one (fused) Adam over {network, q, δ}, loss −ELBO.

Three generators keep seeds paired across diffusions: minibatch order and time quantiles are the same for every
diffusion at a given seed; only the K-dependent noise stream differs.
"""
from __future__ import annotations

import sys
import time

import torch
from tqdm import tqdm

from .elbo import ImportanceTime, dequantise_logit, elbo
from .linear import LinearDiffusion


def paired_generators(seed: int) -> dict[str, torch.Generator]:
    return {name: torch.Generator().manual_seed(seed * 1000 + i) for i, name in enumerate(("batch", "time", "noise"))}


def to_model_space(x: torch.Tensor, levels: int | None, generator: torch.Generator):
    """Images: dequantise + logit (returns y, ldj); continuous data: unchanged, ldj = 0."""
    if levels is None:
        return x.double(), torch.zeros(x.shape[0], dtype=torch.float64)
    return dequantise_logit(x, levels, generator)


def train(net: torch.nn.Module, diffusion: LinearDiffusion, data: torch.Tensor, *, steps: int, batch_size: int,
          lr: float, grad_clip: float, times: ImportanceTime, seed: int, levels: int | None = None,
          log_every: int = 100, desc: str | None = None) -> dict:
    """Train in place; returns the history (loss per logged step, Q and D snapshots, wall time).

    `desc`: show a progress bar with that label on stderr (the rule's log)."""
    gens = paired_generators(seed)
    params = list(net.parameters()) + list(diffusion.parameters())
    opt = torch.optim.Adam(params, lr=lr, fused=True)  # one fused kernel per dtype: ~10× cheaper than the loop on CPU
    history = {"step": [], "loss": [], "Q": [], "D": []}
    running, start = 0.0, time.perf_counter()
    bar = tqdm(total=steps, desc=desc, file=sys.stderr, disable=desc is None, mininterval=2.0, dynamic_ncols=True)
    for step in range(1, steps + 1):
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gens["batch"])
        x, _ = to_model_space(data[idx], levels, gens["noise"])
        uniform = torch.rand(batch_size, generator=gens["time"], dtype=torch.float64)
        loss = -elbo(net, diffusion, x, times, generator=gens["noise"], uniform=uniform).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        running += float(loss.detach())
        bar.update(1)
        if step % log_every == 0 or step == steps:
            q, d = (m.detach() for m in diffusion.matrices())
            count = (step - 1) % log_every + 1
            history["step"].append(step)
            history["loss"].append(running / count)
            history["Q"].append(q.tolist())
            history["D"].append(torch.diagonal(d).tolist())
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}")
            running = 0.0
    bar.close()
    history["wall_s"] = time.perf_counter() - start
    return history

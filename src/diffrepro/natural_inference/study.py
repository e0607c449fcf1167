"""The NI study's computations (no file I/O): matrix tables, replay equivalence, tuned-vs-baseline, sharpness, CFG.

Each function takes denoisers and noises and returns plain rows/arrays; `reports.ni` builds the report
sections from them.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..diffusion.trajectory import trajectory_error
from ..samplers import get_sampler
from ..samplers.grids import named_grid_of
from .executor import execute
from .matrix import NIMatrix, check_nodes
from .search import marginal_exact, projection_gap, search
from .sharpness import high_frequency_energy, nearest_train_distance, sharpen
from .tracer import trace_sampler


def realisable(name: str, nfe: int) -> bool:
    return get_sampler(name).steps_for_nfe(nfe) is not None


# --- matrices, marginals, equivalence ---------------------------------------------------------------------------------
def trace_all(schedule, samplers: list[str], nfes: list[int], grid: str | None = None) -> dict:
    """{(sampler, nfe): NIMatrix} for every realisable pair."""
    return {(s, n): trace_sampler(s, schedule, n, grid=grid) for s in samplers for n in nfes if realisable(s, n)}


def marginal_row(name: str, m: NIMatrix) -> list:
    mg = m.marginals()
    return [name, m.n, float(np.abs(mg["signal_err"]).max()), float(np.abs(mg["signal_err"][:-1]).max(initial=0.0)),
            float(np.abs(mg["noise_err"]).max()), float(mg["noise_norm"][-1]), float(mg["sigma"][-1]),
            float(m.C.min()), "column 0" if m.deterministic else "dense"]


MARGINAL_COLUMNS = ["sampler", "NFE", "max |ΣC−α|", "max |ΣC−α| (rows < n−1)", "max |‖B‖−σ|", "‖B‖ last row",
                    "σ last node", "min C", "B"]


def ddim_deficit_error(m: NIMatrix) -> float:
    """max_k |(α_{k+1} − ΣC[k]) − σ_{k+1}·α_0/σ_0|: 0 when the deficit is exactly DDIM's missing signal at τ_0."""
    deficit = m.alphas[1:] - m.C.sum(1)
    return float(np.abs(deficit - m.sigmas[1:] * m.alphas[0] / m.sigmas[0]).max())


def replay_difference(name: str, schedule, nfe: int, denoiser: Callable, eps0: torch.Tensor, noise_seed: int,
                      grid: str | None = None) -> float:
    """max |Δ| between the sampler as the sweep runs it and the NI replay of its traced matrix (same noise)."""
    from ..samplers.sweep import model_grid, run_cell
    from ..samplers import TorchNoise

    spec = get_sampler(name)
    grid_name = grid or spec.default_grid
    g = model_grid(grid_name, schedule, spec.steps_for_nfe(nfe))
    native, _ = run_cell(denoiser, schedule, name, g, eps0, sde_seed=noise_seed)
    m = trace_sampler(name, schedule, nfe, grid=grid_name)
    replay = execute(m, denoiser, eps0, TorchNoise(torch.Generator().manual_seed(noise_seed)))
    replay = replay / float(m.alphas[-1])
    return float((native.double() - replay.double()).abs().max())


# --- stored matrices replayed on a model (the paper's tuned CIFAR files) --------------------------------------------
def load_for_model(path, schedule) -> tuple[NIMatrix, dict]:
    """A stored NI matrix checked against a model schedule: (matrix, facts for the report).

    Refuses (UserError) bad keys/shapes/non-finite values (NIMatrix.load) and nodes off the model's schedule
    (check_nodes, NI spec claim 12). Facts: n, node difference, grid name, max marginal errors, determinism.
    """
    m = NIMatrix.load(path)
    node_err = check_nodes(m, schedule, str(path))
    mg = m.marginals()
    return m, {"n": m.n, "node_err": node_err, "grid": named_grid_of(m.times, schedule),
               "signal_err": float(np.abs(mg["signal_err"]).max()), "noise_err": float(np.abs(mg["noise_err"]).max()),
               "deterministic": m.deterministic, "min_c": float(m.C.min())}


# --- tuned matrices versus baselines ----------------------------------------------------------------------------------
def to_data(m: NIMatrix, x: torch.Tensor) -> torch.Tensor:
    return x / float(m.alphas[-1])


def sample(m: NIMatrix, denoiser: Callable, eps0: torch.Tensor, batch_size: int = 1000, noise=None) -> torch.Tensor:
    """Data-space NI samples (x_n/α(τ_n)) in batches on the CPU, without gradients; `noise` (a TorchNoise) is needed
    only by matrices that inject fresh noise (B columns ≥ 1)."""
    with torch.no_grad():
        return torch.cat([to_data(m, execute(m, denoiser, eps0[i:i + batch_size], noise)).cpu()
                          for i in range(0, len(eps0), batch_size)])


START_ALWAYS = ("ddim", "dpmpp2m")  # one-step data-prediction recursions: B = σ·e_0 already, only rows rescale


def candidates(schedule, nfe: int, baselines: list[str], grid: str) -> dict[str, NIMatrix]:
    """The deterministic baselines realisable at `nfe` on `grid` (plus DDIM and DPM-Solver++ 2M, always), traced."""
    names = list(dict.fromkeys([*baselines, *START_ALWAYS]))
    cands = {b: trace_sampler(b, schedule, nfe, grid=grid) for b in names
             if realisable(b, nfe) and not get_sampler(b).stochastic}
    if not cands:
        raise ValueError(f"no deterministic baseline can make NFE {nfe}: {baselines}")
    return cands


def fit_at(schedule, nfe: int, baselines: list[str], grid: str, denoiser: Callable, grad_denoiser: Callable,
           e_train, r_train, iterations: int, lr: float, window: int | None, batch_size: int | None = None,
           trim: float = 0.0) -> dict:
    """Tune C at `nfe`: project every candidate baseline into the search's family (`marginal_exact`), start from the
    one with the lowest training error after projection, and search (full-batch, deterministic; `batch_size` only
    chunks the gradient for memory). Returns {matrix, best, train_err, losses}."""
    cands = candidates(schedule, nfe, baselines, grid)
    r_train_cpu = r_train.cpu()
    # the search moves inside the marginal-exact family, so the start is the baseline best after projection
    train_err = {b: trajectory_error(sample(marginal_exact(m), denoiser, e_train), r_train_cpu)
                 for b, m in cands.items()}
    best = min(train_err, key=train_err.get)
    r_model = r_train * float(cands[best].alphas[-1])  # search compares model-coordinate outputs
    result = search(cands[best], grad_denoiser, e_train, r_model, iterations=iterations, lr=lr, window=window,
                    trim=trim, batch_size=batch_size, desc=f"ni search nfe {nfe} from {best}")
    tuned = result.matrix
    tuned.meta.update({"nfe": nfe, "start": best, "grid_name": grid})
    return {"matrix": tuned, "best": best, "train_err": train_err, "losses": result.losses}


def score_at(schedule, nfe: int, baselines: list[str], grid: str, denoiser: Callable, tuned: NIMatrix, best: str,
             e_val, r_val) -> dict:
    """Held-out trajectory errors of every candidate baseline, of the search's start (`best` projected) and of the
    tuned matrix, with the samples and each baseline's projection gap (`projection_gap`)."""
    cands = candidates(schedule, nfe, baselines, grid)
    r_val = r_val.cpu()
    samples = {b: sample(m, denoiser, e_val) for b, m in cands.items()}
    samples["ni_tuned"] = sample(tuned, denoiser, e_val)
    samples["start_marginal_exact"] = sample(marginal_exact(cands[best]), denoiser, e_val)
    val_err = {k: trajectory_error(v, r_val) for k, v in samples.items()}
    gap = {b: {k: float(np.abs(v).max()) for k, v in projection_gap(m).items()} for b, m in cands.items()}
    return {"val_err": val_err, "samples": samples, "baselines": cands, "projection_gap": gap}


# --- sharpness --------------------------------------------------------------------------------------------------------
def sharpness_sweep(base: NIMatrix, denoiser: Callable, eps0, train_x, window: int | None,
                    last_weights: list[float]) -> list[dict]:
    """Proxies (high-frequency energy, nearest-training-sample distance) of samples of `sharpen(base, window, w)`."""
    rows = [{"variant": "base (full history)", "window": None, "last_weight": 1.0, "matrix": base}]
    rows += [{"variant": "sharp", "window": window, "last_weight": float(w), "matrix": sharpen(base, window, w)}
             for w in last_weights]
    for r in rows:
        x = sample(r["matrix"], denoiser, eps0)
        r["samples"] = x
        r["hf_energy"] = high_frequency_energy(x) if x.ndim == 4 else float("nan")
        r["nn_distance"] = nearest_train_distance(x, train_x)
    return rows


# --- classifier-free guidance -----------------------------------------------------------------------------------------
def guided(denoiser: Callable, labels: torch.Tensor, null_label: int, scale: float) -> Callable:
    """y = y_u + s·(y_c − y_u) on x0-predictions (NI spec §5.2 "cfg X0") for a denoiser taking `y=`."""
    def D(x, t):
        yc = denoiser(x, t, y=labels)
        if scale == 1.0:
            return yc
        yu = denoiser(x, t, y=torch.full_like(labels, null_label))
        return yu + scale * (yc - yu)
    return D


def overshoot(x: torch.Tensor, tol: float = 0.02) -> tuple[float, float]:
    """(fraction of pixels with |x| > 1 + tol, mean excess max(|x| − 1, 0) over all pixels). The tolerance keeps the
    many saturated ±1 pixels of the data (reproduced up to rounding) from counting as overshoot."""
    excess = (x.abs() - 1).clamp(min=0)
    return float((excess > tol).double().mean()), float(excess.double().mean())

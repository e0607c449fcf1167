"""Distillation training of an AMED predictor (GEO §3.3), pure (no I/O): a teacher solves the PF-ODE on a finer grid
(M points inserted into every student interval) from a batch of training noises; the student (AMED-Solver or an
AMED-Plugin) rolls out on its own grid with the predictor's decisions, and the loss is the squared L2 distance between
the student's state and the teacher's at every student grid point, along the student's own rollout.

Our denoisers take the time as one Python float, so the loss is not differentiable in r (nor in g) by autograd; its
gradient with respect to the decisions (one value per step and output) is taken by central differences and
back-propagated through the predictor (`torch.autograd.backward(decisions, grad)`). Everything else is exact.
The best predictor seen (lowest training loss; the untrained one is DPM-Solver-2 / the midpoint split) is returned.
"""
from __future__ import annotations

import copy
import math

import torch

from ..samplers.registry import SamplerSpec, get_sampler
from ..samplers.solvers import heun
from .predictor import R_MIN, AMEDPredictor, as_options, step_decisions

FD_STEP = 1e-3


def teacher_grid(sigma_a: float, sigma_b: float, points: int) -> list[float]:
    """σ_a → σ_b with `points` levels inserted, uniform in log σ (uniform in λ in EDM coordinates)."""
    la, lb = math.log(sigma_a), math.log(sigma_b)
    return [sigma_a] + [math.exp(la + (lb - la) * k / (points + 1)) for k in range(1, points + 1)] + [sigma_b]


def teacher_states(teacher, denoiser, x0, grid, schedule, points: int) -> list[torch.Tensor]:
    """The teacher's states at grid[1..K], interval by interval on the finer grid (M = `points` inserted)."""
    states, x = [], x0
    with torch.no_grad():
        for a, b in zip(grid[:-1], grid[1:]):
            x = teacher(denoiser, x, teacher_grid(a, b, points), schedule)
            states.append(x)
    return states


def student_states(spec: SamplerSpec, options: dict, denoiser, x0, grid, schedule) -> list[torch.Tensor]:
    """The student's states at grid[1..K] along its own rollout: its evaluation at each grid point sees the state there
    (the first evaluation at that time), the last one is the output."""
    traj: list = []
    with torch.no_grad():
        out = spec.bind(options)(denoiser, x0, grid, schedule, None, trajectory=traj)
    states = []
    for t in grid[1:-1]:
        states.append(next(x for (tt, x, _) in traj if tt == t))
    return states + [out]


def rollout_loss(spec, options, denoiser, x0, grid, schedule, targets) -> float:
    states = student_states(spec, options, denoiser, x0, grid, schedule)
    return float(sum(((s - t).double() ** 2).mean() for s, t in zip(states, targets)) / len(targets))


def _perturbed(decisions: dict[str, list[float]], key: str, k: int, delta: float) -> dict[str, list[float]]:
    out = {n: list(v) for n, v in decisions.items()}
    lo, hi = (R_MIN, 1 - R_MIN) if key == "r" else (-math.inf, math.inf)
    out[key][k] = min(hi, max(lo, out[key][k] + delta))
    return out


class _Adam:
    """Adam (Kingma & Ba 2015) on a parameter list; written out because `torch.optim` imports torch._dynamo, which
    costs seconds of start-up for a predictor trained in seconds."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = list(params), lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        self.t += 1
        b1, b2 = self.betas
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            m.mul_(b1).add_(p.grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.sub_(self.lr * (m / (1 - b1**self.t)) / ((v / (1 - b2**self.t)).sqrt() + self.eps))


def distill(sampler: str, options: dict, denoiser, schedule, grid, x0, *, iterations: int = 60, lr: float = 0.05,
            teacher: str = "heun", teacher_points: int = 3, scale_dir: float = 0.0, scale_time: float = 0.0,
            seed: int = 0) -> tuple[AMEDPredictor, dict]:
    """Train a predictor for registry sampler `sampler` (`amed` or `amed_plugin_<base>`) with fixed `options` (e.g.
    afs) on the native (EDM) `grid` from the initial states `x0`. Returns (predictor, summary)."""
    spec = get_sampler(sampler)
    if not spec.name.startswith("amed"):
        raise ValueError(f"'{sampler}' is not an AMED sampler")
    if spec.name != "amed" and (scale_dir or scale_time):
        raise ValueError("scale_dir / scale_time are AMED-Solver outputs; the plugin learns r only")
    torch.manual_seed(int(seed))
    predictor = AMEDPredictor(scale_dir=scale_dir, scale_time=scale_time)
    grid = [float(g) for g in grid]
    if teacher == "heun":
        teach = heun
    else:  # the base solver on the finer grid: DPM-Solver-2 for AMED-Solver, the plugin's base for the plugin
        teach = get_sampler("dpm2" if spec.name == "amed" else spec.name[len("amed_plugin_"):]).bind({})
    targets = teacher_states(teach, denoiser, x0, grid, schedule, int(teacher_points))
    # the loss compares states, so training never denoises to zero (the sweep may; the decisions are the same)
    fixed = {**{k: v for k, v in options.items() if k not in ("r", "scale_dir", "scale_time")}, "denoise_to_zero": False}
    loss_of = lambda dec: rollout_loss(spec, {**fixed, **dec}, denoiser, x0, grid, schedule, targets)  # noqa: E731

    opt = _Adam(predictor.parameters(), lr=lr)
    history, best = [], (math.inf, None, None)
    for it in range(int(iterations) + 1):
        dec_t = step_decisions(predictor, grid)
        dec = as_options(dec_t)
        loss = loss_of(dec)
        history.append(loss)
        if loss < best[0]:
            best = (loss, copy.deepcopy(predictor.state_dict()), dec)
        if it == iterations:
            break
        grads = {key: [(loss_of(_perturbed(dec, key, k, FD_STEP)) - loss_of(_perturbed(dec, key, k, -FD_STEP)))
                       / (2 * FD_STEP) for k in range(len(grid) - 1)] for key in dec}
        opt.zero_grad()
        torch.autograd.backward([dec_t[k] for k in dec], [torch.tensor(grads[k], dtype=dec_t[k].dtype) for k in dec])
        opt.step()
    predictor.load_state_dict(best[1])
    base_dec = {k: [1.0 if k != "r" else 0.5] * (len(grid) - 1) for k in best[2]}
    summary = {"sampler": sampler, "options": fixed, "grid_sigma": grid, "iterations": int(iterations), "lr": lr,
               "teacher": teacher, "teacher_points": int(teacher_points), "n_train": len(x0),
               "loss_history": history, "loss_initial": loss_of(base_dec), "loss_final": best[0],
               "decisions": best[2]}
    return predictor, summary

"""Trace a sampler into its Natural Inference matrices by running the unchanged sampler on linear forms (NI spec §3.4).

The sampler receives a `LinearForm` state x = σ(grid[0])·ε_0, a denoiser that records each evaluation node
(t, input form) and answers with a fresh unit form y_k, and a noise source that answers each draw with a fresh unit
form ε_j. Whatever arithmetic the sampler does, its state stays a linear form, so the inputs of evaluations 1..n−1
and the returned output are the rows of (C, B). No sampler's matrix is derived by hand.

Samplers written in EDM coordinates (`coords="edm"`, x_edm = x/α, t = σ/α) are traced in their own coordinates and
the forms converted to the model schedule by the α scaling of `denoisers.reschedule`: the node at native time s has
model time t with equal λ, and x_model = x_native·α_model(t)/α_native(s).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..diffusion.schedules import Schedule, make_schedule
from .linear_form import LinearForm
from .matrix import NIMatrix


class _TraceNoise:
    """Noise source for trace mode: draw j (j = 1, 2, ...) is the unit form ε_j."""

    def __init__(self):
        self.count = 0

    def draw(self, like=None) -> LinearForm:
        self.count += 1
        return LinearForm.unit("eps", self.count)


class _Coordinates:
    """Map the sampler's native (t, x) to the model schedule's: identity for `model`, equal-λ rescaling otherwise."""

    def __init__(self, model: Schedule, native: Schedule | None):
        self.model, self.native = model, native

    def time(self, t_native: float) -> float:
        if self.native is None:
            return float(t_native)
        lam = self.native.lambda_(float(t_native))
        return 0.0 if math.isinf(lam) and lam > 0 else float(self.model.t_from_lambda(lam))

    def scale(self, t_native: float) -> float:
        """α_model(t)/α_native(s): multiply a native state by this to get the model state."""
        if self.native is None:
            return 1.0
        return float(self.model.alpha(self.time(t_native))) / float(self.native.alpha(float(t_native)))


def native_schedule(coords, model: Schedule) -> Schedule | None:
    """The schedule a sampler runs in: None (= the model's own) for `model`, else `edm`/`flow` or a Schedule."""
    if isinstance(coords, Schedule):
        native = coords
    elif coords == "model":
        return None
    elif coords in ("edm", "flow"):
        native = make_schedule(coords)
    else:
        raise ValueError(f"unknown sampler coordinates '{coords}' (expected 'model', 'edm', 'flow' or a Schedule)")
    same = type(native) is type(model) and native.describe() == model.describe()
    return None if same else native


def trace(sampler_fn: Callable, schedule: Schedule, grid, coords="model", **options) -> NIMatrix:
    """(C, B, nodes) of `sampler_fn(denoiser, x, grid, schedule, noise, **options)` on `grid` (native coordinates).

    `schedule` is the model schedule; `coords` says which coordinates the sampler is written in ("model", "edm",
    "flow" or a Schedule). Raises ValueError when the sampler's first evaluation is not at x_0 = σ(τ_0)·ε_0 (e.g.
    `afs`) or when it evaluates nothing.
    """
    native = native_schedule(coords, schedule)
    conv = _Coordinates(schedule, native)
    sampler_schedule = native or schedule
    times, inputs = [], []

    def denoiser(x, t):
        if not isinstance(x, LinearForm):
            raise TypeError("the sampler called the denoiser on something other than its state")
        times.append(conv.time(t))
        inputs.append(x * conv.scale(t))
        return LinearForm.unit("y", len(times) - 1)

    grid_list = [float(g) for g in grid]
    x0 = LinearForm.unit("eps", 0) * float(sampler_schedule.sigma(grid_list[0]))
    out = sampler_fn(denoiser, x0, grid, sampler_schedule, _TraceNoise(), **options)
    if not isinstance(out, LinearForm):
        raise TypeError(f"the sampler returned {type(out).__name__}, not the traced state")
    n = len(times)
    if n == 0:
        raise ValueError("the sampler made no denoiser evaluation")
    t_final = conv.time(grid_list[-1])
    rows = inputs[1:] + [out * conv.scale(grid_list[-1])]
    n_eps = max(len(f.eps) for f in inputs + rows)
    first_y, first_eps = inputs[0].padded(n, n_eps)
    sigma0 = float(schedule.sigma(times[0]))
    if np.any(first_y) or np.any(first_eps[1:]) or not math.isclose(first_eps[0], sigma0, rel_tol=1e-12):
        raise ValueError(f"the first evaluation's input is {inputs[0]}, not x_0 = σ(τ_0)·ε_0 = {sigma0}·ε_0")
    C = np.zeros((n, n))
    B = np.zeros((n, max(n_eps, n + 1)))
    for k, form in enumerate(rows):
        C[k], B[k, :n_eps] = form.padded(n, n_eps)
    node_t = np.array(times + [t_final])
    nodes = np.stack([node_t, _eval(schedule.alpha, node_t), _eval(schedule.sigma, node_t)], axis=1)
    meta = {"coords": coords if isinstance(coords, str) else coords.name, "schedule": schedule.describe(), "grid": grid_list, "options": _plain(options)}
    return NIMatrix(C, B, nodes, meta)


def _eval(fn, ts: np.ndarray) -> np.ndarray:
    return np.array([float(fn(float(t))) for t in ts])


def _plain(options: dict) -> dict:
    return {k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v) for k, v in options.items()}


def trace_sampler(name: str, schedule: Schedule, nfe: int, grid: str | None = None, grid_options: dict | None = None,
                  **options) -> NIMatrix:
    """Trace registry sampler `name` at `nfe` denoiser calls on grid `grid` (default: the sampler's own) built in the
    model schedule and converted to the sampler's coordinates by equal λ, as the sampling sweep does."""
    from ..errors import UserError
    from ..samplers import convert_grid, get_sampler, make_grid

    spec = get_sampler(name)
    options = spec.concrete_options(nfe, options)  # afs: auto decided for this NFE
    opts = spec.merged_options(options)
    steps = spec.steps_for_nfe(nfe, options=options)
    if steps is None:
        raise UserError(f"sampler '{name}' cannot make exactly {nfe} denoiser calls ({spec.evals_per_step(options)} "
                        f"per step, afs={bool(opts.get('afs'))}, denoise_to_zero={bool(opts.get('denoise_to_zero'))})")
    grid_name = grid or spec.default_grid
    model_grid = make_grid(grid_name, schedule, steps, **(grid_options or {}))
    native = native_schedule(spec.coords, schedule)
    native_grid = convert_grid(model_grid, schedule, native) if native is not None else model_grid
    m = trace(spec.bind(options), schedule, native_grid, native or "model")
    m.meta.update({"sampler": name, "nfe": nfe, "grid_name": grid_name, "coords": spec.coords,
                   "sampler_options": _plain(opts)})
    return m

"""`SAMPLERS[name]`: each sampler's function, fixed options, native coordinates, NFE per step and design order.

Coordinates: "model" = the model's own schedule (DDPM/DDIM/NI's ODE and SDE Euler), "edm" = VE coordinates t = σ_ve
(the GEO toolbox samplers), "flow" = rectified-flow time (flow Euler). The sweep reschedules the denoiser and the grid
into them. NFE n → K steps: n = nfe_per_step·K − [afs] + [denoise_to_zero] (GEO §2.10); an n with no integer K is
skipped, never rounded.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from ..errors import UserError
from . import solvers as S


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    fn: Callable
    coords: str                 # "model" | "edm" | "flow"
    nfe_per_step: int
    order: float                # convergence order as implemented (measured: tests/test_samplers.py)
    variable: str               # the variable / grid family the order holds in
    default_grid: str
    stochastic: bool = False
    options: dict = field(default_factory=dict)

    def steps_for_nfe(self, nfe: int, afs: bool = False, denoise_to_zero: bool = False) -> int | None:
        """K steps realising exactly `nfe` denoiser calls, or None if no integer K does."""
        n = int(nfe) + int(bool(afs)) - int(bool(denoise_to_zero))
        if n < self.nfe_per_step or n % self.nfe_per_step:
            return None
        return n // self.nfe_per_step

    def nfe_for_steps(self, steps: int, afs: bool = False, denoise_to_zero: bool = False) -> int:
        return self.nfe_per_step * steps - int(bool(afs)) + int(bool(denoise_to_zero))

    def bind(self, user_options: dict | None = None) -> Callable:
        """The sampler function with the fixed options and validated user options applied."""
        opts = self.merged_options(user_options)
        return lambda denoiser, x, grid, schedule, noise=None, **kw: self.fn(denoiser, x, grid, schedule, noise,
                                                                             **{**opts, **kw})

    def merged_options(self, user_options: dict | None = None) -> dict:
        allowed = _option_names(self.fn)
        for key in user_options or {}:
            if key not in allowed:
                raise UserError(f"sampling.sampler_options.{self.name}: unknown option '{key}' "
                                f"(known: {sorted(allowed)})")
        return {**self.options, **(user_options or {})}


@lru_cache(maxsize=None)
def _option_names(fn: Callable) -> frozenset:
    """A sampler's user options: its keyword parameters (signature read once; it is on every run's path)."""
    return frozenset(inspect.signature(fn).parameters) - {"denoiser", "x", "grid", "schedule", "noise", "trajectory"}


def _spec(name, fn, coords, per_step, design_order, variable, grid, **kw):
    stochastic = kw.pop("stochastic", False)
    return SamplerSpec(name, fn, coords, per_step, design_order, variable, grid, stochastic, kw)


SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in [
    _spec("ddpm", S.ddim, "model", 1, 1, "weak, λ", "uniform_t", stochastic=True, eta=1.0),
    _spec("ddim", S.ddim, "model", 1, 1, "λ (any grid)", "uniform_t", eta=0.0),
    _spec("ode_euler", S.euler, "model", 1, 1, "model t", "uniform_t"),
    _spec("sde_euler", S.sde_euler, "model", 1, 1, "weak, model t", "uniform_t", stochastic=True),
    _spec("flow_euler", S.ddim, "flow", 1, 1, "flow t", "uniform_t", eta=0.0),
    _spec("euler", S.euler, "edm", 1, 1, "σ (EDM ρ grid)", "edm"),
    _spec("heun", S.heun, "edm", 2, 2, "σ (EDM ρ grid)", "edm"),
    _spec("dpm2", S.dpm_singlestep, "edm", 2, 2, "λ", "logsnr", order=2, predict_x0=False),
    _spec("dpm3", S.dpm_singlestep, "edm", 3, 3, "λ", "logsnr", order=3, predict_x0=False),
    _spec("dpmpp2s", S.dpm_singlestep, "edm", 2, 2, "λ", "logsnr", order=2, predict_x0=True),
    _spec("dpmpp2m", S.dpmpp_multistep, "edm", 1, 2, "λ", "logsnr", order=2),
    _spec("dpmpp3m", S.dpmpp_multistep, "edm", 1, 2, "λ (published 3M update; taylor_d2=True: 3)", "logsnr", order=3),
    _spec("deis", S.deis, "edm", 1, 4, "τ (fitted VP time), measured on logsnr", "time_uniform", order=3),
    _spec("ipndm", S.ipndm, "edm", 1, 2, "σ on non-uniform grids (4 only on uniform grids)", "edm", max_order=4),
    _spec("ipndm_v", S.ipndm_v, "edm", 1, 3, "σ (EDM ρ grid)", "edm", max_order=4),
    _spec("unipc", S.unipc, "edm", 1, 4, "λ (UniPC-3 + corrector = 4)", "logsnr", order=3, variant="bh2"),
]}


def get_sampler(name: str) -> SamplerSpec:
    if name not in SAMPLERS:
        raise UserError(f"unknown sampler '{name}' (known: {sorted(SAMPLERS)})")
    return SAMPLERS[name]

"""`SAMPLERS[name]`: each sampler's function, fixed options, native coordinates, NFE per step and design order.

Coordinates: "model" = the model's own schedule (DDPM/DDIM/NI's ODE and SDE Euler), "edm" = VE coordinates t = σ_ve
(the GEO toolbox samplers), "flow" = rectified-flow time (flow Euler). The sweep reschedules the denoiser and the grid
into them. NFE n → K steps: n = e·K − [afs] + [denoise_to_zero] (GEO §2.10; the rule is `diffrepro.nfe`, shared
with the params check), where e = the evaluations per step
under the options in force (`evals_per_step`: e.g. `order` of a singlestep DPM-Solver, the base of an AMED-Plugin);
an n with no integer K is skipped, never rounded; `afs: auto` takes AFS exactly where the NFE needs it
(`concrete_options`). The call counter (`CountingDenoiser`) is the judge: every
(sampler, option) pair is run through it in tests/test_samplers.py.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

from .. import nfe as nfe_rules
from ..errors import UserError
from . import amed as A
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
    # evaluations per step as a function of the merged options (None: always `nfe_per_step`)
    per_step_rule: Callable[[dict], int] | None = None

    def evals_per_step(self, options: dict | None = None) -> int:
        """Denoiser calls per step with `options` (user options, merged over the fixed ones)."""
        opts = self.merged_options(options)
        return int(self.per_step_rule(opts)) if self.per_step_rule else self.nfe_per_step

    def concrete_options(self, nfe: int, options: dict | None = None) -> dict:
        """`options` with `afs: auto` resolved for `nfe`: AFS exactly where `nfe` is reachable only with it (the odd
        NFE of a two-call step, as in the AMED tables, GEO §2.10); other options unchanged."""
        opts = dict(options or {})
        if opts.get("afs") == "auto":
            merged = self.merged_options(opts)
            opts["afs"] = nfe_rules.resolve_afs("auto", nfe, self.evals_per_step(opts),
                                                bool(merged.get("denoise_to_zero", False)))
        return opts

    def _accounting(self, afs, denoise_to_zero, options) -> tuple[int, bool, bool]:
        opts = self.merged_options(options)
        if afs is None and opts.get("afs") == "auto":
            raise ValueError(f"{self.name}: afs='auto' is decided per NFE (concrete_options), not per step count")
        afs = bool(opts.get("afs", False)) if afs is None else bool(afs)
        dz = bool(opts.get("denoise_to_zero", False)) if denoise_to_zero is None else bool(denoise_to_zero)
        return self.evals_per_step(options), afs, dz

    def steps_for_nfe(self, nfe: int, afs: bool | None = None, denoise_to_zero: bool | None = None, *,
                      options: dict | None = None) -> int | None:
        """K steps realising exactly `nfe` denoiser calls with `options`, or None if no integer K does.
        `afs` / `denoise_to_zero` given explicitly win over the options' values; `afs: auto` is resolved for `nfe`."""
        per_step, afs, dz = self._accounting(afs, denoise_to_zero, self.concrete_options(nfe, options))
        return nfe_rules.steps_for_nfe(nfe, per_step, afs, dz)

    def nfe_for_steps(self, steps: int, afs: bool | None = None, denoise_to_zero: bool | None = None, *,
                      options: dict | None = None) -> int:
        per_step, afs, dz = self._accounting(afs, denoise_to_zero, options)
        return nfe_rules.nfe_for_steps(steps, per_step, afs, dz)

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
        if (user_options or {}).get("afs", False) not in (True, False, "auto"):
            raise UserError(f"sampling.sampler_options.{self.name}.afs must be true, false or 'auto', "
                            f"got {user_options['afs']!r}")
        return {**self.options, **(user_options or {})}


@lru_cache(maxsize=None)
def _option_names(fn: Callable) -> frozenset:
    """A sampler's user options: its keyword parameters (signature read once; it is on every run's path)."""
    return frozenset(inspect.signature(fn).parameters) - {"denoiser", "x", "grid", "schedule", "noise", "trajectory"}


def _spec(name, fn, coords, per_step, design_order, variable, grid, **kw):
    stochastic = kw.pop("stochastic", False)
    rule = kw.pop("per_step_rule", None)
    return SamplerSpec(name, fn, coords, per_step, design_order, variable, grid, stochastic, kw, rule)


def _by_order(opts: dict) -> int:
    """Singlestep DPM-Solver(++)-k: k evaluations per step (NI §4.7–4.8)."""
    return int(opts.get("order", 1))


SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in [
    _spec("ddpm", S.ddim, "model", 1, 1, "weak, λ", "uniform_t", stochastic=True, eta=1.0),
    _spec("ddim", S.ddim, "model", 1, 1, "λ (any grid)", "uniform_t", eta=0.0),
    _spec("ode_euler", S.euler, "model", 1, 1, "model t", "uniform_t"),
    _spec("sde_euler", S.sde_euler, "model", 1, 1, "weak, model t", "uniform_t", stochastic=True),
    _spec("flow_euler", S.ddim, "flow", 1, 1, "flow t", "uniform_t", eta=0.0),
    _spec("euler", S.euler, "edm", 1, 1, "σ (EDM ρ grid)", "edm"),
    _spec("heun", S.heun, "edm", 2, 2, "σ (EDM ρ grid)", "edm"),
    _spec("rk4", S.rk4, "edm", 4, 4, "σ (EDM ρ grid)", "edm"),
    _spec("dpm2", S.dpm_singlestep, "edm", 2, 2, "λ", "logsnr", order=2, predict_x0=False, per_step_rule=_by_order),
    _spec("dpm3", S.dpm_singlestep, "edm", 3, 3, "λ", "logsnr", order=3, predict_x0=False, per_step_rule=_by_order),
    _spec("dpmpp2s", S.dpm_singlestep, "edm", 2, 2, "λ", "logsnr", order=2, predict_x0=True, per_step_rule=_by_order),
    _spec("dpmpp3s", S.dpm_singlestep, "edm", 3, 3, "λ", "logsnr", order=3, predict_x0=True, per_step_rule=_by_order),
    _spec("dpmpp2m", S.dpmpp_multistep, "edm", 1, 2, "λ", "logsnr", order=2),
    _spec("dpmpp3m", S.dpmpp_multistep, "edm", 1, 2, "λ (published 3M update; taylor_d2=True: 3)", "logsnr", order=3),
    _spec("deis", S.deis, "edm", 1, 4, "τ (fitted VP time), measured on logsnr", "time_uniform", order=3),
    _spec("ipndm", S.ipndm, "edm", 1, 2, "σ on non-uniform grids (4 only on uniform grids)", "edm", max_order=4),
    _spec("ipndm_v", S.ipndm_v, "edm", 1, 3, "σ (EDM ρ grid)", "edm", max_order=4),
    _spec("unipc", S.unipc, "edm", 1, 4, "λ (UniPC-3 + corrector = 4)", "logsnr", order=3, variant="bh2"),
    # AMED (GEO §3.3): the decisions r / scale_dir / scale_time are options (fixed or from a trained predictor)
    _spec("amed", A.amed_solver, "edm", 2, 2, "λ (r = ½, c = g = 1: DPM-Solver-2)", "logsnr"),
]}

AMED_PLUGIN_BASES = ("ipndm", "dpmpp3m", "euler", "dpm2")


def _plugin_spec(base: SamplerSpec) -> SamplerSpec:
    """AMED-Plugin on `base`: each base interval becomes two base steps, so 2× the base's evaluations per interval."""
    per_interval = 2 * base.evals_per_step()
    fn = A.make_plugin(base.fn, dict(base.options), base.name)
    return SamplerSpec(f"amed_plugin_{base.name}", fn, base.coords, per_interval, base.order,
                       f"{base.variable} (split grid)", base.default_grid)


SAMPLERS.update({f"amed_plugin_{b}": _plugin_spec(SAMPLERS[b]) for b in AMED_PLUGIN_BASES})
AMED_SAMPLERS = ("amed",) + tuple(f"amed_plugin_{b}" for b in AMED_PLUGIN_BASES)


# Natural Inference matrices as samplers (NI §3.1): `ni_tuned` (fitted by ni.search, NI §5.4/§9), `ni_sharp`
# (ni.sharpness, NI §5.3) and `ni_file_<name>` (ni.files.matrices.<name>). The grid and NFE are the matrix's own, so
# each sweep cell passes its matrix (option `matrix`); they are reached through `get_sampler`, not listed in SAMPLERS,
# whose entries run on any grid.
MATRIX_SAMPLERS = ("ni_tuned", "ni_sharp")
STORED_MATRIX_PREFIX = "ni_file_"


def is_matrix_sampler(name: str) -> bool:
    return name in MATRIX_SAMPLERS or (name.startswith(STORED_MATRIX_PREFIX) and len(name) > len(STORED_MATRIX_PREFIX))


@lru_cache(maxsize=None)
def _matrix_spec(name: str) -> SamplerSpec:
    return SamplerSpec(name, S.coefficient_matrix, "model", 1, float("nan"), "the matrix's own nodes", "matrix")


def get_sampler(name: str) -> SamplerSpec:
    if name in SAMPLERS:
        return SAMPLERS[name]
    if is_matrix_sampler(name):
        return _matrix_spec(name)
    raise UserError(f"unknown sampler '{name}' (known: {sorted(SAMPLERS)}; coefficient matrices: "
                    f"{', '.join(MATRIX_SAMPLERS)}, {STORED_MATRIX_PREFIX}<name>)")

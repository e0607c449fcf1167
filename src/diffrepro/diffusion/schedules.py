"""Noise schedules x_t = α(t)·x0 + σ(t)·ε, with the half log-SNR λ(t) = log α(t) − log σ(t) and its inverse.

Conventions (ARCHITECTURE "one vocabulary"): `t` is continuous; t = 0 is clean data (α = 1, σ = 0) for every VP
schedule. The EDM/VE schedule uses t = σ itself (α = 1). All arithmetic is float64; methods accept a Python float
(returning a float) or a tensor (returning a float64 tensor).

Sources: NI spec §1.1–1.3 (discrete VP, linear VP, flow matching), GEO spec §1.1–1.3 (EDM/VE, VP↔VE wrapping),
improved-DDPM cosine schedule.
"""
from __future__ import annotations

import math
from typing import Union

import torch

from ..errors import UserError

Time = Union[float, torch.Tensor]
F64 = torch.float64


def _as_t(t: Time) -> tuple[torch.Tensor, bool]:
    scalar = not isinstance(t, torch.Tensor)
    return torch.as_tensor(t, dtype=F64), scalar


def _out(v: torch.Tensor, scalar: bool) -> Time:
    return float(v) if scalar else v


def _vp_log_alpha_from_lambda(lam: torch.Tensor) -> torch.Tensor:
    # α² + σ² = 1 and λ = log α − log σ  ⇒  log α = −½·log(1 + e^{−2λ}) = −½·softplus(−2λ)
    return -0.5 * torch.nn.functional.softplus(-2.0 * lam)


class Schedule:
    """Base class. Subclasses define log α, log σ, λ⁻¹ and the two time derivatives used by SDE/ODE-in-t samplers."""

    name: str = "base"
    t_min: float = 1e-3  # default end of sampling
    t_max: float = 1.0   # default start of sampling
    t_upper: float = 1.0  # end of the domain of t (pure noise or beyond any trained level)
    variance_preserving: bool = True

    # --- to implement -------------------------------------------------------------------------------------------
    def _log_alpha(self, t: torch.Tensor) -> torch.Tensor: raise NotImplementedError
    def _log_sigma(self, t: torch.Tensor) -> torch.Tensor: raise NotImplementedError
    def _t_from_lambda(self, lam: torch.Tensor) -> torch.Tensor: raise NotImplementedError
    def _dlog_alpha_dt(self, t: torch.Tensor) -> torch.Tensor: raise NotImplementedError
    def _dlambda_dt(self, t: torch.Tensor) -> torch.Tensor: raise NotImplementedError

    # --- public API ---------------------------------------------------------------------------------------------
    def log_alpha(self, t: Time) -> Time:
        v, s = _as_t(t); return _out(self._log_alpha(v), s)

    def log_sigma(self, t: Time) -> Time:
        v, s = _as_t(t); return _out(self._log_sigma(v), s)

    def alpha(self, t: Time) -> Time:
        v, s = _as_t(t); return _out(torch.exp(self._log_alpha(v)), s)

    def sigma(self, t: Time) -> Time:
        v, s = _as_t(t); return _out(torch.exp(self._log_sigma(v)), s)

    def lambda_(self, t: Time) -> Time:
        """Half log-SNR λ = log(α/σ) (DPM-Solver's λ); +inf at t = 0."""
        v, s = _as_t(t); return _out(self._log_alpha(v) - self._log_sigma(v), s)

    def t_from_lambda(self, lam: Time) -> Time:
        v, s = _as_t(lam); return _out(self._t_from_lambda(v), s)

    def sigma_ve(self, t: Time) -> Time:
        """EDM-equivalent noise level σ/α (GEO §1.3: x_ve = x/α = x0 + (σ/α)·ε)."""
        v, s = _as_t(t); return _out(torch.exp(self._log_sigma(v) - self._log_alpha(v)), s)

    def t_from_sigma_ve(self, sigma_ve: Time) -> Time:
        v, s = _as_t(sigma_ve); return _out(self._t_from_lambda(-torch.log(v)), s)

    def f(self, t: Time) -> Time:
        """Drift coefficient of the forward SDE dx = f(t)x dt + g(t) dW: f = d log α / dt."""
        v, s = _as_t(t); return _out(self._dlog_alpha_dt(v), s)

    def g2(self, t: Time) -> Time:
        """Squared diffusion g² = dσ²/dt − 2fσ² = −2σ²·dλ/dt."""
        v, s = _as_t(t); return _out(-2.0 * torch.exp(2 * self._log_sigma(v)) * self._dlambda_dt(v), s)

    def describe(self) -> dict:
        return {"name": self.name, "t_min": self.t_min, "t_max": self.t_max}


class VPLinear(Schedule):
    """Continuous VP with linear β(t) = β0 + t(β1 − β0) (score_sde VPSDE, DPM-Solver, DEIS; NI §1.2)."""

    name = "vp_linear"

    def __init__(self, beta0: float = 0.1, beta1: float = 20.0, t_min: float = 1e-3, t_max: float = 1.0):
        self.beta0, self.beta1, self.t_min, self.t_max = float(beta0), float(beta1), float(t_min), float(t_max)

    def _log_alpha(self, t):
        return -0.25 * t**2 * (self.beta1 - self.beta0) - 0.5 * t * self.beta0

    def _log_sigma(self, t):
        return 0.5 * torch.log(-torch.expm1(2.0 * self._log_alpha(t)))

    def _t_from_lambda(self, lam):
        # NI §1.2: A = 2(β1−β0)·log(1+e^{−2λ}),  t = A / ((√(β0² + A) + β0)(β1 − β0))
        a = 2.0 * (self.beta1 - self.beta0) * torch.nn.functional.softplus(-2.0 * lam)
        return a / ((torch.sqrt(self.beta0**2 + a) + self.beta0) * (self.beta1 - self.beta0))

    def _dlog_alpha_dt(self, t):
        return -0.5 * t * (self.beta1 - self.beta0) - 0.5 * self.beta0

    def _dlambda_dt(self, t):
        return self._dlog_alpha_dt(t) / torch.exp(2 * self._log_sigma(t))

    def beta(self, t: Time) -> Time:
        v, s = _as_t(t); return _out(self.beta0 + v * (self.beta1 - self.beta0), s)

    def describe(self):
        return {**super().describe(), "beta0": self.beta0, "beta1": self.beta1}


class VPDiscrete(Schedule):
    """Discrete VP (DDPM): β_i = linspace(β_start, β_end, M), ᾱ_i = Π_{m≤i}(1 − β_m) (NI §1.1).

    Index i ∈ {0..M−1} sits at t_i = (i+1)/M; t = 0 is clean (ᾱ = 1). Between nodes log ᾱ is linear in t (the
    diff-sampler LDM wrapper, GEO §1.3). The network's integer timestep is `index(t) = t·M − 1`.
    `beta_schedule` names the β table of a published scheduler (`discrete_betas`); `betas` gives it explicitly.
    """

    name = "vp_discrete"

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 t_min: float | None = None, t_max: float = 1.0, beta_schedule: str = "linear",
                 betas: list[float] | None = None):
        self.M = int(num_timesteps)
        self.beta_start, self.beta_end = float(beta_start), float(beta_end)
        self.beta_schedule = "explicit" if betas is not None else str(beta_schedule)
        self.explicit_betas = None if betas is None else [float(b) for b in betas]
        if betas is not None:
            if len(betas) != self.M:
                raise UserError(f"vp_discrete: {len(betas)} betas for num_timesteps = {self.M}")
            betas = torch.as_tensor(self.explicit_betas, dtype=F64)
        else:
            betas = discrete_betas(self.beta_schedule, self.M, self.beta_start, self.beta_end)
        log_abar = torch.cumsum(torch.log1p(-betas), 0)
        self.t_nodes = torch.cat([torch.zeros(1, dtype=F64), torch.arange(1, self.M + 1, dtype=F64) / self.M])
        self.log_alpha_nodes = 0.5 * torch.cat([torch.zeros(1, dtype=F64), log_abar])  # decreasing in t
        self.t_min = 1.0 / self.M if t_min is None else float(t_min)
        self.t_max = float(t_max)

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.exp(2 * self.log_alpha_nodes[1:])

    def t_of_index(self, i) -> Time:
        """t for integer timestep(s) i (i = 0 is the least noisy model timestep)."""
        v, s = _as_t(i); return _out((v + 1.0) / self.M, s)

    def index(self, t: Time) -> Time:
        v, s = _as_t(t); return _out(v * self.M - 1.0, s)

    def _segment(self, t):
        pos = torch.clamp(t * self.M, 0.0, float(self.M))
        lo = torch.clamp(torch.floor(pos), 0, self.M - 1).long()
        return lo, pos - lo

    def _nodes(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.t_nodes.to(like.device), self.log_alpha_nodes.to(like.device)

    def _log_alpha(self, t):
        lo, w = self._segment(t)
        _, la = self._nodes(t)
        return la[lo] * (1 - w) + la[lo + 1] * w

    def _log_sigma(self, t):
        return 0.5 * torch.log(-torch.expm1(2.0 * self._log_alpha(t)))

    def _t_from_lambda(self, lam):
        la = _vp_log_alpha_from_lambda(lam)
        # invert the piecewise-linear, decreasing log α(t): search on the reversed (increasing) node table
        tn, nodes = (torch.flip(v, [0]) for v in self._nodes(lam))
        j = torch.clamp(torch.searchsorted(nodes, la.contiguous()), 1, self.M)
        x0, x1, t0, t1 = nodes[j - 1], nodes[j], tn[j - 1], tn[j]
        return t0 + (la - x0) * (t1 - t0) / (x1 - x0)

    def _dlog_alpha_dt(self, t):
        lo, _ = self._segment(t)
        _, la = self._nodes(t)
        return (la[lo + 1] - la[lo]) * self.M

    def _dlambda_dt(self, t):
        return self._dlog_alpha_dt(t) / torch.exp(2 * self._log_sigma(t))

    def describe(self):
        extra = {} if self.beta_schedule == "linear" else (
            {"betas": self.explicit_betas} if self.explicit_betas is not None else {"beta_schedule": self.beta_schedule})
        return {**super().describe(), "num_timesteps": self.M, "beta_start": self.beta_start,
                "beta_end": self.beta_end, **extra}


def discrete_betas(beta_schedule: str, num_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    """The β table of a DDPM-style scheduler, float64: `linear` (DDPM), `scaled_linear` (linear in √β, latent
    diffusion), `squaredcos_cap_v2` (improved DDPM's cosine ᾱ(t) = cos²(π/2·(t+s)/(1+s)), s = 0.008, with
    β_i = 1 − ᾱ((i+1)/M)/ᾱ(i/M) capped at 0.999)."""
    m = int(num_timesteps)
    if beta_schedule == "linear":
        return torch.linspace(beta_start, beta_end, m, dtype=F64)
    if beta_schedule == "scaled_linear":
        return torch.linspace(math.sqrt(beta_start), math.sqrt(beta_end), m, dtype=F64) ** 2
    if beta_schedule == "squaredcos_cap_v2":
        abar = lambda u: torch.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        u = torch.arange(m + 1, dtype=F64) / m
        return torch.clamp(1 - abar(u[1:]) / abar(u[:-1]), max=0.999)
    raise UserError(f"unknown beta_schedule '{beta_schedule}' (known: linear, scaled_linear, squaredcos_cap_v2)")


class Cosine(Schedule):
    """Improved-DDPM cosine schedule, continuous: ᾱ(t) = cos²(π/2·(t+s)/(1+s)) / cos²(π/2·s/(1+s))."""

    name = "cosine"

    def __init__(self, s: float = 0.008, t_min: float = 1e-3, t_max: float = 0.999):
        self.s, self.t_min, self.t_max = float(s), float(t_min), float(t_max)
        self._log_c0 = math.log(math.cos(math.pi / 2 * self.s / (1 + self.s)))

    def _angle(self, t):
        return math.pi / 2 * (t + self.s) / (1 + self.s)

    def _log_alpha(self, t):
        return torch.clamp(torch.log(torch.cos(self._angle(t))) - self._log_c0, max=0.0)

    def _log_sigma(self, t):
        return 0.5 * torch.log(-torch.expm1(2.0 * self._log_alpha(t)))

    def _t_from_lambda(self, lam):
        la = _vp_log_alpha_from_lambda(lam)
        t = torch.arccos(torch.exp(la + self._log_c0)) * 2 * (1 + self.s) / math.pi - self.s
        return torch.clamp(t, min=0.0)  # λ = +∞ gives t = 0 up to arccos rounding

    def _dlog_alpha_dt(self, t):
        return -torch.tan(self._angle(t)) * math.pi / (2 * (1 + self.s))

    def _dlambda_dt(self, t):
        return self._dlog_alpha_dt(t) / torch.exp(2 * self._log_sigma(t))

    def describe(self):
        return {**super().describe(), "s": self.s}


class EDM(Schedule):
    """Variance-exploding EDM form: α = 1, σ = t (GEO §1.1); default range [0.002, 80]."""

    name = "edm"
    variance_preserving = False
    t_upper = math.inf

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, sigma_data: float = 0.5):
        self.t_min, self.t_max, self.sigma_data = float(sigma_min), float(sigma_max), float(sigma_data)

    def _log_alpha(self, t):
        return torch.zeros_like(t)

    def _log_sigma(self, t):
        return torch.log(t)

    def _t_from_lambda(self, lam):
        return torch.exp(-lam)

    def _dlog_alpha_dt(self, t):
        return torch.zeros_like(t)

    def _dlambda_dt(self, t):
        return -1.0 / t

    def describe(self):
        return {**super().describe(), "sigma_data": self.sigma_data}


class FlowMatching(Schedule):
    """Rectified flow x_t = (1 − t)·x0 + t·ε: α = 1 − t, σ = t (NI §1.3). Sampling starts at t = 1 (pure noise)."""

    name = "flow"
    variance_preserving = False  # α + σ = 1, not α² + σ² = 1

    def __init__(self, t_min: float = 1e-3, t_max: float = 1.0):
        self.t_min, self.t_max = float(t_min), float(t_max)

    def _log_alpha(self, t):
        return torch.log1p(-t)

    def _log_sigma(self, t):
        return torch.log(t)

    def _t_from_lambda(self, lam):
        return torch.sigmoid(-lam)

    def _dlog_alpha_dt(self, t):
        return -1.0 / (1.0 - t)

    def _dlambda_dt(self, t):
        return -1.0 / (1.0 - t) - 1.0 / t


SCHEDULES = {"vp_linear": VPLinear, "vp_discrete": VPDiscrete, "cosine": Cosine, "edm": EDM, "flow": FlowMatching}


def make_schedule(name: str, **kwargs) -> Schedule:
    """Build a schedule by name (`vp_linear`, `vp_discrete`, `cosine`, `edm`, `flow`) with optional parameters."""
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule '{name}' (known: {sorted(SCHEDULES)})")
    try:
        return SCHEDULES[name](**kwargs)
    except TypeError as exc:
        raise UserError(f"bad options for schedule '{name}': {exc}") from None


def schedule_from_description(description: dict) -> Schedule:
    """Rebuild a schedule from its `describe()` dict (the form stored in model files)."""
    kw = dict(description)
    name = kw.pop("name")
    if name == "edm":  # EDM's sampling range is its σ range
        kw["sigma_min"], kw["sigma_max"] = kw.pop("t_min"), kw.pop("t_max")
    return make_schedule(name, **kw)


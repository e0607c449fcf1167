"""Network → denoiser adapters, classifier-free guidance, and rescheduling between noise schedules.

Every parameterisation is one affine map from the network output F to the x0-prediction (EDM's form, GEO §1.2):

    x0_hat = c_skip(t)·x_t + c_out(t)·F(c_in(t)·x_t, c_noise(t)),      x_t = α(t)·x0 + σ(t)·ε.

| name | F predicts                    | c_skip    | c_out    | c_in     | c_noise (the net's time input) |
|------|-------------------------------|-----------|----------|----------|--------------------------------|
| eps  | ε                             | 1/α       | −σ/α     | 1        | t                              |
| x0   | x0                            | 0         | 1        | 1        | t                              |
| v    | (α·ε − σ·x0)/r, r = √(α²+σ²)  | α/r²      | −σ/r     | 1        | t                              |
| edm  | (x0 − c_skip·x_t)/c_out       | c'_skip/α | c'_out   | c'_in/α  | ¼·ln σ_ve                      |

`v` is Salimans & Ho's v-prediction for VP schedules (r = 1) and its rescaled form elsewhere (for flow matching it is
not the rectified-flow velocity ε − x0). `edm` is EDM preconditioning applied in VE coordinates x_ve = x_t/α,
σ_ve = σ/α (GEO §1.3): c'_skip = σ_d²/(σ_ve²+σ_d²), c'_out = σ_ve·σ_d/√(σ_ve²+σ_d²), c'_in = 1/√(σ_ve²+σ_d²), with
σ_d = sigma_data (0.5 by default, or the schedule's own `sigma_data`).

The network is called as `net(c_in·x_t, c_noise_batch, y)`: for eps/x0/v its time input is the schedule's own t
(a [B] float tensor), for edm it is ¼·ln σ_ve. Training regresses F on `parameterisation_target(...)`, so a trainer
and a sampler that both use this module agree by construction.
"""
from __future__ import annotations

import math
from typing import Callable, Union

import torch

from ..errors import UserError
from .schedules import Schedule

PARAMETERISATIONS = ("eps", "x0", "v", "edm")
Time = Union[float, torch.Tensor]
Denoiser = Callable[..., torch.Tensor]


def _check(parameterisation: str) -> None:
    if parameterisation not in PARAMETERISATIONS:
        raise UserError(f"unknown parameterisation '{parameterisation}' (known: {list(PARAMETERISATIONS)})")


def preconditioning(parameterisation: str, schedule: Schedule, t: Time, sigma_data: float | None = None):
    """(c_skip, c_out, c_in, c_noise) at t (floats for a float t, float64 tensors shaped like t otherwise)."""
    _check(parameterisation)
    scalar = not isinstance(t, torch.Tensor)
    tt = torch.as_tensor(t, dtype=torch.float64)
    a, s = schedule.alpha(tt), schedule.sigma(tt)
    one = torch.ones_like(tt)
    if parameterisation == "eps":
        c = (1 / a, -s / a, one, tt)
    elif parameterisation == "x0":
        c = (0 * one, one, one, tt)
    elif parameterisation == "v":
        r2 = a**2 + s**2
        c = (a / r2, -s / torch.sqrt(r2), one, tt)
    else:
        sd = float(getattr(schedule, "sigma_data", 0.5) if sigma_data is None else sigma_data)
        s_ve = s / a
        norm = torch.sqrt(s_ve**2 + sd**2)
        c = (sd**2 / norm**2 / a, s_ve * sd / norm, 1 / (norm * a), 0.25 * torch.log(s_ve))
    values = tuple(float(v) for v in c) if scalar else c
    if not (all(math.isfinite(v) for v in values) if scalar else bool(torch.isfinite(torch.stack(c)).all())):
        raise ValueError(f"parameterisation '{parameterisation}' is undefined at t={t} of schedule "
                         f"'{schedule.name}' (α={schedule.alpha(t)}, σ={schedule.sigma(t)}): pick t with α, σ > 0")
    return values


def _bcast(c, like: torch.Tensor):
    """A per-sample coefficient [B] → broadcastable against like [B, ...] (floats pass through)."""
    if isinstance(c, float):
        return c
    return c.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def network_inputs(parameterisation: str, x_t: torch.Tensor, schedule: Schedule, t: Time, sigma_data=None):
    """What the network sees: (c_in·x_t, time input [B] as x_t's dtype)."""
    _, _, c_in, c_noise = preconditioning(parameterisation, schedule, t, sigma_data)
    time = torch.as_tensor(c_noise, dtype=x_t.dtype, device=x_t.device).expand(len(x_t)) if isinstance(c_noise, float) \
        else c_noise.to(device=x_t.device, dtype=x_t.dtype).reshape(len(x_t))
    return _bcast(c_in, x_t) * x_t, time


def network_output_to_x0(parameterisation: str, net_out: torch.Tensor, x_t: torch.Tensor, schedule: Schedule,
                         t: Time, sigma_data=None) -> torch.Tensor:
    """x0_hat = c_skip·x_t + c_out·F."""
    c_skip, c_out, _, _ = preconditioning(parameterisation, schedule, t, sigma_data)
    return _bcast(c_skip, x_t) * x_t + _bcast(c_out, x_t) * net_out


def parameterisation_target(parameterisation: str, x0: torch.Tensor, eps: torch.Tensor, schedule: Schedule,
                            t: Time, sigma_data=None) -> torch.Tensor:
    """Regression target for F given x_t = α·x0 + σ·ε: (x0 − c_skip·x_t)/c_out, written as a·x0 + b·ε with a, b
    computed in float64 (so the ε target of an eps-network is ε to rounding, with no cancellation at small σ)."""
    c_skip, c_out, _, _ = preconditioning(parameterisation, schedule, t, sigma_data)
    tt = t if not isinstance(t, torch.Tensor) else t.to(torch.float64)
    a_x0 = (1 - c_skip * schedule.alpha(tt)) / c_out
    b_eps = -c_skip * schedule.sigma(tt) / c_out
    return _bcast(a_x0, x0) * x0 + _bcast(b_eps, x0) * eps


def _labels_for(labels, batch: int, device) -> torch.Tensor:
    y = torch.as_tensor(labels, dtype=torch.long, device=device).reshape(-1)
    if len(y) == 1:
        y = y.expand(batch)
    if len(y) != batch:
        raise ValueError(f"{len(y)} labels for a batch of {batch}")
    return y


class TimeTable:
    """The float scalars an adapter needs at a time t, computed once per t and, by `prepare`, for a whole grid in one
    float64 evaluation. `fn(t)` takes a float or a float64 tensor of times and returns a tuple of floats or tensors
    (the schedules and `preconditioning` do both). Per-call float64 tensor work would otherwise cost more than the
    sampler's own arithmetic (tens of small kernel launches per step: GPU forwards are a few ms)."""

    max_size = 1 << 16

    def __init__(self, fn: Callable):
        self.fn = fn
        self.values: dict[float, tuple[float, ...]] = {}

    def __call__(self, t: float) -> tuple[float, ...]:
        v = self.values.get(t)
        if v is None:
            if len(self.values) >= self.max_size:
                self.values.clear()
            v = self.values[t] = tuple(float(c) for c in self.fn(t))
        return v

    def prepare(self, times) -> None:
        """Fill the table for `times` at once; a time where `fn` is undefined is left to raise where it is used."""
        new = [t for t in dict.fromkeys(float(t) for t in times) if t not in self.values]
        if not new:
            return
        try:
            columns = self.fn(torch.tensor(new, dtype=torch.float64))
        except ValueError:
            return
        rows = torch.stack([torch.as_tensor(c, dtype=torch.float64).expand(len(new)) for c in columns], 1)
        self.values.update(zip(new, map(tuple, rows.tolist())))


def prepare(denoiser, times) -> None:
    """Tell a denoiser (chain) the times it is about to be called at, so it computes their scalars in one go;
    a no-op for denoisers that keep no such table."""
    fn = getattr(denoiser, "prepare", None)
    if fn is not None:
        fn([float(t) for t in times])


class NetworkDenoiser:
    """`D(x, t: float) -> x0_hat` around `net(x, t_batch, y=None)` (see `network_denoiser`)."""

    def __init__(self, net, schedule: Schedule, parameterisation: str, labels=None,
                 guidance_scale: float | None = None, null_label: int | None = None, sigma_data: float | None = None,
                 grad: bool = False):
        _check(parameterisation)
        if guidance_scale is not None and guidance_scale != 1.0 and (labels is None or null_label is None):
            raise UserError("classifier-free guidance needs class labels and the null label")
        self.net, self.labels, self.guidance_scale, self.null_label = net, labels, guidance_scale, null_label
        params = next(iter(net.parameters()), None) if isinstance(net, torch.nn.Module) else None
        self.net_dtype = params.dtype if params is not None else None
        self.parameterisation, self.schedule, self.sigma_data, self.grad = parameterisation, schedule, sigma_data, grad
        self.coefficients = TimeTable(lambda t: preconditioning(parameterisation, schedule, t, sigma_data))

    def prepare(self, times) -> None:
        self.coefficients.prepare(times)

    def _call(self, x_in, time, y):
        if self.net_dtype is not None and self.net_dtype != x_in.dtype:
            x_in, time = x_in.to(self.net_dtype), time.to(self.net_dtype)
        return self.net(x_in, time, y) if y is not None else self.net(x_in, time)

    def __call__(self, x: torch.Tensor, t: float) -> torch.Tensor:
        if not self.grad and torch.is_grad_enabled():
            with torch.no_grad():
                return self(x, t)
        if isinstance(t, torch.Tensor) and t.numel() > 1:  # per-sample times: the general (uncached) path
            x_in, time = network_inputs(self.parameterisation, x, self.schedule, t, self.sigma_data)
            out = self._forward(x_in, time, len(x), x.device).to(x.dtype)
            return network_output_to_x0(self.parameterisation, out, x, self.schedule, t, self.sigma_data)
        c_skip, c_out, c_in, c_noise = self.coefficients(float(t))
        x_in = x if c_in == 1.0 else c_in * x  # c_in·x_t (1·x is x to the bit)
        batch = x.shape[0]
        out = self._forward(x_in, torch.full((batch,), c_noise, dtype=x.dtype, device=x.device), batch, x.device)
        if out.dtype != x.dtype:
            out = out.to(x.dtype)
        return c_skip * x + c_out * out  # network_output_to_x0

    def _forward(self, x_in, time, batch: int, device):
        """The network output F, unconditional, conditional or guided (one doubled batch)."""
        labels, w = self.labels, self.guidance_scale
        if labels is None:
            return self._call(x_in, time, None)
        y_c = _labels_for(labels, batch, device)
        if w is None or w == 1.0:
            return self._call(x_in, time, y_c)
        y_u = torch.full_like(y_c, int(self.null_label))
        both = self._call(torch.cat([x_in, x_in]), torch.cat([time, time]), torch.cat([y_c, y_u]))
        out_c, out_u = both.chunk(2)
        return out_u + w * (out_c - out_u)


def network_denoiser(net, schedule: Schedule, parameterisation: str, labels=None, guidance_scale: float | None = None,
                     null_label: int | None = None, sigma_data: float | None = None, grad: bool = False) -> Denoiser:
    """Wrap `net(x, t_batch, y=None)` into `D(x, t: float) -> x0_hat` (runs under torch.no_grad unless `grad`).

    labels: None (unconditional), an int or a [B] int64 tensor of class labels.
    guidance_scale w (classifier-free guidance, needs labels and null_label): x0 = x0_u + w·(x0_c − x0_u), computed
    from one doubled batch; w = 1 (or None) is the plain conditional model. Guidance on x0 equals guidance on ε, v or
    F, since each is affine in F with the same x_t. The inputs and output map are `network_inputs` and
    `network_output_to_x0`, with their coefficients kept per t (`TimeTable`).
    """
    return NetworkDenoiser(net, schedule, parameterisation, labels, guidance_scale, null_label, sigma_data, grad)


def _noise_key(schedule: Schedule) -> tuple:
    """What determines α(t), σ(t) (sampling range and σ_data do not)."""
    return type(schedule), tuple(sorted((k, v) for k, v in schedule.describe().items()
                                        if k not in ("t_min", "t_max", "sigma_data")))


class Rescheduled:
    """`reschedule`'s result: D_dst(x, t) = D_src(x·scale(t), t_src(t)), (t_src, scale) kept per t (`TimeTable`)."""

    def __init__(self, denoiser: Denoiser, src: Schedule, dst: Schedule):
        self.denoiser, self.src, self.dst = denoiser, src, dst
        self.times = TimeTable(self._map)

    def _map(self, t):
        """(t_src, α_src(t_src)/α_dst(t)) for a float or a float64 tensor of dst times; ValueError where undefined."""
        src, dst, upper = self.src, self.dst, self.src.t_upper
        tt = torch.as_tensor(t, dtype=torch.float64)
        a_dst = torch.as_tensor(dst.alpha(tt), dtype=torch.float64)
        t_src = torch.as_tensor(src.t_from_lambda(dst.lambda_(tt)), dtype=torch.float64)
        ok = (a_dst > 0.0) & (t_src >= -1e-9) & (t_src <= upper + 1e-9)  # also catches NaN
        if not bool(ok.all()):
            i = int((~ok.reshape(-1)).nonzero()[0])
            bad, bad_src = float(tt.reshape(-1)[i]), float(t_src.reshape(-1)[i])
            if not float(a_dst.reshape(-1)[i]) > 0.0:
                raise ValueError(f"reschedule {src.name}→{dst.name}: α_{dst.name}({bad}) = 0 (pure noise) has no "
                                 f"equivalent time in '{src.name}'; start the {dst.name} grid at t < {bad}")
            raise ValueError(f"reschedule {src.name}→{dst.name}: t={bad} maps to t_src={bad_src}, outside "
                             f"'{src.name}' range [0, {upper}]")
        t_src = torch.clamp(t_src, 0.0, upper)
        return t_src, torch.as_tensor(src.alpha(t_src), dtype=torch.float64) / a_dst

    def prepare(self, times) -> None:
        self.times.prepare(times)
        known = self.times.values
        prepare(self.denoiser, [known[float(t)][0] for t in times if float(t) in known])

    def __call__(self, x, t: float, **kwargs):
        t_src, scale = self.times(float(t))
        return self.denoiser(x * scale, t_src, **kwargs)


def reschedule(denoiser: Denoiser, src: Schedule, dst: Schedule) -> Denoiser:
    """Turn a denoiser written for schedule `src` into one for `dst` (DEVELOPING "Rescheduling").

    Equal λ is the same noise level, so D_dst(x, t) = D_src(x·α_src/α_dst, t_src) with t_src = src.t_from_λ(dst.λ(t)).
    Only `x * float` touches the state, so linear forms pass through. Refused (ValueError): a dst time with α_dst = 0
    (pure noise, λ = −∞, e.g. flow or cosine at t = 1) unless both schedules are the same, and a noise level outside
    src's time range [0, 1] (VP/flow) — such a model was never trained there. Extra keyword arguments (e.g. y=) pass
    through to the wrapped denoiser. A denoiser with an `on_schedule(dst)` method (one defined on the VE state
    x/α and σ/α, such as an EDM-format network's) is asked for its own dst form instead: no rescaling in between.
    """
    if _noise_key(src) == _noise_key(dst):
        return denoiser
    on_schedule = getattr(denoiser, "on_schedule", None)  # a denoiser that can express itself in dst directly
    return on_schedule(dst) if on_schedule is not None else Rescheduled(denoiser, src, dst)

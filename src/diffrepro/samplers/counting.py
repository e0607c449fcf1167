"""NFE is counted by wrapping the denoiser, never by formula (docs/DEVELOPING.md "Samplers")."""
from __future__ import annotations

from ..diffusion.denoisers import prepare


class CountingDenoiser:
    """`D(x, t)` that forwards to `denoiser` and counts the calls in `.nfe` (optionally recording the times)."""

    def __init__(self, denoiser, record_times: bool = False):
        self.denoiser = denoiser
        self.nfe = 0
        self.times: list[float] | None = [] if record_times else None

    def __call__(self, x, t, **kwargs):
        self.nfe += 1
        if self.times is not None:
            self.times.append(float(t))
        return self.denoiser(x, t, **kwargs)

    def prepare(self, times) -> None:
        """Forward the grid to the wrapped denoiser's per-time tables (`denoisers.prepare`); counts nothing."""
        prepare(self.denoiser, times)

    def reset(self) -> None:
        self.nfe = 0
        if self.times is not None:
            self.times.clear()


class _NoNoise:
    def draw(self, like):
        return like * 0.0


def evaluation_times(sampler_fn, grid, schedule) -> list[float]:
    """The times `sampler_fn(denoiser, x, grid, schedule, noise)` calls its denoiser at, found by running it once on
    a float state (the sampler contract's arithmetic works on any state type; no data-dependent branches), so a
    denoiser chain can compute every time's scalars in one go (`CountingDenoiser.prepare`). A sampler that refuses
    float states (thresholding) gives the grid."""
    times: list[float] = []

    def record(x, t, **kwargs):
        times.append(float(t))
        return x * 0.0

    try:
        sampler_fn(record, 1.0, grid, schedule, _NoNoise())
    except Exception:  # noqa: BLE001 - a hint only: the real run raises what is wrong
        return [float(t) for t in grid]
    return times

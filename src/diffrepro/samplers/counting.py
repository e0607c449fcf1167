"""NFE is counted by wrapping the denoiser, never by formula (docs/DEVELOPING.md "Samplers")."""
from __future__ import annotations


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

    def reset(self) -> None:
        self.nfe = 0
        if self.times is not None:
            self.times.clear()

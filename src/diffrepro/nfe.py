"""Denoiser-call accounting, shared by the sampler registry and the torch-free params check (GEO §2.10).

A sampler with e evaluations per step, K steps, the analytical first step (AFS: the first call replaced by
ε ≈ x/√(α²+σ²)) and the optional final denoising call makes n = e·K − [afs] + [denoise_to_zero] calls. An n with no
whole K is skipped, never rounded. `afs: auto` uses AFS exactly where n needs it (the odd NFE of a two-call step, as
in the AMED tables).
"""
from __future__ import annotations


def resolve_afs(afs, nfe: int, per_step: int, denoise_to_zero: bool = False) -> bool:
    """`afs` as a bool for `nfe`: 'auto' → True exactly where no whole number of steps reaches `nfe` without AFS."""
    if afs == "auto":
        return steps_for_nfe(nfe, per_step, False, denoise_to_zero) is None
    return bool(afs)


def steps_for_nfe(nfe: int, per_step: int, afs=False, denoise_to_zero: bool = False) -> int | None:
    """K steps making exactly `nfe` denoiser calls (None if no whole K does); `afs` may be 'auto'."""
    afs = resolve_afs(afs, nfe, per_step, denoise_to_zero)
    n = int(nfe) + int(afs) - int(bool(denoise_to_zero))
    return n // per_step if n >= per_step and n % per_step == 0 else None


def nfe_for_steps(steps: int, per_step: int, afs: bool = False, denoise_to_zero: bool = False) -> int:
    return per_step * int(steps) - int(bool(afs)) + int(bool(denoise_to_zero))

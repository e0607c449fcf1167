"""Layer 2: time grids, GITS, every sampler, the reference solution and the sampler registry.

Public API (docs/DEVELOPING.md "Samplers"):
- `SAMPLERS[name]` / `get_sampler(name)` → `SamplerSpec` (fn, coords "model"|"edm"|"flow", nfe_per_step, order,
  default_grid, stochastic, fixed options); `spec.bind(options)(denoiser, x, grid, schedule, noise)` runs it on
  tensors or on `natural_inference.linear_form.LinearForm` states; `spec.steps_for_nfe(nfe, afs, denoise_to_zero)`.
- `make_grid(name, schedule, steps, **options)`, `convert_grid(grid, src, dst)`, `GRIDS`; `GITS(...)(steps)`.
- `CountingDenoiser`, `TorchNoise`; `sweep.run_cell`, `sweep.native_schedule`, `sweep.initial_noise`;
  `reference.reference_solution`, `reference.self_consistency`.
"""
from .counting import CountingDenoiser
from .gits import GITS
from .grids import GRIDS, convert_grid, make_grid
from .registry import SAMPLERS, SamplerSpec, get_sampler
from .solvers import TorchNoise

__all__ = ["SAMPLERS", "SamplerSpec", "get_sampler", "GRIDS", "make_grid", "convert_grid", "CountingDenoiser",
           "TorchNoise", "GITS"]

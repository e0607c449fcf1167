"""Layer 3: Natural Inference (Rethinking Diffusion Model in High Dimension: the coefficient-matrix framework).

Every sampler of the library, run on linear forms, yields its coefficient matrices (C, B, nodes) (`tracer`); the
executor replays any triple with a denoiser and a noise stream (`executor`); `search` tunes C under the marginal
constraints; `sharpness` holds the truncated-window / boosted-last-weight family; `study` and `plots` serve the
report section (`diffrepro ni study`).
"""
from .executor import execute, replay_plan
from .linear_form import LinearForm
from .matrix import NIMatrix
from .tracer import trace, trace_sampler

__all__ = ["LinearForm", "NIMatrix", "trace", "trace_sampler", "execute", "replay_plan"]

"""Device and performance switches (`runtime` params section) and deterministic seeding.

Every switch is a GPU optimisation that must be a no-op on CPU: bf16 autocast, channels_last memory format and
pinned host memory only act on a CUDA device. `device: cuda` without CUDA is a UserError, never a silent fallback.
"""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from .errors import UserError


def select_device(cfg_runtime: dict | None) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` without CUDA → UserError; `cpu` → CPU."""
    want = (cfg_runtime or {}).get("device", "auto")
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("runtime.device = 'cuda' but CUDA is not available on this machine (use 'auto' or 'cpu')")
    if want not in ("cpu", "cuda"):
        raise UserError(f"runtime.device = '{want}' is not one of auto, cpu, cuda")
    return torch.device(want)


def autocast(cfg_runtime: dict | None, device: torch.device):
    """bf16 autocast context when `runtime.amp_bf16` is set and the device is CUDA; a null context otherwise."""
    if (cfg_runtime or {}).get("amp_bf16", False) and torch.device(device).type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(cfg_runtime: dict | None, device: torch.device) -> torch.memory_format:
    """channels_last for 4-D activations when asked for on CUDA; contiguous otherwise."""
    if (cfg_runtime or {}).get("channels_last", False) and torch.device(device).type == "cuda":
        return torch.channels_last
    return torch.contiguous_format


def to_device(module_or_tensor, cfg_runtime: dict | None, device: torch.device):
    """Move a module (or an image batch) to `device`, in channels_last when that switch applies."""
    fmt = memory_format(cfg_runtime, device)
    if isinstance(module_or_tensor, torch.Tensor) and module_or_tensor.dim() != 4:
        return module_or_tensor.to(device)
    return module_or_tensor.to(device=device, memory_format=fmt)


def pin_memory(cfg_runtime: dict | None, device: torch.device) -> bool:
    """Whether host batches should be pinned (only meaningful for host→CUDA copies)."""
    return bool((cfg_runtime or {}).get("pin_memory", False)) and torch.device(device).type == "cuda"


def set_num_threads(cfg_runtime: dict | None, default: int | None = None) -> int:
    """Set torch's intra-op CPU threads: `runtime.num_threads`, else `default` (e.g. the rule's threads), else
    leave torch's choice. Returns the count in effect."""
    n = int((cfg_runtime or {}).get("num_threads", 0) or 0) or int(default or 0)
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def setup(cfg_runtime: dict | None, threads: int | None = None) -> torch.device:
    """Torch threads (`runtime.num_threads`, else `threads`) and the device (`runtime.device`) of one step."""
    set_num_threads(cfg_runtime, threads)
    return select_device(cfg_runtime)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and request deterministic kernels; returns a CPU generator
    seeded with `seed` for code that keeps its own stream."""
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def derive_seed(seed: int, *names: str) -> int:
    """A seed for one step derived from the master seed and a name path (stable across runs and machines)."""
    import hashlib

    blob = ":".join([str(int(seed)), *names]).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "little") % 2**63


def rng_state() -> dict:
    """Every global RNG state (for checkpoints), as tensors/tuples so `torch.load(weights_only=True)` reads it."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(state["python"][:1]) + (tuple(state["python"][1]),) + tuple(state["python"][2:]))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seeded_generator(seed: int, *labels) -> torch.Generator:
    """A CPU generator seeded from the master seed and the labels naming a cell (derive_seed)."""
    return torch.Generator().manual_seed(derive_seed(seed, *(str(v) for v in labels)))


def limit_threads(cfg: dict, threads: int | None) -> None:
    """torch intra-op threads and NumPy's BLAS pool (KID/FID kernels) to the rule's thread count.

    Oversubscribed BLAS threads on small KID kernels (subset × features) were 20× slower on a shared 2-core box.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(set_num_threads(cfg.get("runtime"), threads))

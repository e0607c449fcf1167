"""Training state that must survive a kill: EMA weights, the data order, and atomic checkpoints holding all of it."""
from __future__ import annotations

import copy
import re
from pathlib import Path

import torch

from ..errors import UserError
from ..io import write_with

CKPT_PATTERN = re.compile(r"^step_(\d{8})\.pt$")
KEEP_CHECKPOINTS = 2


class EMA:
    """Exponential moving average of the parameters: ema ← ema + (1 − decay)·(θ − ema) after every step."""

    def __init__(self, net: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self._ema_params = list(self.net.parameters())

    @torch.no_grad()
    def update(self, net: torch.nn.Module) -> None:
        torch._foreach_lerp_(self._ema_params, [p.detach() for p in net.parameters()], 1.0 - self.decay)
        for e, b in zip(self.net.buffers(), net.buffers()):
            e.copy_(b)


class DataOrder:
    """Epoch-wise random permutations of the training indices, drawn from a dedicated CPU generator; the state
    (generator, current permutation, position) is part of every checkpoint, so a resumed run sees the same batches."""

    def __init__(self, n: int, seed: int):
        self.n = n
        self.generator = torch.Generator().manual_seed(int(seed))
        self.perm = torch.randperm(n, generator=self.generator)
        self.pos = 0

    def next(self, batch: int) -> torch.Tensor:
        parts, need = [], batch
        while need > 0:
            if self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            need -= take
        return torch.cat(parts)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.perm, self.pos = state["perm"].clone(), int(state["pos"])


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return Path(ckpt_dir) / f"step_{step:08d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Checkpoints in `ckpt_dir`, oldest first (temporary files of interrupted writes are ignored)."""
    if not Path(ckpt_dir).is_dir():
        return []
    return sorted(p for p in Path(ckpt_dir).iterdir() if CKPT_PATTERN.match(p.name))


def save_checkpoint(ckpt_dir: Path, step: int, state: dict) -> Path:
    """Atomic write of `state`; keeps the newest KEEP_CHECKPOINTS files."""
    dest = write_with(checkpoint_path(ckpt_dir, step), lambda tmp: torch.save(state, tmp))
    for old in list_checkpoints(ckpt_dir)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return dest


def read_torch_file(path: Path, required: tuple[str, ...], what: str, map_location="cpu") -> dict:
    """`torch.load(weights_only=True)` with a UserError naming the file when it is missing, corrupt or incomplete."""
    from ..io import verify_checksum

    path = Path(path)
    if not path.exists():
        raise UserError(f"missing {what}: {path}")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a file")
    verify_checksum(path, what)
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, EOFError, UnpicklingError, zip errors, ...
        raise UserError(f"{what} {path} is corrupt or unreadable ({type(exc).__name__}: {exc}); delete it to "
                        f"start over") from None
    missing = [k for k in required if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise UserError(f"{what} {path} is incomplete: missing {missing}")
    bad = first_non_finite(obj)
    if bad is not None:
        raise UserError(f"{what} {path}: tensor '{bad}' holds NaN or infinite values")
    return obj


def first_non_finite(obj, prefix: str = "") -> str | None:
    """Key path of the first floating tensor with a NaN/inf inside a nested dict/list of tensors, else None."""
    if isinstance(obj, torch.Tensor):
        return prefix or "<tensor>" if obj.is_floating_point() and not torch.isfinite(obj).all() else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for k, v in items:
        found = first_non_finite(v, f"{prefix}.{k}" if prefix else str(k))
        if found is not None:
            return found
    return None

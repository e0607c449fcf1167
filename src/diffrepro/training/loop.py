"""The training loop: DSM + AdamW (linear warmup, grad clipping) + EMA, class-label dropout for CFG, tqdm progress on
stderr, and atomic checkpoints every k steps from which a killed run resumes bit-for-bit."""
from __future__ import annotations

import sys
import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import runtime
from ..config import config_hash
from ..diffusion.schedules import Schedule, make_schedule
from ..models import build_model
from .loss import dsm_loss
from ..errors import UserError
from .state import EMA, DataOrder, list_checkpoints, read_torch_file, save_checkpoint

CKPT_KEYS = ("fingerprint", "step", "model", "ema", "optimizer", "rng", "noise_generator", "data_order", "log")


def schedule_from_spec(model_spec: dict) -> Schedule:
    """The model's noise schedule from its `schedule:` params entry."""
    kw = dict(model_spec["schedule"])
    return make_schedule(kw.pop("name"), **kw)


def num_classes_of(y_train: np.ndarray) -> int:
    """Labels 0..K−1 → K; unlabelled data (all −1) → 0."""
    return int(y_train.max()) + 1 if len(y_train) and int(y_train.max()) >= 0 else 0


def learning_rate(step: int, lr: float, warmup_steps: int) -> float:
    """Linear warmup over the first `warmup_steps` steps, then constant."""
    return lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else lr


class Trainer:
    """Everything one run needs; `state_dict`/`load_state_dict` cover all of it (weights, optimiser, RNGs, data
    order)."""

    def __init__(self, name: str, spec: dict, arrays: dict, seed: int, cfg_runtime: dict | None,
                 data_sha256: str | None = None):
        self.name, self.spec, self.seed, self.cfg_runtime = name, spec, int(seed), cfg_runtime or {}
        self.device = runtime.select_device(self.cfg_runtime)
        runtime.seed_everything(runtime.derive_seed(seed, "train", name))
        self.schedule = schedule_from_spec(spec)
        self.train_cfg = spec["train"]
        x = torch.from_numpy(np.ascontiguousarray(arrays["x_train"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(arrays["y_train"], dtype=np.int64))
        self.data_shape = list(x.shape[1:])
        self.num_classes = num_classes_of(arrays["y_train"]) if spec.get("class_conditional", False) else 0
        if runtime.pin_memory(self.cfg_runtime, self.device):
            x, y = x.pin_memory(), y.pin_memory()
        self.x = runtime.to_device(x, self.cfg_runtime, self.device)  # the whole training split lives on the device
        self.y = y.to(self.device)
        net = build_model(spec, self.data_shape, self.num_classes)
        self.net = runtime.to_device(net, self.cfg_runtime, self.device).train()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=self.train_cfg["lr"],
                                     weight_decay=self.train_cfg.get("weight_decay", 0.0), foreach=True)
        self.ema = EMA(self.net, self.train_cfg.get("ema_decay", 0.999))
        self.order = DataOrder(len(x), runtime.derive_seed(seed, "train", name, "data"))
        self.noise = torch.Generator(device=self.device).manual_seed(runtime.derive_seed(seed, "train", name, "noise"))
        self.step, self.log = 0, []
        # a checkpoint resumes only the run that wrote it: same spec, seed and data
        self.fingerprint = config_hash({"name": name, "spec": spec, "seed": self.seed, "data": data_sha256})

    # --- one optimisation step ----------------------------------------------------------------------------------
    def batch(self):
        idx = self.order.next(self.train_cfg["batch_size"]).to(self.device)
        x0, y = self.x[idx], None
        if self.num_classes:
            y = self.y[idx].clone()
            drop = torch.rand(len(y), generator=self.noise, device=self.device) < self.spec.get("label_dropout", 0.1)
            y[drop] = self.num_classes  # the null label: trains the unconditional model for CFG
        return x0, y

    def train_step(self) -> torch.Tensor:
        x0, y = self.batch()
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(self.step, self.train_cfg["lr"], self.train_cfg.get("warmup_steps", 0))
        with runtime.autocast(self.cfg_runtime, self.device):
            loss = dsm_loss(self.net, x0, y, self.schedule, self.spec["parameterisation"], self.noise)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.train_cfg.get("grad_clip", 1.0) > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.train_cfg.get("grad_clip", 1.0))
        self.opt.step()
        self.ema.update(self.net)
        self.step += 1
        return loss.detach()

    # --- checkpoint state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"fingerprint": self.fingerprint, "step": self.step, "model": self.net.state_dict(),
                "ema": self.ema.net.state_dict(), "optimizer": self.opt.state_dict(), "rng": runtime.rng_state(),
                "noise_generator": self.noise.get_state(), "data_order": self.order.state_dict(), "log": self.log}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["model"])
        self.ema.net.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        runtime.set_rng_state(state["rng"])
        self.noise.set_state(state["noise_generator"])
        self.order.load_state_dict(state["data_order"])
        self.step, self.log = int(state["step"]), [list(r) for r in state["log"]]

    def resume(self, ckpt_dir: Path) -> bool:
        """Load the newest checkpoint in `ckpt_dir` if it belongs to this run (UserError when it is corrupt);
        checkpoints of another config are removed."""
        ckpts = list_checkpoints(ckpt_dir)
        if not ckpts:
            return False
        # CPU: RNG states must be CPU byte tensors; load_state_dict moves weights/optimiser state to the device
        state = read_torch_file(ckpts[-1], CKPT_KEYS, "checkpoint", map_location="cpu")
        if state["fingerprint"] != self.fingerprint:
            print(f"train {self.name}: checkpoints in {ckpt_dir} belong to another config; starting fresh",
                  file=sys.stderr)
            for p in ckpts:
                p.unlink(missing_ok=True)
            return False
        self.load_state_dict(state)
        print(f"train {self.name}: resumed from {ckpts[-1]} (step {self.step})", file=sys.stderr)
        return True

    def ema_state_dict(self) -> dict:
        return {k: v.detach().cpu().contiguous() for k, v in self.ema.net.state_dict().items()}


def train(name: str, spec: dict, arrays: dict, out_dir: str | Path, seed: int, cfg_runtime: dict | None = None,
          data_sha256: str | None = None, progress: bool = True) -> dict:
    """Train (or resume) model `name` to `spec.train.steps` steps; returns the contents of `model.pt` (not written
    here: the step writes it). Checkpoints go to `out_dir/ckpt/step_XXXXXXXX.pt`."""
    from tqdm import tqdm

    trainer = Trainer(name, spec, arrays, seed, cfg_runtime, data_sha256)
    ckpt_dir = Path(out_dir) / "ckpt"
    trainer.resume(ckpt_dir)
    cfg = trainer.train_cfg
    steps, every, log_every = cfg["steps"], cfg.get("checkpoint_every", 1000), cfg.get("log_every", 100)
    start, start_step = time.monotonic(), trainer.step
    window, count = torch.zeros((), device=trainer.device), 0
    bar = tqdm(total=steps, initial=trainer.step, desc=f"train {name}", file=sys.stderr, disable=not progress,
               mininterval=1.0, dynamic_ncols=True)
    while trainer.step < steps:
        window += trainer.train_step()
        count += 1
        bar.update(1)
        if trainer.step % log_every == 0 or trainer.step == steps:
            mean = float(window) / count  # the only host sync: once per log window
            if not math.isfinite(mean):
                raise UserError(f"train {name}: the loss became {mean} by step {trainer.step} (check "
                                f"models.{name}.train.lr / ema_decay and the data); no model.pt written")
            trainer.log.append([trainer.step, mean])
            bar.set_postfix(loss=f"{mean:.4f}")
            window, count = torch.zeros((), device=trainer.device), 0
        if trainer.step % every == 0 or trainer.step == steps:
            if count and not math.isfinite(float(window)):  # never checkpoint a diverged state (resume would keep it)
                raise UserError(f"train {name}: the loss became {float(window) / count} by step {trainer.step} "
                                f"(check models.{name}.train.lr / ema_decay and the data); no checkpoint written")
            save_checkpoint(ckpt_dir, trainer.step, trainer.state_dict())
    bar.close()
    ema = trainer.ema_state_dict()
    from .state import first_non_finite

    if first_non_finite(ema) is not None:
        raise UserError(f"train {name}: EMA weight '{first_non_finite(ema)}' is NaN or infinite after "
                        f"{trainer.step} steps (check models.{name}.train.ema_decay / lr); no model.pt written")
    return {
        "name": name, "spec": spec, "state_dict": ema, "data_shape": trainer.data_shape,
        "num_classes": trainer.num_classes, "schedule": trainer.schedule.describe(),
        "parameterisation": spec["parameterisation"], "steps": trainer.step, "loss_log": trainer.log,
        "train_wall_s": time.monotonic() - start, "steps_this_run": trainer.step - start_step,
        "device": str(trainer.device),
    }

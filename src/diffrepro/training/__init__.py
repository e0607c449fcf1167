"""Training (DSM, EMA, checkpoint/resume) and loading trained models.

`model.pt` = {name, spec, state_dict (EMA weights), data_shape, num_classes, schedule (describe()),
parameterisation, steps, loss_log, provenance, ...}. Consumers call `load_model` and `model_denoiser`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from ..models import build_model
from .loop import Trainer, num_classes_of, schedule_from_spec, train
from .state import read_torch_file

MODEL_KEYS = ("spec", "state_dict", "data_shape", "num_classes")

__all__ = ["train", "Trainer", "load_model", "read_model_file", "net_from_model_file", "model_denoiser",
           "schedule_from_spec", "num_classes_of", "check_matches_params"]


def read_model_file(path: str | Path) -> dict:
    """The raw contents of a `model.pt` (tensors on CPU); UserError naming the file when missing or corrupt."""
    return read_torch_file(Path(path), MODEL_KEYS, "model file")


def load_model(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """(network with EMA weights in eval mode on `device`, model spec). The net carries `num_classes` (the null
    label for CFG; 0 when unconditional) and `data_shape`."""
    return net_from_model_file(read_model_file(path), path, device)


def net_from_model_file(blob: dict, path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """`load_model` on contents already read by `read_model_file` (path names the file in errors)."""
    net = build_model(blob["spec"], blob["data_shape"], blob["num_classes"])
    try:
        net.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise UserError(f"model file {path} does not match its spec: {exc}") from None
    net.num_classes, net.data_shape = int(blob["num_classes"]), list(blob["data_shape"])
    return net.to(device).eval().requires_grad_(False), blob["spec"]


def differing_keys(stored: dict, wanted: dict, prefix: str = "") -> list[str]:
    """Dotted keys present in both nested dicts whose values differ (a key only one side has is not compared)."""
    out = []
    for k in sorted(set(stored) & set(wanted)):
        a, b = stored[k], wanted[k]
        if isinstance(a, dict) and isinstance(b, dict):
            out += differing_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def check_matches_params(path, stored_spec: dict, params_spec: dict, model: str) -> None:
    """UserError when a checkpoint was trained with other settings than `models.<model>` of the params file (keys
    present in both are compared, at every depth, so a key added to the schema later — or a default the schema fills
    in — does not invalidate old checkpoints)."""
    differ = differing_keys(stored_spec, params_spec)
    if differ:
        def value(d, dotted):
            for part in dotted.split("."):
                d = d[part]
            return d
        k = differ[0]
        raise UserError(f"{path} was trained with models.{model}.{k} = {value(stored_spec, k)!r}, but the params file "
                        f"has {value(params_spec, k)!r} (differing keys: {differ}); retrain it or use the matching params")


def model_denoiser(net: torch.nn.Module, spec: dict, labels=None, guidance_scale: float | None = None,
                   grad: bool = False):
    """D(x, t: float) -> x0_hat in the model's own schedule coordinates (diffusion.denoisers.network_denoiser);
    `grad` keeps autograd on (the NI search differentiates through the network)."""
    from ..diffusion.denoisers import network_denoiser

    null = getattr(net, "num_classes", 0) or None
    return network_denoiser(net, schedule_from_spec(spec), spec["parameterisation"], labels=labels,
                            guidance_scale=guidance_scale, null_label=null, grad=grad)

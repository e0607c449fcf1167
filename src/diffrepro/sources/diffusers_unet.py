"""diffusers `UNet2DModel` checkpoints (e.g. google/ddpm-cifar10-32) on the discrete VP schedule of their scheduler.

A source `path` is a UNet folder (config.json + diffusion_pytorch_model.safetensors or .bin) or a pipeline folder
holding `unet/`; the scheduler config is `scheduler_config.json` beside the UNet's config or in `../scheduler/`.
The schedule is our `vp_discrete` built from the scheduler's own β table (`beta_schedule`: linear, scaled_linear,
squaredcos_cap_v2, or `trained_betas`), so DDPM/DDIM/NI's respaced grids hit the trained timesteps exactly. The UNet
is called `unet(x_t, index(t)).sample` with index(t) = t·M − 1 (a float) and predicts ε, v or x0 according to the
scheduler's `prediction_type` (NI §1.1). Nothing is downloaded unless the source says `download: true`, in which
case a path that is not a local folder is a hub id fetched into the local Hugging Face cache at import time.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from ..diffusion.denoisers import _labels_for, preconditioning
from ..diffusion.schedules import VPDiscrete
from ..errors import UserError

PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
PUBLISHER_NOTE = ("a diffusers UNet2DModel folder as `save_pretrained` writes it, e.g. a copy of the Hugging Face hub "
                  "repository google/ddpm-cifar10-32; set download: true to let diffusers fetch a hub id")


def _import_diffusers():
    try:
        import diffusers
    except ImportError:
        raise UserError("model source kind 'diffusers' needs the diffusers package: pip install -e '.[published]'") \
            from None
    return diffusers


def resolve(source: dict) -> dict:
    """A hub id becomes the local snapshot folder when downloads are allowed (the only place anything downloads)."""
    source = {"download": False, **source}
    if Path(source["path"]).exists() or not source["download"]:
        return source
    _import_diffusers()
    from huggingface_hub import snapshot_download

    local = snapshot_download(source["path"])
    return {**source, "hub_id": source["path"], "path": str(local)}


def locate(path: Path) -> tuple[Path, Path, Path]:
    """(UNet folder, its weights file, scheduler config) of a UNet or pipeline folder."""
    unet = path / "unet" if (path / "unet" / "config.json").is_file() else path
    if not (unet / "config.json").is_file():
        raise UserError(f"diffusers UNet not found: {path} (expected a folder with config.json and "
                        f"{WEIGHT_FILES[0]}: {PUBLISHER_NOTE})")
    weights = next((unet / w for w in WEIGHT_FILES if (unet / w).is_file()), None)
    if weights is None:
        raise UserError(f"diffusers UNet {unet} has no weights file (expected {' or '.join(WEIGHT_FILES)})")
    for cand in (unet / "scheduler_config.json", unet.parent / "scheduler" / "scheduler_config.json"):
        if cand.is_file():
            return unet, weights, cand
    raise UserError(f"diffusers UNet {unet}: no scheduler config (expected scheduler_config.json beside config.json "
                    f"or in {unet.parent / 'scheduler'}/)")


def checkpoint_files(source: dict) -> list[Path]:
    unet, weights, scheduler = locate(Path(source["path"]))
    return [unet / "config.json", weights, scheduler]


def schedule_from_scheduler_config(cfg: dict, where) -> VPDiscrete:
    """Our vp_discrete schedule with the scheduler's own β table."""
    m = int(cfg.get("num_train_timesteps", 1000))
    kw = {"num_timesteps": m, "beta_start": float(cfg.get("beta_start", 1e-4)),
          "beta_end": float(cfg.get("beta_end", 0.02))}
    if cfg.get("trained_betas") is not None:
        return VPDiscrete(**kw, betas=list(cfg["trained_betas"]))
    name = cfg.get("beta_schedule", "linear")
    if name not in ("linear", "scaled_linear", "squaredcos_cap_v2"):
        raise UserError(f"{where}: beta_schedule '{name}' is not supported (linear, scaled_linear, "
                        f"squaredcos_cap_v2)")
    return VPDiscrete(**kw, beta_schedule=name)


def unet_denoiser(unet, schedule: VPDiscrete, parameterisation: str, labels=None, guidance_scale=None,
                  grad: bool = False):
    """D(x_t, t) = c_skip·x_t + c_out·unet(x_t, index(t)) (denoisers.preconditioning), scalars cached per t."""
    if guidance_scale is not None and guidance_scale != 1.0:
        raise UserError("diffusers UNet sources have no null class: classifier-free guidance needs guidance_scale = 1")
    conditional = getattr(unet.config, "num_class_embeds", None)
    if conditional and labels is None:
        raise UserError("this diffusers UNet is class-conditional: pass class labels")
    dtype = next(unet.parameters()).dtype

    @functools.lru_cache(maxsize=4096)
    def scalars(t: float, device: torch.device):
        c_skip, c_out, _, _ = preconditioning(parameterisation, schedule, t)
        return c_skip, c_out, torch.tensor(float(schedule.index(t)), dtype=torch.float64, device=device)

    def denoise(x: torch.Tensor, t: float) -> torch.Tensor:
        c_skip, c_out, timestep = scalars(float(t), x.device)
        y = None if labels is None else _labels_for(labels, len(x), x.device)
        out = unet(x.to(dtype), timestep, class_labels=y).sample.to(x.dtype)
        return x * c_skip + out * c_out

    return denoise if grad else torch.no_grad()(denoise)


def open_source(source: dict, device):
    from . import LoadedModel

    diffusers = _import_diffusers()
    unet_dir, weights, sched_file = locate(Path(source["path"]))
    try:
        cfg = json.loads(sched_file.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"scheduler config {sched_file} is unreadable: {exc}") from None
    schedule = schedule_from_scheduler_config(cfg, sched_file)
    pred = cfg.get("prediction_type", "epsilon")
    if pred not in PREDICTION_TYPES:
        raise UserError(f"{sched_file}: prediction_type '{pred}' is not supported ({sorted(PREDICTION_TYPES)})")
    parameterisation = PREDICTION_TYPES[pred]
    unet = diffusers.UNet2DModel.from_pretrained(str(unet_dir), local_files_only=True, low_cpu_mem_usage=False)
    unet = unet.to(device).eval().requires_grad_(False)
    c = unet.config
    size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
    shape = [int(c.in_channels), int(size), int(size)]
    num_classes = int(getattr(c, "num_class_embeds", None) or 0)
    info = {"parameterisation": parameterisation, "scheduler": cfg.get("_class_name"),
            "beta_schedule": schedule.beta_schedule, "weights": weights.name}

    def make(labels=None, guidance_scale=None, grad=False):
        return unet_denoiser(unet, schedule, parameterisation, labels, guidance_scale, grad)

    return LoadedModel(schedule=schedule, data_shape=shape, num_classes=num_classes, kind="diffusers", net=unet,
                       info=info, make_denoiser=make)

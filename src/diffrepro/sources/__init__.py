"""Model sources: every consumer obtains a model through `load_model(path, device) -> LoadedModel`.

`results/models/<m>/model.pt` holds either a model trained by the pipeline (`training`'s file: EMA weights + spec) or
an import descriptor written by `diffrepro import-model`: `{format, name, dataset, source: {kind, path, ...}, sha256,
data_shape, num_classes, schedule (describe()), info}` (no weights). A descriptor points at a published checkpoint:

| kind | checkpoint | module |
|---|---|---|
| `edm` | NVlabs EDM / diff-sampler network pickle `{'ema': net, ...}` (loading runs code stored in the file) | `edm` |
| `diffusers` | diffusers `UNet2DModel` folder (config.json + weights) with its scheduler config | `diffusers_unet` |

On load the checkpoint is hashed again and refused when it differs from the descriptor's sha256. Consumers never
branch on the kind: `LoadedModel.denoiser(labels, guidance_scale)` is `D(x, t: float) -> x0_hat` in the coordinates
of `LoadedModel.schedule`, whatever the source.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import UserError

DESCRIPTOR_FORMAT = "diffrepro-import/1"
IMPORT_KINDS = ("edm", "diffusers")


@dataclass
class LoadedModel:
    """One model, whatever its source. `num_classes`: 0 = unconditional; for trained models also the null label."""

    schedule: object
    data_shape: list
    num_classes: int
    kind: str
    net: torch.nn.Module
    info: dict = field(default_factory=dict)
    make_denoiser: Callable = field(default=None, repr=False)

    def denoiser(self, labels=None, guidance_scale: float | None = None, grad: bool = False):
        """D(x, t: float) -> x0_hat in `schedule`'s coordinates (no autograd unless `grad`)."""
        return self.make_denoiser(labels=labels, guidance_scale=guidance_scale, grad=grad)

    @property
    def device(self) -> torch.device:
        p = next(iter(self.net.parameters()), None)
        return p.device if p is not None else torch.device("cpu")


def source_of(spec: dict) -> dict:
    """A params model entry's `source` block (default `{kind: train}`)."""
    return dict(spec.get("source") or {"kind": "train"})


def is_imported(spec: dict) -> bool:
    return source_of(spec)["kind"] != "train"


# --- checkpoints on disk --------------------------------------------------------------------------------------------
def sha256_files(files: list[Path]) -> str:
    """sha256 of one file's bytes; for several files, of their names and per-file digests (a folder checkpoint)."""
    from ..io import sha256_file

    digests = [(Path(f).name, sha256_file(f)) for f in files]
    if len(digests) == 1:
        return digests[0][1]
    return hashlib.sha256("".join(f"{n}:{d}\n" for n, d in sorted(digests)).encode()).hexdigest()


def _kind_module(kind: str):
    if kind == "edm":
        from . import edm
        return edm
    if kind == "diffusers":
        from . import diffusers_unet
        return diffusers_unet
    raise UserError(f"unknown model source kind '{kind}' (known: train, {', '.join(IMPORT_KINDS)})")


def checkpoint_files(source: dict) -> list[Path]:
    """The files of a published checkpoint (UserError naming the file and its publisher when absent)."""
    return _kind_module(source["kind"]).checkpoint_files(source)


# --- import descriptors ---------------------------------------------------------------------------------------------
def make_descriptor(name: str, spec: dict) -> dict:
    """Open the published checkpoint named by params model `name` (entry `spec`) and describe it (no weights)."""
    source = source_of(spec)
    if source["kind"] == "train":
        raise UserError(f"models.{name}: source kind 'train' is trained by `diffrepro train`, not imported")
    module = _kind_module(source["kind"])
    source = module.resolve(source)  # e.g. a hub id fetched into the local cache (download: true)
    files = checkpoint_files(source)
    model = module.open_source(source, "cpu")
    return {"format": DESCRIPTOR_FORMAT, "name": name, "dataset": spec["dataset"], "source": source,
            "sha256": sha256_files(files), "data_shape": list(model.data_shape),
            "num_classes": int(model.num_classes), "schedule": model.schedule.describe(), "info": model.info}


def _load_imported(path: Path, blob: dict, device) -> LoadedModel:
    source = blob["source"]
    files = checkpoint_files(source)
    digest = sha256_files(files)
    if digest != blob["sha256"]:
        raise UserError(f"{files[0] if len(files) == 1 else source['path']} changed since it was imported into "
                        f"{path} (sha256 {digest[:12]}… ≠ {blob['sha256'][:12]}…): rerun `diffrepro import-model`")
    model = _kind_module(source["kind"]).open_source(source, device)
    model.info = {**model.info, "name": blob.get("name"), "dataset": blob.get("dataset"), "sha256": digest,
                  "source": source}
    return model


def _load_trained(blob: dict, path: Path, device) -> LoadedModel:
    from .. import training

    missing = [k for k in training.MODEL_KEYS if k not in blob]
    if missing:
        raise UserError(f"model file {path} is incomplete: missing {missing}")
    net, spec = training.net_from_model_file(blob, path, device)

    def make(labels=None, guidance_scale=None, grad=False):
        return training.model_denoiser(net, spec, labels=labels, guidance_scale=guidance_scale, grad=grad)

    info = {"name": blob.get("name"), "dataset": spec.get("dataset"), "spec": spec,
            "parameterisation": spec.get("parameterisation"), "steps": blob.get("steps")}
    return LoadedModel(schedule=training.schedule_from_spec(spec), data_shape=list(net.data_shape),
                       num_classes=int(net.num_classes), kind="train", net=net, info=info, make_denoiser=make)


def check_matches_params(model: LoadedModel, path, params_spec: dict, name: str) -> None:
    """UserError when `model` was not made from `models.<name>` of the params file in use: a trained model's stored
    spec must agree key by key, an imported one must come from the same source."""
    if model.kind == "train":
        from ..training import check_matches_params as check_trained

        check_trained(path, model.info["spec"], params_spec, name)
        return
    stored, wanted = model.info["source"], source_of(params_spec)
    origin = stored.get("hub_id", stored.get("path"))  # a hub id was resolved to its local snapshot on import
    if (stored.get("kind"), origin) != (wanted.get("kind"), wanted.get("path")):
        raise UserError(f"{path} was imported from {stored.get('kind')} {origin}, but params model "
                        f"'{name}' names {wanted.get('kind')} {wanted.get('path')}: rerun `diffrepro import-model`")


def load_for_params(cfg: dict, name: str, path: str | Path, source_label: str = "params",
                    threads: int | None = None) -> LoadedModel:
    """The model file of params model `name` on the runtime's device (threads set first), refused unless it was made
    for that entry: same dataset, same training spec or the same published source."""
    from .. import runtime

    if name not in cfg.get("models", {}):
        raise UserError(f"{source_label}: '{name}' is not a key of 'models' (known: {sorted(cfg.get('models', {}))})")
    spec = cfg["models"][name]
    runtime.set_num_threads(cfg.get("runtime"), threads)
    model = load_model(path, device=runtime.select_device(cfg.get("runtime")))
    if model.info.get("dataset") != spec.get("dataset"):
        raise UserError(f"{path} was made for dataset '{model.info.get('dataset')}', but params model '{name}' uses "
                        f"'{spec.get('dataset')}'")
    check_matches_params(model, path, spec, name)
    return model


def load_model(path: str | Path, device="cpu") -> LoadedModel:
    """The model behind `results/models/<m>/model.pt`: trained weights or an imported published checkpoint."""
    from ..training.state import read_torch_file

    path = Path(path)
    blob = read_torch_file(path, (), "model file")
    source = blob.get("source") if isinstance(blob, dict) else None
    if isinstance(source, dict) and source.get("kind", "train") != "train":
        missing = [k for k in ("format", "sha256", "data_shape", "num_classes", "schedule") if k not in blob]
        if missing:
            raise UserError(f"model file {path} is an incomplete import descriptor: missing {missing}")
        return _load_imported(path, blob, device)
    return _load_trained(blob, path, device)

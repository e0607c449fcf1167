"""Import a published checkpoint as a pipeline model: writes `model.pt`, a small descriptor (source, sha256, shape,
classes, schedule; no weights) that `sources.load_model` opens, re-checking the checkpoint's sha256."""
from __future__ import annotations

from pathlib import Path

from . import add_params_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--model", required=True,
                        help="a key of the params file's `models` section whose source is edm or diffusers")
    parser.add_argument("--out", required=True, help="results/models/M/model.pt")


def run(args) -> int:
    import torch

    from .. import config, io, sources

    cfg = config.load(args.params)
    spec = section(cfg, "models", args.model, args.params)
    descriptor = sources.make_descriptor(args.model, spec)
    descriptor["provenance"] = io.provenance(spec, seed=cfg["seed"], model=args.model)
    io.ensure_writable_dir(Path(args.out).parent)
    out = io.write_with(args.out, lambda tmp: torch.save(descriptor, tmp))
    io.write_provenance(out, spec, seed=cfg["seed"], model=args.model, sha256=descriptor["sha256"])
    print(f"{args.model}: imported {descriptor['source']['kind']} checkpoint {descriptor['source']['path']} "
          f"(sha256 {descriptor['sha256'][:12]}…, shape {descriptor['data_shape']}, schedule "
          f"{descriptor['schedule']['name']}) → {out}")
    return 0

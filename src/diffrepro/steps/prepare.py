"""Prepare one dataset: write `data.npz` (x/y train/test, known parameters) and `data.json` (sha256, sizes, source)."""
from __future__ import annotations

from pathlib import Path

from . import add_out_dir_arg, add_params_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--dataset", required=True, help="a key of the params file's `datasets` section")
    add_out_dir_arg(parser)


def run(args) -> int:
    from .. import config, data, io

    cfg = config.load(args.params)
    spec = section(cfg, "datasets", args.dataset, args.params)
    out = io.ensure_writable_dir(args.out_dir)
    arrays, meta = data.prepare(args.dataset, spec, cfg["seed"])
    npz = data.write_npz(Path(out) / "data.npz", arrays)
    meta["sha256"] = io.sha256_file(npz)
    meta["file"] = npz.name
    io.write_json(Path(out) / "data.json", meta)
    io.write_provenance(npz, spec, seed=cfg["seed"], dataset=args.dataset, sha256=meta["sha256"])
    print(f"{args.dataset}: {meta['split']['train']} train / {meta['split']['test']} test, shape {meta['shape']}, "
          f"sha256 {meta['sha256'][:12]} → {npz}")
    return 0

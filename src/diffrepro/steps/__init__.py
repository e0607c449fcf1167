"""CLI step modules: one per `diffrepro` command (see cli.COMMANDS). Each exposes `configure(parser)` and `run(args)`.

Shared argument helpers live here so every step spells `--params` and `--out-dir` the same way.
"""
from __future__ import annotations

import argparse


def add_params_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params YAML file (validated against the schema)")


def add_out_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", required=True, help="output folder (created; outputs are written atomically)")


def section(cfg: dict, section_name: str, key: str, source: str) -> dict:
    """`cfg[section_name][key]` or a UserError naming the key and the known names."""
    from ..errors import UserError

    entries = cfg.get(section_name, {})
    if key not in entries:
        raise UserError(f"{source}: '{key}' is not a key of '{section_name}' (known: {sorted(entries)})")
    return entries[key]


def parse_assignments(items: list[str] | None, flag: str, parse_value=None) -> dict:
    """`KEY=VALUE` arguments → {key: value}, values read by `parse_value` (default: YAML), or a UserError naming
    the flag."""
    import yaml

    from ..errors import UserError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"{flag} expects KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        out[key.strip()] = (parse_value or yaml.safe_load)(value)
    return out


def parse_named_paths(items: list[str], flag: str) -> dict[str, str]:
    """`NAME=PATH` arguments → {name: path}, or a UserError naming the flag."""
    from ..errors import UserError

    paths = parse_assignments(items, flag, parse_value=str)
    if any(not name or not path for name, path in paths.items()):
        raise UserError(f"{flag} expects NAME=PATH, got {items}")
    return paths


def add_fit_args(parser: argparse.ArgumentParser, sampler_flag: str, sampler_help: str, out_help: str,
                 choices=None) -> None:
    """The arguments of a step that fits a learned sampler's parameters for one (model, sampler, NFE)."""
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="a key of the params file's `models` section")
    parser.add_argument(sampler_flag, required=True, choices=choices, help=sampler_help)
    parser.add_argument("--nfe", required=True, type=int, help="denoiser calls the parameters are fitted for")
    parser.add_argument("--checkpoint", required=True, help="results/models/M/model.pt")
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.num_threads wins)")


def add_threads_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: runtime.num_threads)")


def write_sample_file(dest, arrays: dict, manifest: dict, cfg_section: dict, seed: int, **provenance) -> None:
    """A sample file: `S.npz` (one array per key), its manifest `S.json` beside it and the provenance sidecar."""
    from pathlib import Path

    import numpy as np

    from .. import io

    dest = Path(dest)
    io.ensure_writable_dir(dest.parent)
    io.write_with(dest, lambda tmp: np.savez(tmp, **arrays))
    io.write_json(dest.with_suffix(".json"), manifest)
    io.write_provenance(dest, cfg_section, seed=seed, **provenance)

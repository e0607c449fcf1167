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

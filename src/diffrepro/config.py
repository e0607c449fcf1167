"""Params files: load YAML, validate against the one JSON schema (the same file Snakemake validates with).

The schema lives in `workflow/schemas/params.schema.yaml`; every section is strict (`additionalProperties: false`),
so unknown keys, wrong types and out-of-range values fail with a message naming the key path.
"""
from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"
RUN_SELECTION = Path("params/run.yaml")  # names the params file `dvc repro` runs and versions (dvc.yaml `vars`)


# libyaml's parser when present (the schema parses ~10× faster than with the pure-Python one)
_BaseLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCHEMA_CACHE: dict = {}


def load_schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise UserError(f"params schema not found at {SCHEMA_PATH} (diffrepro must run from its repository checkout)")
    stamp = SCHEMA_PATH.stat().st_mtime_ns
    if _SCHEMA_CACHE.get("stamp") != stamp:
        _SCHEMA_CACHE.update(stamp=stamp, schema=yaml.load(SCHEMA_PATH.read_text(), Loader=_BaseLoader))
    return copy.deepcopy(_SCHEMA_CACHE["schema"])


def _key_path(err) -> str:
    parts = [str(p) for p in err.absolute_path]
    return ".".join(parts) if parts else "<top level>"


def validate(cfg: dict, source: str = "params") -> dict:
    """Validate `cfg` in place (filling schema defaults) and return it; raise UserError naming the first bad key."""
    import jsonschema

    schema = load_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    # Fill `default:` values like Snakemake's validate(set_default=True) so the CLI and Snakemake see the same config.
    def set_defaults(validator, properties, instance, sch):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validator_cls.VALIDATORS["properties"](validator, properties, instance, sch)

    filling = jsonschema.validators.extend(validator_cls, {"properties": set_defaults})
    # Report the most direct cause first: a bad value (type/enum/range) before a key that a conditional rule forbids
    # only because of that value (`not` sub-schemas of the kind/arch-specific rules).
    errors = sorted(filling(schema).iter_errors(cfg),
                    key=lambda e: (e.validator in ("not", "allOf", "anyOf", "oneOf"), len(list(e.absolute_path)),
                                   str(e.message)))
    if errors:
        err = errors[0]
        if err.validator == "additionalProperties":
            where = _key_path(err)
            raise UserError(f"{source}: unknown key under '{where}': {err.message}")
        if err.validator == "not":
            raise UserError(f"{source}: key '{_key_path(err)}' is not allowed here (it does not apply to the "
                            f"kind/architecture chosen beside it)")
        raise UserError(f"{source}: invalid value at '{_key_path(err)}': {err.message}")
    check_semantics(cfg, source)
    return cfg


def check_semantics(cfg: dict, source: str) -> None:
    """What the schema cannot express (finite numbers, bounds, cross-references, sampler options); the Snakefile
    calls this too, after Snakemake's own schema validation."""
    from .validation import check_all

    check_all(cfg, source)


def check_cross_references(cfg: dict, source: str) -> None:
    from .validation import check_cross_references as check

    check(cfg, source)


class _UniqueKeyLoader(_BaseLoader):
    """SafeLoader that refuses a key given twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (first at line {seen[key] + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "params file"):
    """Parse a YAML file strictly: a missing path, a folder, non-UTF-8 bytes, bad syntax or a duplicate key is a
    UserError naming the file."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{what} not found: {path}")
    if not path.is_file():
        raise UserError(f"{what} {path} is not a regular file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader), text
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid YAML: {' '.join(str(exc).split())}") from None


# --- content-addressed resolved params (one immutable file per distinct config; see workflow/rules/common.smk) ---
RESOLVED_PATTERN = re.compile(r"^params-([0-9a-f]{16})\.yaml$")
# Which params file this process loaded and the sha256 of its text: recorded in every provenance sidecar.
LOADED: dict = {}


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_resolved_params(text: str, folder: str | Path) -> Path:
    """`folder/params-<sha256 of text>.yaml`, written once (atomically) and never rewritten."""
    folder = Path(folder)
    dest = folder / f"params-{text_hash(text)}.yaml"
    if not (dest.is_file() and dest.read_text() == text):
        from .io import write_text

        write_text(dest, text)
    return dest


def selected_params_file(selection: str | Path = RUN_SELECTION) -> str:
    """The params file named by `params_file:` in params/run.yaml (relative to the working directory)."""
    selection = Path(selection)
    try:
        chosen = (yaml.safe_load(selection.read_text()) or {}).get("params_file")
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"{selection}: cannot read the selected params file ({exc})") from None
    if not isinstance(chosen, str) or not Path(chosen).is_file():
        raise UserError(f"{selection}: params_file = {chosen!r} is not a params file (e.g. params/default.yaml)")
    return chosen


def load(path: str | Path, overrides: dict | None = None) -> dict:
    path = Path(path)
    cfg, text = read_yaml(path)
    named = RESOLVED_PATTERN.match(path.name)
    if named and named.group(1) != text_hash(text):
        raise UserError(f"params file {path} was changed after it was written (its content hash is "
                        f"{text_hash(text)}, its name says {named.group(1)}); rerun Snakemake to write a fresh copy")
    if not isinstance(cfg, dict):
        raise UserError(f"params file {path} must hold a mapping at the top level")
    if overrides:
        deep_update(cfg, overrides)
    cfg = validate(cfg, source=str(path))
    LOADED.clear()
    LOADED.update({"path": str(path), "sha256_16": text_hash(text), "config_hash": config_hash(cfg)})
    return cfg


def deep_update(base: dict, upd: dict) -> dict:
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_update(base[k], v)
        else:
            base[k] = v
    return base


def config_hash(cfg: Any) -> str:
    """Stable short hash of a (sub-)config: the provenance key that says which params made an artifact."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]

"""Params files: load YAML, validate against the one JSON schema (the same file Snakemake validates with).

The schema lives in `workflow/schemas/params.schema.yaml`; every section is strict (`additionalProperties: false`),
so unknown keys, wrong types and out-of-range values fail with a message naming the key path.
"""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "workflow" / "schemas" / "params.schema.yaml"
RUN_SELECTION = Path("params/run.yaml")  # names the params file `dvc repro` runs and versions (dvc.yaml `vars`)


def load_schema() -> dict:
    if not SCHEMA_PATH.exists():
        raise UserError(f"params schema not found at {SCHEMA_PATH} (diffrepro must run from its repository checkout)")
    return yaml.safe_load(SCHEMA_PATH.read_text())


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
    check_cross_references(cfg, source)
    return cfg


def check_cross_references(cfg: dict, source: str) -> None:
    """Checks a JSON schema cannot express: names that must refer to entries defined elsewhere in the file."""
    datasets = set(cfg.get("datasets", {}))
    for name, model in cfg.get("models", {}).items():
        if model["dataset"] not in datasets:
            raise UserError(f"{source}: models.{name}.dataset = '{model['dataset']}' is not a key of 'datasets' "
                            f"(known: {sorted(datasets)})")
    models = set(cfg.get("models", {}))
    for i, name in enumerate(cfg.get("sampling", {}).get("models", [])):
        if name not in models:
            raise UserError(f"{source}: sampling.models[{i}] = '{name}' is not a key of 'models' (known: {sorted(models)})")


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
    if not path.exists():
        raise UserError(f"params file not found: {path}")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UserError(f"params file {path} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise UserError(f"params file {path} must hold a mapping at the top level")
    if overrides:
        deep_update(cfg, overrides)
    return validate(cfg, source=str(path))


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

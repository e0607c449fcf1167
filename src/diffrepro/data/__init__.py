"""Dataset preparation: one canonical on-disk format for every dataset kind (DEVELOPING "CLI commands").

`prepare(name, spec, seed)` is pure (no writes): it returns the arrays for `data.npz` — `x_train`, `y_train`,
`x_test`, `y_test` (vectors [N, d]; images NCHW float32 in [-1, 1]; labels int64, −1 where a kind has none) plus the
known parameters of synthetic kinds — and the metadata for `data.json`. `write_npz` writes byte-identical files for
equal arrays (fixed zip timestamps), so the same seed gives the same sha256.
"""
from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from . import images, synthetic

SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")
DEFAULT_SIZES = {"toy2d": (8000, 2000), "gaussian": (2000, 1000), "gaussian_mixture": (2000, 1000)}
DIGITS_TEST = 297  # 1797 digits → 1500 train / 297 test


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")])


def _synthetic(kind: str, spec: dict, rng: np.random.Generator):
    n_train, n_test = spec.get("n_train", DEFAULT_SIZES[kind][0]), spec.get("n_test", DEFAULT_SIZES[kind][1])
    n = n_train + n_test
    known: dict = {}
    if kind == "toy2d":
        x, _ = synthetic.toy2d(rng, n, spec.get("shape", "eight_gaussians"))
        y = -np.ones(n, dtype=np.int64)
    elif kind == "gaussian":
        known = synthetic.gaussian_params(rng, spec.get("dim", 16))
        x, y = synthetic.gaussian(rng, n, known), -np.ones(n, dtype=np.int64)
    else:
        known = synthetic.gmm_params(rng, spec.get("dim", 16), spec.get("components", 8),
                                     spec.get("component_std", 0.3))
        x, y = synthetic.gaussian_mixture(rng, n, known)
    x = x.astype(np.float32)
    return x[:n_train], y[:n_train].astype(np.int64), x[n_train:], y[n_train:].astype(np.int64), known


def _subsample(rng, x, y, n):
    if n is None or n >= len(x):
        return x, y
    idx = np.sort(rng.permutation(len(x))[:n])
    return x[idx], y[idx]


def _images(kind: str, spec: dict, rng: np.random.Generator):
    if kind == "digits":
        x, y = images.digits(spec.get("image_size", 8))
        perm = rng.permutation(len(x))  # fixed split: a seeded permutation, test = the last DIGITS_TEST
        n_test = spec.get("n_test", DIGITS_TEST)
        if n_test >= len(x) - 1:
            raise UserError(f"digits: n_test = {n_test} leaves no training images (1797 in total)")
        tr, te = np.sort(perm[:-n_test]), np.sort(perm[-n_test:])
        x_train, y_train, x_test, y_test = x[tr], y[tr], x[te], y[te]
    else:
        x_train, y_train = images.torchvision_split(kind, spec.get("root"), spec.get("download", False), True)
        x_test, y_test = images.torchvision_split(kind, spec.get("root"), spec.get("download", False), False)
    x_train, y_train = _subsample(rng, x_train, y_train, spec.get("n_train"))
    x_test, y_test = _subsample(rng, x_test, y_test, spec.get("n_test") if kind != "digits" else None)
    return x_train, y_train, x_test, y_test, {}


SOURCES = {
    "toy2d": "synthetic (numpy)", "gaussian": "synthetic (numpy)", "gaussian_mixture": "synthetic (numpy)",
    "digits": "sklearn.datasets.load_digits", "mnist": "torchvision.datasets.MNIST",
    "fashion_mnist": "torchvision.datasets.FashionMNIST", "cifar10": "torchvision.datasets.CIFAR10",
}


def prepare(name: str, spec: dict, seed: int) -> tuple[dict, dict]:
    """Build the arrays and metadata of dataset `name` from its params spec and the master seed."""
    kind = spec["kind"]
    if kind not in SOURCES:
        raise UserError(f"datasets.{name}.kind = '{kind}' is unknown (known: {sorted(SOURCES)})")
    rng = _rng(seed, name)
    build = _synthetic if kind in DEFAULT_SIZES else _images
    x_train, y_train, x_test, y_test, known = build(kind, spec, rng)
    arrays = {"x_train": np.ascontiguousarray(x_train, np.float32), "y_train": y_train.astype(np.int64),
              "x_test": np.ascontiguousarray(x_test, np.float32), "y_test": y_test.astype(np.int64),
              **{k: np.asarray(v, np.float64) for k, v in known.items()}}
    labels = sorted(int(v) for v in np.unique(arrays["y_train"]) if v >= 0)
    meta = {
        "name": name, "kind": kind, "spec": spec, "seed": int(seed), "source": SOURCES[kind],
        "shape": list(arrays["x_train"].shape[1:]), "N": int(len(x_train) + len(x_test)),
        "split": {"train": int(len(x_train)), "test": int(len(x_test))},
        "num_classes": (max(labels) + 1) if labels else 0,
        # known parameters: values inline when small, else their shape (the values are in data.npz under the key)
        "known": {k: (np.asarray(v).tolist() if np.size(v) <= 1024 else {"npz_key": k, "shape": list(np.shape(v))})
                  for k, v in known.items()},
    }
    if kind in images.RAW_FILES:  # the IDX files read, all verified against these MD5s before reading
        meta["raw_files"] = {"folder": str(images.raw_dir(kind, images.resolve_root(kind, spec.get("root")))),
                             "md5": dict(images.RAW_FILES[kind])}
    return arrays, meta


def write_npz(dest: str | Path, arrays: dict) -> Path:
    """Atomic, byte-deterministic `.npz` (uncompressed; every member gets a fixed 1980-01-01 timestamp)."""
    from ..io import write_with

    def writer(tmp: Path):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key in sorted(arrays):
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue())

    return write_with(dest, writer)


def load_npz(path: str | Path, keys: tuple[str, ...] = SPLIT_KEYS) -> dict:
    """Read a prepared `data.npz` into a dict of arrays, checked (io.read_npz: checksum, the `keys`, finite values;
    x arrays floating with a sample axis, labels integer and as long as their x, of the keys asked for); UserError
    naming the file otherwise."""
    from ..io import read_npz

    path = Path(path)
    if not path.exists():
        raise UserError(f"missing dataset file: {path} (run `diffrepro prepare` first)")
    arrays = read_npz(path, "dataset file", tuple(keys))
    for split in ("train", "test"):
        x = arrays[f"x_{split}"] if f"x_{split}" in keys else None
        y = arrays[f"y_{split}"] if f"y_{split}" in keys else None
        if x is not None and (x.dtype.kind != "f" or x.ndim < 2):
            raise UserError(f"dataset file {path}: x_{split} must be a float array [N, ...], got {x.dtype} "
                            f"{list(x.shape)}")
        if x is not None and y is not None and (y.dtype.kind not in "iu" or y.shape != x.shape[:1]):
            raise UserError(f"dataset file {path}: y_{split} must be {x.shape[0]} integer labels, got {y.dtype} "
                            f"{list(y.shape)}")
    return arrays


def load_train_points(path: str | Path):
    """`x_train` of a prepared data.npz (load_npz) as a float64 tensor (images stay [N, C, H, W])."""
    import torch

    return torch.from_numpy(np.asarray(load_npz(path, ("x_train",))["x_train"], dtype=np.float64))

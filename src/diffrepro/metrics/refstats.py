"""Reference statistics of one dataset's test split (the `reference-stats` step's payload), computed once and reused
by every evaluation.

Image data: the test images' features in the dataset's feature space (`<dataset>_classifier` or `inception`,
through torch-fidelity) and their FID statistics, with the sha256 of the weights that made them. Vector data: the raw
test points and the RBF bandwidth (median heuristic on these points unless `metrics.mmd_bandwidth` is set).
When `metrics.reference_stats[dataset]` names a `.npz` (`mu`, `sigma`; e.g. EDM's published `cifar10-32x32.npz`),
those statistics are checked against the detector and used instead (no features, so FID but no KID).
Every image payload records its `reference` (the split and its size, or the file and its sha256) for the report.
"""
from __future__ import annotations

FORMAT = "diffrepro-refstats/1"


def compute(cfg: dict, dataset: str, x_test, classifier=None) -> dict:
    """The refstats payload (tensors and plain values only, loadable with `weights_only=True`)."""
    import torch

    from .. import runtime
    from .distances import median_bandwidth
    from .spaces import feature_kind

    x_test = torch.as_tensor(x_test)
    base = {"format": FORMAT, "dataset": dataset, "n": len(x_test)}
    if feature_kind(cfg, dataset) == "vector":  # torch-fidelity is not imported for vector data
        points = x_test.reshape(len(x_test), -1).to(torch.float64)
        bandwidth = cfg["metrics"].get("mmd_bandwidth") or median_bandwidth(points)
        return {**base, "feature_space": "vector", "points": points, "bandwidth": float(bandwidth)}
    from . import fidelity as fd

    space = fd.feature_space(cfg, dataset, classifier)
    cuda = runtime.select_device(cfg.get("runtime")).type == "cuda"
    feats = fd.extract_features(x_test, fd.make_extractor(space, cuda), cuda, cfg["metrics"]["batch_size"])
    stats = fd.fid_statistics(feats[space.layer("fid")])
    reference = {"kind": "split", "split": "test", "n": len(x_test)}
    return {**base, **_space_fields(space), "features": feats, "reference": reference,
            "fid_mu": torch.from_numpy(stats["mu"]), "fid_sigma": torch.from_numpy(stats["sigma"])}


def _space_fields(space) -> dict:
    from ..io import sha256_file

    return {"feature_space": space.name, "extractor": space.extractor, "detector": space.detector,
            "weights_path": space.weights_path, "weights_sha256": sha256_file(space.weights_path)}


def from_file(cfg: dict, dataset: str, stats_file, classifier=None) -> dict:
    """The refstats payload from a `.npz` of `mu`, `sigma` (validated against the dataset's detector)."""
    import torch

    from .. import io
    from ..errors import UserError
    from . import fidelity as fd

    if fd.feature_kind(cfg, dataset) == "vector":
        raise UserError(f"metrics.reference_stats.{dataset}: FID statistics need an image feature space, "
                        f"but {dataset} is vector data")
    space = fd.feature_space(cfg, dataset, classifier)
    stats = fd.read_reference_npz(stats_file, fd.feature_dim(space))
    reference = {"kind": "file", "path": str(stats_file), "sha256": io.sha256_file(stats_file), "n": stats["n"]}
    return {"format": FORMAT, "dataset": dataset, "n": stats["n"], **_space_fields(space), "features": None,
            "reference": reference, "fid_mu": torch.from_numpy(stats["mu"]),
            "fid_sigma": torch.from_numpy(stats["sigma"])}


def reference_label(refstats: dict) -> str:
    """'test split (10000 images)' or 'file cifar10-32x32.npz (sha256 1a2b3c4d5e6f)' for protocol labels."""
    from pathlib import Path

    ref = refstats.get("reference") or {"kind": "split", "split": "test", "n": refstats.get("n")}
    if ref["kind"] == "file":
        size = f", {ref['n']} images" if ref.get("n") else ""
        return f"file {Path(ref['path']).name} (sha256 {ref['sha256'][:12]}{size})"
    return f"{ref['split']} split ({ref['n']} images)"


def load(path) -> dict:
    """Read a refstats file written by `diffrepro reference-stats`, or a UserError naming it."""
    from pathlib import Path

    from ..errors import UserError
    from ..training.state import read_torch_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing reference statistics: {path} (run `diffrepro reference-stats`)")
    stats = read_torch_file(path, ("format",), "reference statistics")
    if not isinstance(stats, dict) or stats.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} file")
    return stats

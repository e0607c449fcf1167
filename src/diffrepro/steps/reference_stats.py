"""Reference statistics of one dataset's test split, computed once and reused by every `evaluate`.

Image data: the test images' features in the dataset's feature space (`<dataset>_classifier` or `inception`,
through torch-fidelity) and their FID statistics, with the sha256 of the weights that made them. Vector data: the raw
test points and the RBF bandwidth (median heuristic on these points unless `metrics.mmd_bandwidth` is set).
"""
from __future__ import annotations

from . import add_params_arg, section
from .train_classifier import add_threads_arg, limit_threads

FORMAT = "diffrepro-refstats/1"


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--dataset", required=True, help="a key of the params file's `datasets` section")
    parser.add_argument("--data", required=True, help="the dataset's data.npz (from `diffrepro prepare`)")
    parser.add_argument("--classifier", help="classifier.pt (datasets scored in the classifier feature space)")
    add_threads_arg(parser)
    parser.add_argument("--out", required=True, help="output file, e.g. results/refstats/D.pt")


def compute(cfg: dict, dataset: str, x_test, classifier=None) -> dict:
    """The refstats payload (tensors and plain values only, loadable with `weights_only=True`)."""
    import torch

    from .. import runtime
    from ..metrics import median_bandwidth
    from ..metrics import fidelity as fd

    kind = fd.feature_kind(cfg, dataset)
    x_test = torch.as_tensor(x_test)
    base = {"format": FORMAT, "dataset": dataset, "n": len(x_test)}
    if kind == "vector":
        points = x_test.reshape(len(x_test), -1).to(torch.float64)
        bandwidth = cfg["metrics"].get("mmd_bandwidth") or median_bandwidth(points)
        return {**base, "feature_space": "vector", "points": points, "bandwidth": float(bandwidth)}
    space = fd.feature_space(cfg, dataset, classifier)
    cuda = runtime.select_device(cfg.get("runtime")).type == "cuda"
    feats = fd.extract_features(x_test, fd.make_extractor(space, cuda), cuda, cfg["metrics"]["batch_size"])
    stats = fd.fid_statistics(feats[space.layer("fid")])
    return {**base, "feature_space": space.name, "extractor": space.extractor, "weights_path": space.weights_path,
            "weights_sha256": fd.sha256(space.weights_path), "features": feats,
            "fid_mu": torch.from_numpy(stats["mu"]), "fid_sigma": torch.from_numpy(stats["sigma"])}


def load(path) -> dict:
    """Read a refstats file written by this step, or a UserError naming it."""
    from pathlib import Path

    import torch

    from ..errors import UserError

    from ..training.state import read_torch_file

    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing reference statistics: {path} (run `diffrepro reference-stats`)")
    stats = read_torch_file(path, ("format",), "reference statistics")
    if not isinstance(stats, dict) or stats.get("format") != FORMAT:
        raise UserError(f"{path} is not a {FORMAT} file")
    return stats


def run(args) -> int:
    from .. import config, io
    from ..metrics.spaces import check_weights_early

    cfg = config.load(args.params)
    section(cfg, "datasets", args.dataset, args.params)
    check_weights_early(cfg, args.dataset)  # fail fast: before torch is imported or any input is read
    import torch

    from ..metrics import fidelity as fd
    from .train_classifier import load_arrays

    if fd.feature_kind(cfg, args.dataset) != "vector":
        fd.feature_space(cfg, args.dataset, args.classifier)  # missing classifier → UserError before any work
    limit_threads(cfg, args.threads)
    (x_test,) = load_arrays(args.data, "x_test")
    stats = compute(cfg, args.dataset, x_test, args.classifier)
    io.write_with(args.out, lambda tmp: torch.save(stats, tmp))
    io.write_provenance(args.out, cfg["metrics"], seed=cfg["seed"], dataset=args.dataset,
                        feature_space=stats["feature_space"], n=stats["n"], data_sha256=fd.sha256(args.data),
                        weights_sha256=stats.get("weights_sha256"))
    print(f"{args.dataset}: reference statistics of {stats['n']} test points in feature space "
          f"'{stats['feature_space']}' → {args.out}")
    return 0

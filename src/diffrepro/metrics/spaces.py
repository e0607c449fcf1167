"""Which feature space scores a dataset (torch-free: used by the workflow rules and by the metric steps)."""
from __future__ import annotations

from pathlib import Path

VECTOR_KINDS = ("toy2d", "gaussian", "gaussian_mixture")
INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_KINDS = ("inception", "inception_ts")


def feature_kind(cfg: dict, dataset: str) -> str:
    """'vector' for low-dimensional data (sliced Wasserstein / MMD / energy), else metrics.feature_extractor[dataset]:
    'classifier' (the default for images), 'inception' (torch-fidelity) or 'inception_ts' (StyleGAN3 TorchScript)."""
    unknown = sorted(set(cfg["metrics"].get("feature_extractor", {})) - set(cfg["datasets"]))
    if unknown:
        from ..errors import UserError

        raise UserError(f"metrics.feature_extractor names datasets {unknown} that are not keys of 'datasets' "
                        f"(known: {sorted(cfg['datasets'])})")
    if cfg["datasets"][dataset]["kind"] in VECTOR_KINDS:
        return "vector"
    return cfg["metrics"].get("feature_extractor", {}).get(dataset, "classifier")


def classifier_path(cfg: dict, dataset: str) -> str | None:
    """Where the pipeline keeps the classifier a dataset's metrics need (None: vector data or Inception)."""
    return f"results/classifiers/{dataset}/classifier.pt" if feature_kind(cfg, dataset) == "classifier" else None


def with_classifier(cfg: dict, dataset: str, **inputs) -> dict:
    """Workflow rule inputs plus `classifier` when the dataset needs one (used with Snakemake's unpack)."""
    path = classifier_path(cfg, dataset)
    return {**inputs, "classifier": path} if path else inputs


def check_inception_weights(path) -> Path:
    """Fail fast (before any work) when the configured Inception weights are not a local file."""
    from ..errors import UserError

    if not path:
        raise UserError("metrics.inception_weights is not set: give the local path of "
                        f"{INCEPTION_WEIGHTS_FILE} (Inception FID weights are never downloaded), or leave it unset "
                        "and provide the TorchScript detector file")
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Inception weights not found at metrics.inception_weights = {path}; expected the file "
                        f"{INCEPTION_WEIGHTS_FILE} (torch-fidelity's TF FID Inception weights, SHA prefix 6726825d)")
    return path


def inception_weights(cfg: dict) -> tuple[str, Path]:
    """Which file feeds torch-fidelity's `inception-v3-compat`: ('pth', its own weights) when
    `metrics.inception_weights` is set, else ('torchscript', the verified StyleGAN3 detector file, mapped on load)."""
    from ..errors import UserError
    from .inception import check_detector, detector_path

    configured = cfg["metrics"].get("inception_weights")
    if configured:
        return "pth", check_inception_weights(configured)
    try:
        return "torchscript", check_detector(detector_path(cfg))
    except UserError as exc:
        raise UserError(f"metrics.inception_weights is not set and {exc}") from None


def check_weights_early(cfg: dict, dataset: str) -> None:
    """Before any import of torch or any data: the local files the dataset's feature space needs."""
    kind = feature_kind(cfg, dataset)
    if kind == "inception":
        inception_weights(cfg)
    elif kind == "inception_ts":
        from .inception import check_detector, detector_path

        check_detector(detector_path(cfg))


def reference_stats_file(cfg: dict, dataset: str) -> str | None:
    """`metrics.reference_stats[dataset]`: a `.npz` with `mu`, `sigma` used as the dataset's FID reference."""
    files = cfg["metrics"].get("reference_stats") or {}
    unknown = sorted(set(files) - set(cfg["datasets"]))
    if unknown:
        from ..errors import UserError

        raise UserError(f"metrics.reference_stats names datasets {unknown} that are not keys of 'datasets' "
                        f"(known: {sorted(cfg['datasets'])})")
    return files.get(dataset)


def refstats_inputs(cfg: dict, dataset: str) -> dict:
    """Inputs of the reference_stats rule: the statistics file when configured, else the dataset's data.npz
    (plus the classifier when the feature space needs one). A configured file that is not there yet is left out, so
    a dry run still lists the DAG; the job then stops at once naming it (like a missing published checkpoint)."""
    from pathlib import Path

    stats_file = reference_stats_file(cfg, dataset)
    if stats_file:
        inputs = {"stats_file": stats_file} if Path(stats_file).is_file() else {}
    else:
        inputs = {"data": f"results/data/{dataset}/data.npz"}
    return with_classifier(cfg, dataset, **inputs)

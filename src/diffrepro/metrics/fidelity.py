"""FID / KID / IS through torch-fidelity, in a named feature space.

Feature spaces: `<dataset>_classifier` (our CNN, registered with torch-fidelity as the feature extractor
`diffrepro-classifier`, weights from `results/classifiers/D/classifier.pt`) or `inception` (torch-fidelity's
`inception-v3-compat` from a local weights file; never downloaded).

Why precomputed features instead of `calculate_metrics(input2=...)`: the reference set's features are a Snakemake
output (`results/refstats/D.pt`), computed once per dataset and invalidated by content, whereas torch-fidelity's cache
is keyed by name only (stale when the classifier is retrained, ecosystem.md §3.4). Each cell's features are extracted
once by torch-fidelity's own loop (`get_featuresdict_from_dataset`) and reused for FID, KID and IS, which then go
through torch-fidelity's own feature→statistics→metric functions. `tests/test_metrics.py` checks that this path equals
`calculate_metrics` on the same inputs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset
from torch_fidelity import FeatureExtractorBase

from ..errors import UserError
from .classifier import load_classifier
from .spaces import INCEPTION_WEIGHTS_FILE, VECTOR_KINDS, check_inception_weights, feature_kind  # noqa: F401

CLASSIFIER_EXTRACTOR = "diffrepro-classifier"
INCEPTION_EXTRACTOR = "inception-v3-compat"


class ClassifierFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor over our classifier: uint8 B×3×H×W in, (penultimate, logits) out."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if not feature_extractor_weights_path:
            raise UserError(f"feature extractor {name} needs feature_extractor_weights_path (a classifier.pt)")
        self.classifier = load_classifier(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"fid": "penultimate", "kid": "penultimate", "prc": "penultimate", "isc": "logits"}[metric]

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 8, 8, dtype=torch.uint8)

    def forward(self, x):
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError("expecting uint8 images B×3×H×W")
        channels = self.classifier.arch["in_channels"]
        body = self.classifier.body(x[:, :channels].float() / 127.5 - 1)  # grey images were expanded to 3 channels
        out = {"penultimate": body / self.classifier.feature_scale, "logits": self.classifier.head(body)}
        return tuple(out[k] for k in self.features_list)


def register() -> None:
    """Register the classifier extractor with torch-fidelity (idempotent: registering twice raises there)."""
    from torch_fidelity import register_feature_extractor
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if CLASSIFIER_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(CLASSIFIER_EXTRACTOR, ClassifierFeatureExtractor)


class UInt8Images(Dataset):
    """torch-fidelity input: float NCHW in [-1, 1] → uint8 3×H×W items (grey expanded to RGB)."""

    def __init__(self, images):
        x = torch.as_tensor(images, dtype=torch.float32)
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise UserError(f"expected images [N, 1|3, H, W]; got shape {tuple(x.shape)}")
        self.images = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


@dataclass(frozen=True)
class FeatureSpace:
    name: str            # metric column suffix: "digits_classifier" or "inception"
    extractor: str       # torch-fidelity feature extractor name
    weights_path: str    # local weights file (classifier.pt or the Inception .pth)

    def layer(self, metric: str) -> str:
        from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

        register()
        return FEATURE_EXTRACTORS_REGISTRY[self.extractor].get_default_feature_layer_for_metric(metric)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.layer("fid"), self.layer("isc")]))


def feature_space(cfg: dict, dataset: str, classifier_path=None) -> FeatureSpace | None:
    """The feature space of `dataset` (None for vector data). Validates that the weights file exists."""
    kind = feature_kind(cfg, dataset)
    if kind == "vector":
        return None
    if kind == "inception":
        weights = check_inception_weights(cfg["metrics"].get("inception_weights"))
        return FeatureSpace("inception", INCEPTION_EXTRACTOR, str(weights))
    if not classifier_path or not Path(classifier_path).is_file():
        raise UserError(f"dataset {dataset} is scored in the classifier feature space: missing classifier file "
                        f"{classifier_path or '(none given; pass --classifier)'}")
    return FeatureSpace(f"{dataset}_classifier", CLASSIFIER_EXTRACTOR, str(classifier_path))


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_extractor(space: FeatureSpace, cuda: bool):
    """Build the torch-fidelity feature extractor once (it is reused for every cell)."""
    from torch_fidelity.utils import create_feature_extractor

    register()
    return create_feature_extractor(space.extractor, list(space.layers), cuda=cuda,
                                    feature_extractor_weights_path=space.weights_path, verbose=False)


def extract_features(images, extractor, cuda: bool, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Features of every layer the extractor provides, through torch-fidelity's extraction loop (CPU float64)."""
    from torch_fidelity.utils import get_featuresdict_from_dataset

    feats = get_featuresdict_from_dataset(UInt8Images(images), extractor, batch_size, cuda, save_cpu_ram=True,
                                          verbose=False)
    return {k: v.to(torch.float64) for k, v in feats.items()}


def fid_statistics(features: torch.Tensor) -> dict:
    from torch_fidelity.metric_fid import fid_features_to_statistics

    return fid_features_to_statistics(features.to(torch.float64).cpu())


def fidelity_metrics(sample_feats: dict, ref_feats: dict, ref_fid_stats: dict, space: FeatureSpace,
                     kid_subset_size: int, kid_subsets: int, isc: bool, seed: int) -> dict:
    """Metric columns `fid_<space>`, `kid_<space>`, `kid_<space>_std` (and `isc_<space>[_std]`) for one cell.

    `kid_subset_size` must already be clamped to the set sizes (see `clamp_kid_subset`).
    """
    from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_statistics_to_metric
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    fid_layer, isc_layer = space.layer("fid"), space.layer("isc")
    fid = fid_statistics_to_metric(fid_statistics(sample_feats[fid_layer]), ref_fid_stats, verbose=False)
    kid = kid_features_to_metric(sample_feats[fid_layer], ref_feats[fid_layer], kid_subset_size=kid_subset_size,
                                 kid_subsets=kid_subsets, rng_seed=seed, verbose=False)
    out = {f"fid_{space.name}": fid[KEY_METRIC_FID],
           f"kid_{space.name}": kid[KEY_METRIC_KID_MEAN], f"kid_{space.name}_std": kid[KEY_METRIC_KID_STD]}
    if isc:
        n = len(sample_feats[isc_layer])
        score = isc_features_to_metric(sample_feats[isc_layer], splits=min(10, n), rng_seed=seed)
        out[f"isc_{space.name}"] = score[KEY_METRIC_ISC_MEAN]
        out[f"isc_{space.name}_std"] = score[KEY_METRIC_ISC_STD]
    return out


def clamp_kid_subset(requested: int, n_samples: int, n_reference: int) -> tuple[int, str | None]:
    """KID needs subset size ≤ both set sizes (torch-fidelity#45): clamp, and say so."""
    size = min(requested, n_samples, n_reference)
    if size == requested:
        return size, None
    return size, (f"metrics.kid_subset_size = {requested} exceeds the set sizes (samples {n_samples}, "
                  f"reference {n_reference}); KID used subsets of {size}")

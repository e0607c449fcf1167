"""Scoring samples against a dataset's reference statistics: the sweep's `CellScorer` (metric columns of one set of
samples, in the dataset's feature space), the per-cell rows of a sample file (trajectory error plus metrics), and the
real-data anchors (FID of real train images and of noise against the test split).

A sample file (written by `diffrepro sample`) is `S.npz` with one array per cell `GRID/nfeN/seedK` (data space; images
NCHW in [-1, 1]) and `S.json` = {model, sampler, cells: [{key, grid, nfe, nfe_measured, seed, wall_s, t_grid}]}
beside it; its reference is `_reference.npz` with the PF-ODE solution `seedK` from the same initial noise.
"""
from __future__ import annotations

import sys
from pathlib import Path

CELL_KEYS = ("key", "grid", "nfe", "nfe_measured", "seed", "wall_s")


class CellScorer:
    """Metric columns of one cell's samples against the dataset's reference statistics (built once per file)."""

    def __init__(self, cfg: dict, dataset: str, refstats: dict, classifier=None):
        from .. import runtime
        from ..errors import UserError
        from ..io import sha256_file
        from .spaces import feature_kind

        self.cfg, self.metrics_cfg, self.refstats = cfg, cfg["metrics"], refstats
        self.space, self.notes, self.n_samples, self.kid_subset_sizes = None, [], set(), set()
        self.vector_reference = None
        if feature_kind(cfg, dataset) == "vector":  # vector data: no feature space, torch-fidelity is not imported
            if refstats["feature_space"] != "vector":
                raise UserError(f"refstats of {dataset} hold feature space '{refstats['feature_space']}', not vector")
            return
        from . import fidelity as fd

        self.space = fd.feature_space(cfg, dataset, classifier or refstats.get("weights_path"))
        same_weights = sha256_file(self.space.weights_path) == refstats["weights_sha256"]
        if refstats["feature_space"] != self.space.name or not same_weights:
            raise UserError(f"reference statistics of {dataset} were made in feature space "
                            f"'{refstats['feature_space']}' with other weights than {self.space.weights_path}; "
                            "rerun `diffrepro reference-stats`")
        self.cuda = runtime.select_device(cfg.get("runtime")).type == "cuda"
        self.extractor = fd.make_extractor(self.space, self.cuda)
        self.ref_fid_stats = {"mu": refstats["fid_mu"].numpy(), "sigma": refstats["fid_sigma"].numpy()}
        if refstats.get("features") is None:
            self.notes.append(f"reference statistics of {dataset} come from a file (mu, sigma only): FID, no KID")

    def protocol(self, n_samples: int) -> dict:
        """Text labels of an image row: which detector, how many samples, against which reference."""
        from .refstats import reference_label

        detector = self.space.detector or self.space.extractor
        return {"feature_space": self.space.name,
                "fid_protocol": f"{detector}; {n_samples} samples vs {reference_label(self.refstats)}"}

    def __call__(self, samples) -> dict:
        m = self.metrics_cfg
        self.n_samples.add(len(samples))
        if self.space is None:
            if self.vector_reference is None:  # the reference's own terms once per file, not once per cell
                from .distances import VectorReference

                self.vector_reference = VectorReference(self.refstats["points"], m["swd_projections"],
                                                        self.refstats["bandwidth"], seed=self.cfg["seed"])
            return self.vector_reference.metrics(samples)
        from . import fidelity as fd

        feats = fd.extract_features(samples, self.extractor, self.cuda, m["batch_size"])
        ref_feats = self.refstats.get("features")
        size = m["kid_subset_size"]
        if ref_feats is not None:
            size, note = fd.clamp_kid_subset(size, len(samples), self.refstats["n"])
            if note and note not in self.notes:
                self.notes.append(note)
                print(f"note: {note}", file=sys.stderr)
            self.kid_subset_sizes.add(size)
        cols = fd.fidelity_metrics(feats, ref_feats, self.ref_fid_stats, self.space, size,
                                   m["kid_subsets"], m["isc"], self.cfg["seed"])
        return {**cols, **self.protocol(len(samples))}


def load_cells(samples_path) -> dict:
    """The sample file's JSON manifest (S.json beside S.npz)."""
    from .. import io
    from ..errors import UserError

    path = Path(samples_path).with_suffix(".json")
    manifest = io.read_json(path)
    if not isinstance(manifest, dict) or not isinstance(manifest.get("cells"), list):
        raise UserError(f"{path} has no 'cells' list")
    for i, cell in enumerate(manifest["cells"]):
        missing = [k for k in CELL_KEYS if not isinstance(cell, dict) or k not in cell]
        if missing:
            raise UserError(f"{path}: cells[{i}] lacks the key(s) {missing}")
    return manifest


def score_cells(cfg: dict, model: str, sampler: str, manifest: dict, samples, reference, scorer) -> list[dict]:
    """One row per cell of a sample file: trajectory error plus the scorer's metric columns. `samples`/`reference`: mappings key → array (np.load objects)."""
    import torch

    from ..errors import UserError
    from ..diffusion.trajectory import trajectory_error

    dataset = cfg["models"][model]["dataset"]
    rows = []
    sample_keys, ref_keys = list(getattr(samples, "files", samples)), list(getattr(reference, "files", reference))
    for cell in manifest["cells"]:
        key, ref_key = cell["key"], f"seed{cell['seed']}"
        if key not in sample_keys:
            raise UserError(f"sample file lacks the cell '{key}' listed in its manifest")
        if ref_key not in ref_keys:
            raise UserError(f"reference file lacks '{ref_key}' (has {sorted(ref_keys)})")
        x = torch.from_numpy(samples[key])
        try:
            traj = trajectory_error(x, torch.from_numpy(reference[ref_key]))
        except ValueError as exc:
            raise UserError(f"cell {key}: {exc}") from None
        rows.append({"dataset": dataset, "model": model, "sampler": sampler, "grid": cell["grid"],
                     "nfe": cell["nfe"], "nfe_measured": cell["nfe_measured"], "seed": cell["seed"],
                     "wall_s": cell["wall_s"], "traj_rmse": traj, **scorer(x)})
    return rows


def anchors(scorer, x_train, n: int, seed: int) -> dict:
    """FID/KID of n real train images and of n uniform-noise images (same shape, in [-1, 1]) against the test split."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(x_train), generator=gen)[:n].sort().values
    train = torch.as_tensor(x_train)[pick]
    noise = torch.rand(train.shape, generator=gen) * 2 - 1
    name = scorer.space.name

    def score(x):
        cols = scorer(x)
        return {"fid": float(cols[f"fid_{name}"]), "kid": float(cols[f"kid_{name}"])}

    return {"n": int(len(train)), "train": score(train), "noise": score(noise)}


def sample_cells(scorer, paths: list[str]) -> dict[str, list[dict]]:
    """Per model: {sampler, grid, nfe, fid} of every cell of the given sample files, scored by `scorer`."""
    import numpy as np
    import torch

    out: dict[str, list[dict]] = {}
    for path in paths:
        model, sampler = Path(path).parent.name, Path(path).stem
        manifest = load_cells(path)
        with np.load(path, allow_pickle=False) as samples:
            for cell in manifest["cells"]:
                fid = scorer(torch.from_numpy(samples[cell["key"]]))[f"fid_{scorer.space.name}"]
                out.setdefault(model, []).append({"sampler": sampler, "grid": cell["grid"], "nfe": cell["nfe"],
                                                  "fid": float(fid)})
    return out


def reference_fids(scorer, paths: list[str]) -> dict[str, float]:
    """Per model: FID of the high-accuracy PF-ODE solution from the sweep's initial noises (first seed)."""
    import numpy as np
    import torch

    from ..errors import UserError

    out = {}
    for path in paths:
        if not Path(path).is_file():
            raise UserError(f"missing input file: {path}")
        with np.load(path, allow_pickle=False) as ref:
            key = sorted(ref.files)[0]
            out[Path(path).parent.name] = float(scorer(torch.from_numpy(ref[key]))[f"fid_{scorer.space.name}"])
    return out


def space_summary(scorer, refstats: dict, x_train, n: int, n_samples: int, seed: int, reference_paths: list[str]) -> dict:
    """One feature space of the real-data section: its detector, sizes, anchors and the references' FIDs."""
    return {"name": scorer.space.name, "extractor": scorer.space.extractor, "dim": int(refstats["fid_mu"].shape[0]),
            "n_samples": n_samples, "n_reference": int(refstats["n"]), "anchors": anchors(scorer, x_train, n, seed),
            "reference": reference_fids(scorer, reference_paths)}

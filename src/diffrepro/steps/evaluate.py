"""Score every cell of one (model, sampler) sample file: trajectory error plus the dataset's metrics.

Inputs (written by `diffrepro sample`): `S.npz` with one array per cell `GRID/nfeN/seedK` (data space; images NCHW in
[-1, 1]), `S.json` = {model, sampler, cells: [{key, grid, nfe, nfe_measured, seed, wall_s, t_grid}]} beside it, and
`_reference.npz` with the reference PF-ODE solution `seedK` from the same initial noise. Output: a JSON list of rows
{dataset, model, sampler, grid, nfe, nfe_measured, seed, wall_s, traj_rmse, <metric columns>} (every numeric
column but the keys is read as a lower-is-better metric by the report, so sizes and notes go to the provenance).
Image rows also carry two text labels: `feature_space` and `fid_protocol` (detector, sample count, reference split or
file), so the report can say what each FID is.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import add_params_arg, section
from .train_classifier import add_threads_arg, limit_threads

CELL_KEYS = ("key", "grid", "nfe", "nfe_measured", "seed", "wall_s")


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="a key of the params file's `models` section")
    parser.add_argument("--sampler", required=True, help="sampler name (the sample file's stem)")
    parser.add_argument("--samples", required=True, help="results/samples/M/S.npz (S.json beside it)")
    parser.add_argument("--reference", required=True, help="results/samples/M/_reference.npz")
    parser.add_argument("--refstats", required=True, help="results/refstats/D.pt")
    parser.add_argument("--classifier", help="classifier.pt (default: the one recorded in the refstats file)")
    add_threads_arg(parser)
    parser.add_argument("--out", required=True, help="output file, e.g. results/metrics/M/S.json")


class CellScorer:
    """Metric columns of one cell's samples against the dataset's reference statistics (built once per file)."""

    def __init__(self, cfg: dict, dataset: str, refstats: dict, classifier=None):
        from .. import runtime
        from ..errors import UserError
        from ..metrics import fidelity as fd

        self.cfg, self.metrics_cfg, self.refstats = cfg, cfg["metrics"], refstats
        self.space, self.notes, self.n_samples, self.kid_subset_sizes = None, [], set(), set()
        if fd.feature_kind(cfg, dataset) == "vector":
            if refstats["feature_space"] != "vector":
                raise UserError(f"refstats of {dataset} hold feature space '{refstats['feature_space']}', not vector")
            return
        self.space = fd.feature_space(cfg, dataset, classifier or refstats.get("weights_path"))
        same_weights = fd.sha256(self.space.weights_path) == refstats["weights_sha256"]
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
        from .reference_stats import reference_label

        detector = self.space.detector or self.space.extractor
        return {"feature_space": self.space.name,
                "fid_protocol": f"{detector}; {n_samples} samples vs {reference_label(self.refstats)}"}

    def __call__(self, samples) -> dict:
        from ..metrics import fidelity as fd
        from ..metrics import vector_metrics

        m = self.metrics_cfg
        self.n_samples.add(len(samples))
        if self.space is None:
            return vector_metrics(samples, self.refstats["points"], m["swd_projections"], self.refstats["bandwidth"],
                                  seed=self.cfg["seed"])
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


def evaluate(cfg: dict, model: str, sampler: str, manifest: dict, samples, reference, scorer) -> list[dict]:
    """One row per cell. `samples`/`reference`: mappings key → array (np.load objects)."""
    import torch

    from ..errors import UserError
    from ..metrics import trajectory_error

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


def run(args) -> int:
    import time

    import numpy as np

    from .. import config, io
    from ..errors import UserError
    from ..metrics.spaces import check_weights_early

    cfg = config.load(args.params)
    dataset = section(cfg, "models", args.model, args.params)["dataset"]
    check_weights_early(cfg, dataset)  # fail fast: before torch is imported or any input is read
    from ..metrics import fidelity as fd
    from .reference_stats import load as load_refstats

    limit_threads(cfg, args.threads)
    start = time.perf_counter()
    manifest = load_cells(args.samples)
    refstats = load_refstats(args.refstats)
    if refstats["dataset"] != dataset:
        raise UserError(f"{args.refstats} holds reference statistics of '{refstats['dataset']}', but model "
                        f"{args.model} samples dataset '{dataset}'")
    scorer = CellScorer(cfg, dataset, refstats, args.classifier)
    # samples of a diverging cell may hold inf/NaN (scored as such, written as null); the reference must be finite
    samples = io.read_npz(args.samples, "sample file", finite=False)
    ref = io.read_npz(args.reference, "reference file")
    rows = evaluate(cfg, args.model, args.sampler, manifest, samples, ref, scorer)
    io.write_json(args.out, rows)
    io.write_provenance(args.out, cfg["metrics"], seed=cfg["seed"], model=args.model, sampler=args.sampler,
                        dataset=dataset, feature_space=refstats["feature_space"], cells=len(rows), notes=scorer.notes,
                        fid_protocol=sorted({r["fid_protocol"] for r in rows if "fid_protocol" in r}),
                        n_samples=sorted(scorer.n_samples), kid_subset_size=sorted(scorer.kid_subset_sizes),
                        refstats_sha256=fd.sha256(args.refstats), samples_sha256=fd.sha256(args.samples))
    print(f"{args.model}/{args.sampler}: {len(rows)} cells scored in {time.perf_counter() - start:.1f} s → {args.out}")
    return 0

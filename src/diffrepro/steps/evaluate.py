"""Score every cell of one (model, sampler) sample file (`S.npz`, `S.json` beside it, and `_reference.npz`; formats in
diffrepro.metrics.scoring): trajectory error plus the dataset's metrics. Several samplers of one model may be scored
in one process (`--sampler A B --samples A.npz B.npz --out A.json B.json`; `sampling.jobs: per_model`): the scorer
and the reference's own terms are built once, each output is the same as from its own process. Output: a JSON list of rows
{dataset, model, sampler, grid, nfe, nfe_measured, seed, wall_s, traj_rmse, <metric columns>} (every numeric
column but the keys is read as a lower-is-better metric by the report, so sizes and notes go to the provenance).
Image rows also carry two text labels: `feature_space` and `fid_protocol` (detector, sample count, reference split or
file), so the report can say what each FID is.
"""
from __future__ import annotations

from . import add_params_arg, add_threads_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="a key of the params file's `models` section")
    parser.add_argument("--sampler", required=True, nargs="+", help="sampler name(s) (the sample files' stems)")
    parser.add_argument("--samples", required=True, nargs="+", help="results/samples/M/S.npz (S.json beside it), "
                        "one per --sampler")
    parser.add_argument("--reference", required=True, help="results/samples/M/_reference.npz")
    parser.add_argument("--refstats", required=True, help="results/refstats/D.pt")
    parser.add_argument("--classifier", help="classifier.pt (default: the one recorded in the refstats file)")
    add_threads_arg(parser)
    parser.add_argument("--out", required=True, nargs="+", help="output file(s), e.g. results/metrics/M/S.json, one "
                        "per --sampler")


def run(args) -> int:
    import time

    from .. import config, io, runtime
    from ..errors import UserError
    from ..metrics.spaces import check_weights_early

    cfg = config.load(args.params)
    dataset = section(cfg, "models", args.model, args.params)["dataset"]
    check_weights_early(cfg, dataset)  # fail fast: before torch is imported or any input is read
    from ..metrics.refstats import load as load_refstats
    from ..metrics.scoring import CellScorer, load_cells, score_cells

    if not len(args.sampler) == len(args.samples) == len(args.out):
        raise UserError(f"--sampler, --samples and --out need one entry each per sampler; got {len(args.sampler)}, "
                        f"{len(args.samples)} and {len(args.out)}")
    runtime.limit_threads(cfg, args.threads)
    refstats = load_refstats(args.refstats)
    if refstats["dataset"] != dataset:
        raise UserError(f"{args.refstats} holds reference statistics of '{refstats['dataset']}', but model "
                        f"{args.model} samples dataset '{dataset}'")
    scorer = CellScorer(cfg, dataset, refstats, args.classifier)
    ref = io.read_npz(args.reference, "reference file")
    base_notes, scored = list(scorer.notes), []
    for sampler, samples_path in zip(args.sampler, args.samples):  # score everything first: no partial outputs
        start = time.perf_counter()
        manifest = load_cells(samples_path)
        # samples of a diverging cell may hold inf/NaN (scored as such, written as null); the reference must be finite
        samples = io.read_npz(samples_path, "sample file", finite=False)
        scorer.notes, scorer.n_samples, scorer.kid_subset_sizes = list(base_notes), set(), set()
        rows = score_cells(cfg, args.model, sampler, manifest, samples, ref, scorer)
        scored.append((rows, list(scorer.notes), sorted(scorer.n_samples), sorted(scorer.kid_subset_sizes),
                       time.perf_counter() - start))
    for sampler, samples_path, out, (rows, notes, n_samples, kid_sizes, wall) in zip(args.sampler, args.samples,
                                                                                    args.out, scored):
        io.write_json(out, rows)
        io.write_provenance(out, cfg["metrics"], seed=cfg["seed"], model=args.model, sampler=sampler,
                            dataset=dataset, feature_space=refstats["feature_space"], cells=len(rows), notes=notes,
                            fid_protocol=sorted({r["fid_protocol"] for r in rows if "fid_protocol" in r}),
                            n_samples=n_samples, kid_subset_size=kid_sizes,
                            refstats_sha256=io.sha256_file(args.refstats), samples_sha256=io.sha256_file(samples_path))
        print(f"{args.model}/{sampler}: {len(rows)} cells scored in {wall:.1f} s → {out}")
    return 0

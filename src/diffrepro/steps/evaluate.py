"""Score every cell of one (model, sampler) sample file (`S.npz`, `S.json` beside it, and `_reference.npz`; formats in
diffrepro.metrics.scoring): trajectory error plus the dataset's metrics. Output: a JSON list of rows
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
    parser.add_argument("--sampler", required=True, help="sampler name (the sample file's stem)")
    parser.add_argument("--samples", required=True, help="results/samples/M/S.npz (S.json beside it)")
    parser.add_argument("--reference", required=True, help="results/samples/M/_reference.npz")
    parser.add_argument("--refstats", required=True, help="results/refstats/D.pt")
    parser.add_argument("--classifier", help="classifier.pt (default: the one recorded in the refstats file)")
    add_threads_arg(parser)
    parser.add_argument("--out", required=True, help="output file, e.g. results/metrics/M/S.json")


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

    runtime.limit_threads(cfg, args.threads)
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
    rows = score_cells(cfg, args.model, args.sampler, manifest, samples, ref, scorer)
    io.write_json(args.out, rows)
    io.write_provenance(args.out, cfg["metrics"], seed=cfg["seed"], model=args.model, sampler=args.sampler,
                        dataset=dataset, feature_space=refstats["feature_space"], cells=len(rows), notes=scorer.notes,
                        fid_protocol=sorted({r["fid_protocol"] for r in rows if "fid_protocol" in r}),
                        n_samples=sorted(scorer.n_samples), kid_subset_size=sorted(scorer.kid_subset_sizes),
                        refstats_sha256=io.sha256_file(args.refstats), samples_sha256=io.sha256_file(args.samples))
    print(f"{args.model}/{args.sampler}: {len(rows)} cells scored in {time.perf_counter() - start:.1f} s → {args.out}")
    return 0

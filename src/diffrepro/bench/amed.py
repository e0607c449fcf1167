"""AMED (GEO §3.3) against iPNDM on a trained model at small NFE, with and without the analytical first step (AFS):
trajectory error to the reference PF-ODE solution of the sweep's own noises, for AMED-Solver with each trained
predictor's decisions (r per step) and with r = ½ (DPM-Solver-2), and for iPNDM on its EDM ρ = 7 grid. Prints a
table; asserts nothing. This is the evidence behind the report's AMED verdict: it separates the cost of AFS on this
model (the network's denoised estimate at σ_max, against AFS's estimate) from the quality of a predictor's decisions.
"""
from __future__ import annotations


def configure(parser):
    parser.add_argument("--params", default="params/default.yaml")
    parser.add_argument("--model", default="digits")
    parser.add_argument("--checkpoint", required=True, help="results/models/<m>/model.pt")
    parser.add_argument("--predictor", nargs="*", default=[], help="results/amed/<m>/amed_nfe<N>.pt files")
    parser.add_argument("--reference", required=True, help="results/samples/<m>/_reference.npz (seed0)")
    parser.add_argument("--steps", type=int, default=3, help="AMED-Solver steps (2 calls each, 1 fewer with AFS)")
    parser.add_argument("--threads", type=int, default=1)


def _rms(x) -> float:
    return float(x.double().pow(2).mean().sqrt())


def run(args):
    import torch

    from .. import config, io, sources
    from ..amed import decisions_on_grid, load_predictor
    from ..diffusion.denoisers import reschedule
    from ..diffusion.trajectory import trajectory_error
    from ..samplers import make_grid
    from ..samplers.solvers import AnalyticalFirstStep
    from ..samplers.sweep import initial_noise, model_sampling, native_schedule, run_cell

    torch.set_num_threads(args.threads)
    cfg = config.load(args.params)
    model = sources.load_for_params(cfg, args.model, args.checkpoint, args.params, args.threads)
    denoiser, schedule = model.denoiser(), model.schedule
    sampling = model_sampling(cfg, args.model)
    seed = sampling["seeds"][0]
    eps = initial_noise((sampling["n_samples"], *model.data_shape), cfg["seed"], seed)
    ref = torch.from_numpy(io.read_npz(args.reference, "reference file", (f"seed{seed}",))[f"seed{seed}"])

    def err(sampler, grid, options):
        x, rec = run_cell(denoiser, schedule, sampler, grid, eps, options=options)
        return rec["nfe_measured"], trajectory_error(x, ref)

    edm = native_schedule("edm", schedule)
    s_max = float(edm.sigma(float(edm.t_max)))
    with torch.no_grad():
        d = reschedule(denoiser, schedule, edm)(eps * s_max, s_max)
    afs_estimate = AnalyticalFirstStep(None, 1.0, s_max)(eps * s_max, s_max)  # EDM coordinates: α = 1
    print(f"{args.model}: σ_max = {s_max:.4g}; RMS of the network's D(x, σ_max) {_rms(d):.3f}, of AFS's estimate "
          f"{_rms(afs_estimate):.3g}, of their difference {_rms(d - afs_estimate):.3f} "
          f"({len(eps)} noises of seed {seed})")

    rows = []
    grid = make_grid("logsnr", schedule, args.steps)
    decisions = [("r = ½ (DPM-Solver-2)", {})]
    for path in args.predictor:
        predictor, payload = load_predictor(path)
        r = decisions_on_grid(predictor, "amed", schedule, grid)["r"]  # what the sweep uses on this grid
        decisions.append((f"r of the NFE-{payload['nfe']} predictor [{', '.join(f'{v:.3f}' for v in r)}]",
                          {"r": r}))
    for label, options in decisions:
        for afs in (False, True):
            nfe, e = err("amed", grid, {**options, "afs": afs})
            rows.append((f"AMED-Solver, {args.steps} steps, logSNR grid, {label}", afs, nfe, e))
    for steps in (args.steps * 2 - 1, args.steps * 2):
        for afs in (False, True):
            nfe, e = err("ipndm", make_grid("edm", schedule, steps), {"afs": afs})
            rows.append((f"iPNDM, {steps} steps, EDM ρ = 7 grid", afs, nfe, e))
    width = max(len(r[0]) for r in rows)
    print(f"{'sampler':{width}s}  AFS    NFE  trajectory error")
    for label, afs, nfe, e in rows:
        print(f"{label:{width}s}  {'yes' if afs else 'no ':3s}  {nfe:4d}  {e:.3f}")
    return 0

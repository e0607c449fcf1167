"""Wall time of the degradation grid (NI spec §2.3): N iid Gaussian samples in D dimensions, every sample noised at
each timestep of the grid (VP discrete, exact posterior), all N×N posterior weights and their statistics.

Prints two lines: the study's path (`SourcePosterior`: two Gram products for the whole grid) and the reference path
(`DenoiserPosterior`: the optimal denoiser's log-weights, one N×N×D product per timestep), each with the mean max
weight per timestep so the two can be compared. Goal: ≤ 30 s for N = 1000, D = 3072, 8 timesteps on 2 cores.
Asserts nothing.
"""
from __future__ import annotations

import time


def configure(parser) -> None:
    parser.add_argument("--n", type=int, default=1000, help="samples N (all are noised and used as queries)")
    parser.add_argument("--dim", type=int, default=3072, help="dimension D")
    parser.add_argument("--timesteps", default="200,300,400,500,600,700,800,900", help="comma-separated timesteps")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    import torch

    from ..analysis import degradation as dg
    from ..diffusion.optimal import OptimalDenoiser
    from ..diffusion.schedules import make_schedule
    from ..errors import UserError

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        steps = [int(s) for s in args.timesteps.split(",")]
    except ValueError:
        raise UserError(f"--timesteps expects comma-separated integers, got '{args.timesteps}'") from None
    if args.n < 2 or args.dim < 1:
        raise UserError("--n must be ≥ 2 and --dim ≥ 1")
    vp = make_schedule("vp_discrete")
    gen = torch.Generator().manual_seed(args.seed)
    data = dg.gaussian_data(args.n, args.dim, gen)
    sources = torch.arange(args.n)
    noise = torch.randn(args.n, args.dim, generator=gen, dtype=torch.float64)
    print(f"degradation grid: N = {args.n}, D = {args.dim}, {len(steps)} timesteps, VP discrete, exact posterior, "
          f"float64, {torch.get_num_threads()} threads")
    builds = {
        "grid (Gram factorisation, the study's path)": lambda: dg.SourcePosterior(data, sources, noise),
        "per cell (optimal denoiser log-weights)": lambda: dg.DenoiserPosterior(
            OptimalDenoiser(data, vp).log_weights, data, sources, noise),
    }
    for label, build in builds.items():
        start = time.perf_counter()
        rows = dg.degradation_curve(build(), vp, steps, sources)
        wall = time.perf_counter() - start
        values = " ".join(f"t={r['timestep']}:{r['mean_max_weight']:.3f}" for r in rows)
        print(f"  {label:46s} {wall:7.2f} s   mean max weight {values}")
    return 0

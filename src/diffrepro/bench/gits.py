"""GITS (GEO §3.2) on a trained model: trajectory error of Euler and iPNDM on the GITS grid versus the EDM ρ = 7 grid,
for several teacher set-ups (teacher grid size, warm-up count, cost metric, teacher solver). Prints a table; asserts
nothing. This is the evidence behind the report's GITS paragraph: it separates a defect of the search (the teacher
or the DP) from a property of the model.

Every variant's teacher error is printed too: the RMS distance of the teacher's final states from the reference
PF-ODE solution of the same warm-up noises (a GITS grid can only be as good as the trajectory it is fitted to).
"""
from __future__ import annotations

import time


def configure(parser):
    parser.add_argument("--checkpoint", required=True, help="results/models/<m>/model.pt")
    parser.add_argument("--n", type=int, default=128, help="evaluation noises (not the warm-up noises)")
    parser.add_argument("--nfe", type=int, nargs="*", default=[4, 6, 8, 10])
    parser.add_argument("--reference-steps", type=int, default=200, help="Heun steps of the reference solution")
    parser.add_argument("--variants", nargs="*", default=None,
                        help="teacher_steps:warmup:metric:teacher[:coeff] (default: a fixed set)")
    parser.add_argument("--threads", type=int, default=1)


DEFAULT_VARIANTS = ["30:32:dev:ipndm", "60:256:dev:ipndm", "60:256:l2:ipndm", "60:256:dev:heun", "60:256:l2:heun",
                    "60:256:l2:ipndm:1.0"]


def run(args):
    import torch

    from .. import training
    from ..diffusion.denoisers import reschedule
    from ..metrics import trajectory_error
    from ..samplers import convert_grid
    from ..samplers import solvers as S
    from ..samplers.gits import GITS
    from ..samplers.grids import edm
    from ..samplers.reference import reference_solution
    from ..samplers.sweep import native_schedule, to_data

    torch.set_num_threads(args.threads)
    net, spec = training.load_model(args.checkpoint)
    den, schedule = training.model_denoiser(net, spec), training.schedule_from_spec(spec)
    sched = native_schedule("edm", schedule)
    vden = reschedule(den, schedule, sched)
    shape = tuple(net.data_shape)
    gen = torch.Generator().manual_seed(12345)
    eps = torch.randn((args.n, *shape), generator=gen)
    with torch.no_grad():
        ref = reference_solution(den, schedule, eps, steps=args.reference_steps)
        sigma0 = float(sched.sigma(float(convert_grid(edm(schedule, 2), schedule, sched)[0])))

        def error(solver, model_grid):
            grid = convert_grid(model_grid, schedule, sched)
            out = getattr(S, solver)(vden, eps * sigma0, grid.tolist(), sched)
            return trajectory_error(to_data(out, sched, float(grid[-1])), ref)

        base = {(s, n): error(s, edm(schedule, n)) for s in ("euler", "ipndm") for n in args.nfe}
        print(f"reference: Heun {args.reference_steps} steps; σ_max = {sigma0:.4g}; {args.n} evaluation noises")
        print("variant (teacher steps:warm-up:metric:teacher[:coeff]) | teacher err | solver | "
              + " | ".join(f"NFE {n} GITS / EDM" for n in args.nfe) + " | indices")
        for variant in args.variants or DEFAULT_VARIANTS:
            parts = variant.split(":")
            steps, warm, metric, teacher = int(parts[0]), int(parts[1]), parts[2], parts[3]
            coeff = float(parts[4]) if len(parts) > 4 else 1.15
            teacher_grid = convert_grid(edm(schedule, steps), schedule, sched)
            warm_eps = torch.randn((warm, *shape), generator=torch.Generator().manual_seed(999))
            start = time.perf_counter()
            gits = GITS(vden, sched, teacher_grid, warm_eps * sigma0, coeff=coeff, metric=metric, teacher=teacher)
            teacher_out = getattr(S, teacher)(vden, warm_eps[:32] * sigma0, teacher_grid.tolist(), sched)
            teacher_err = trajectory_error(to_data(teacher_out, sched, float(teacher_grid[-1])),
                                           reference_solution(den, schedule, warm_eps[:32], steps=args.reference_steps))
            for solver in ("euler", "ipndm"):
                cells, idx = [], []
                for n in args.nfe:
                    g = convert_grid(gits(n), sched, schedule)
                    cells.append(f"{error(solver, g):.4f} / {base[(solver, n)]:.4f}")
                    idx.append(gits.indices[n])
                print(f"{variant} | {teacher_err:.4f} | {solver} | " + " | ".join(cells)
                      + f" | {idx[0]} ({time.perf_counter() - start:.0f} s)")

"""Wall time of the NI executor versus the native sampler at equal NFE, and the executor's prediction memory.

The denoiser is the exact optimal denoiser over random data (CIFAR-sized by default), so one evaluation costs about
what a small network does. Prints one line per sampler: native seconds, NI seconds, ratio NI/native (target ≤ 1.05),
predictions the executor held at once (measured) and their memory, for the traced matrix and for a banded
(window) variant of it. Asserts nothing.
"""
from __future__ import annotations

import time


def configure(parser):
    parser.add_argument("--samplers", default="ddim,dpmpp2m,dpmpp3m,deis,ipndm,unipc,heun,ddpm")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--dim", type=int, default=3072)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=3, help="also time a banded (window) variant of each matrix")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")


def _optimal(schedule, data):
    import torch

    sq = (data ** 2).sum(1)

    def D(x, t):
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        logits = (2 * a * x @ data.T - a * a * sq[None]) / (2 * s * s)
        return torch.softmax(logits, 1) @ data
    return D


def _best_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(args):
    import torch

    from ..diffusion.denoisers import reschedule
    from ..diffusion.schedules import make_schedule
    from ..natural_inference.executor import execute
    from ..natural_inference.sharpness import sharpen
    from ..natural_inference.tracer import native_schedule, trace_sampler
    from ..samplers import TorchNoise, convert_grid, get_sampler, make_grid

    dtype = getattr(torch, args.dtype)
    g = torch.Generator().manual_seed(0)
    schedule = make_schedule("vp_linear")
    data = torch.randn(args.n_train, args.dim, generator=g).to(dtype)
    D = _optimal(schedule, data)
    eps0 = torch.randn(args.batch, args.dim, generator=g).to(dtype)
    image_mb = args.batch * args.dim * eps0.element_size() / 2**20
    print(f"bench ni: NFE {args.nfe}, batch {args.batch} × {args.dim} {args.dtype}, optimal denoiser over "
          f"{args.n_train} points, best of {args.repeats}, {torch.get_num_threads()} threads")
    print(f"{'sampler':10} {'native s':>9} {'NI s':>9} {'ratio':>6} {'kept':>5} {'MB':>7} | "
          f"{'banded s':>9} {'ratio':>6} {'kept':>5} {'MB':>7}")
    for name in args.samplers.split(","):
        spec = get_sampler(name)
        steps = spec.steps_for_nfe(args.nfe)
        if steps is None:
            print(f"{name:10} skipped: {args.nfe} is not a multiple of {spec.nfe_per_step}")
            continue
        m = trace_sampler(name, schedule, args.nfe)
        native = native_schedule(spec.coords, schedule) or schedule
        grid = convert_grid(make_grid(spec.default_grid, schedule, steps), schedule, native)
        Dn = reschedule(D, schedule, native)
        fn = spec.bind()
        x0 = eps0 * float(native.sigma(float(grid[0])))
        t_native = _best_time(lambda: fn(Dn, x0, grid, native, TorchNoise(torch.Generator().manual_seed(1))),
                              args.repeats)
        sa, sb = {}, {}
        t_ni = _best_time(lambda: execute(m, D, eps0, TorchNoise(torch.Generator().manual_seed(1)), stats=sa),
                          args.repeats)
        banded = sharpen(m, window=args.window) if m.deterministic else m
        t_band = _best_time(lambda: execute(banded, D, eps0, TorchNoise(torch.Generator().manual_seed(1)),
                                            stats=sb), args.repeats)
        k, kb = sa["max_kept"], sb["max_kept"]
        print(f"{name:10} {t_native:9.4f} {t_ni:9.4f} {t_ni / t_native:6.3f} {k:5d} {k * image_mb:7.1f} | "
              f"{t_band:9.4f} {t_band / t_native:6.3f} {kb:5d} {kb * image_mb:7.1f}")

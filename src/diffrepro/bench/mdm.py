"""Kernel cost of the MDM objective per training batch, as a fraction of one network forward (goal ≤ 5 %).

Two figures per row, both in float64 for every t of a batch:
- kernel: the transition kernel q(u_t | x), i.e. Φ(t), Σ(t) and the Cholesky factor L that draws u_t (fixed
  diffusions read (Φ, Σ) from their Taylor table; learned ones recompute it every step, as their Q, D move);
- all K×K work: the kernel plus drawing the importance-sampled times and the ELBO weight W = L⁻¹GL⁻ᵀ.
The per-batch cost is a few dozen small ops whatever the data size, so the fraction falls as the network grows:
judge it on the networks of the configuration you run. Times are the best of 5 blocks of --repeats calls. Prints a
table and the verdict (on the kernel column); asserts nothing (timings never gate tests)."""
from __future__ import annotations

import argparse
import time

from .. import config

GOAL = 0.05  # issue 6: kernel cost per batch ≤ 5 % of one network forward


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params/default.yaml", help="params YAML with mdm.studies")
    parser.add_argument("--dataset", default=None, help="one study (default: every study)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)


def _time(fn, repeats: int, blocks: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def kernel_only(diffusion, t):
    """Φ, Σ and L at the batch's times (what drawing u_t needs)."""
    from ..mdm.linear import safe_cholesky

    phi, sigma = diffusion.kernel(t)
    return phi, safe_cholesky(sigma, "bench")


def all_kernel_work(diffusion, times, batch: int):
    """Times drawn as in training, the kernel, and W, as `mdm.elbo.elbo` does per batch."""
    import torch

    from ..mdm.elbo import score_weight
    from ..mdm.linear import F64

    t = times.from_uniform(torch.rand(batch, dtype=F64))
    _, chol = kernel_only(diffusion, t)
    return score_weight(chol, diffusion.beta.beta(t), diffusion.matrices()[1])


def run(args: argparse.Namespace) -> None:
    cfg = config.load(args.params)
    import torch

    from ..mdm import study as S
    from ..mdm.linear import num_variables

    torch.set_num_threads(args.threads)
    shapes = {"toy2d": (2,), "gaussian": (cfg["datasets"].get("gaussian", {}).get("dim", 2),),
              "gaussian_mixture": (cfg["datasets"].get("gmm", {}).get("dim", 16),),
              "digits": (1, 8, 8), "mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
    studies = cfg["mdm"]["studies"]
    names = [args.dataset] if args.dataset else list(studies)
    print(f"{args.params}: cost per batch / one network forward, {args.threads} thread(s), goal ≤ {GOAL:.0%} "
          "(kernel column)")
    print(f"{'dataset':10s} {'diffusion':10s} {'batch':>6s} {'forward ms':>11s} {'kernel ms':>10s} {'fraction':>9s} "
          f"{'all K×K ms':>11s} {'fraction':>9s}")
    over = []
    for dataset in names:
        st = S.study_config(cfg, dataset)
        shape = shapes[cfg["datasets"][dataset]["kind"]]
        batch = st["train"]["batch_size"]
        times = S.times_of(cfg)
        for name in st["diffusions"]:
            diffusion = S.make_diffusion(cfg, name, 0)
            net = S.make_network(st, num_variables(name), shape, 0)
            u = torch.randn(batch, diffusion.k, *shape)
            tt = torch.rand(batch)
            t = times.from_uniform(torch.rand(batch, dtype=torch.float64))
            with torch.no_grad():
                fwd = _time(lambda: net(u, tt), args.repeats)
                ker = _time(lambda: kernel_only(diffusion, t), args.repeats)
                full = _time(lambda: all_kernel_work(diffusion, times, batch), args.repeats)
            print(f"{dataset:10s} {name:10s} {batch:6d} {fwd * 1e3:11.3f} {ker * 1e3:10.3f} {ker / fwd:9.1%} "
                  f"{full * 1e3:11.3f} {full / fwd:9.1%}")
            if ker / fwd > GOAL:
                over.append(f"{dataset}/{name}")
    print("goal met on every row" if not over else f"goal missed on {len(over)} row(s): {', '.join(over)}")

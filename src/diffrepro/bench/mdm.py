"""Kernel cost of the MDM objective per training batch, as a fraction of one network forward (goal ≤ 5 %).

The kernel work per batch: Φ(t) and Σ(t) for every t of the batch (series / Van Loan exponential, float64), the
Cholesky factor and W = L⁻¹GL⁻ᵀ. Fixed diffusions read (Φ, Σ) from their Taylor table; learned ones recompute the
kernel every step (their Q, D move). The per-batch cost is a few dozen small float64 ops whatever the data size, so
the fraction falls as the network grows: judge it on the networks of the configuration you run. Prints a table and
the verdict against the goal; asserts nothing (timings never gate tests)."""
from __future__ import annotations

import argparse
import time

from .. import config


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default="params/default.yaml", help="params YAML with mdm.studies")
    parser.add_argument("--dataset", default=None, help="one study (default: every study)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)


GOAL = 0.05  # issue 6: kernel cost per batch ≤ 5 % of one network forward


def _time(fn, repeats: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def kernel_work(diffusion, times, batch: int):
    import torch

    from ..mdm.linear import F64, safe_cholesky

    t = times.from_uniform(torch.rand(batch, dtype=F64))
    _, sigma = diffusion.kernel(t)
    chol = safe_cholesky(sigma, "bench")
    _, d = diffusion.matrices()
    root_g = torch.sqrt(2.0 * diffusion.beta.beta(t))[:, None, None] * torch.diag(torch.sqrt(torch.diagonal(d)))
    half = torch.linalg.solve_triangular(chol, root_g, upper=False)
    return half @ half.mT  # W = L⁻¹GL⁻ᵀ, as in mdm.elbo.integrand


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
    print(f"{args.params}: kernel per batch / one network forward, {args.threads} thread(s), goal ≤ {GOAL:.0%}")
    print(f"{'dataset':10s} {'diffusion':10s} {'batch':>6s} {'kernel ms':>10s} {'forward ms':>11s} {'fraction':>9s}")
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
            with torch.no_grad():
                fwd = _time(lambda: net(u, tt), args.repeats)
                ker = _time(lambda: kernel_work(diffusion, times, batch), args.repeats)
            print(f"{dataset:10s} {name:10s} {batch:6d} {ker * 1e3:10.3f} {fwd * 1e3:11.3f} {ker / fwd:9.1%}")
            if ker / fwd > GOAL:
                over.append(f"{dataset}/{name}")
    print("goal met on every row" if not over else f"goal missed on {len(over)} row(s): {', '.join(over)}")

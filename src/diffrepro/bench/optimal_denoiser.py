"""Throughput and peak working memory of the optimal (empirical) denoiser, as a ratio to torch.mm on the same shapes.

"Same shapes" = one [batch, d] × [d, N] matrix product: the query-vs-training-set inner products that any exact
implementation must compute. The optimal denoiser needs that product plus, in the dense worst case (large σ, every
weight counts), a second product of the same size (weights [batch, N] × [N, d]) and batch·N exponentials, so its
dense ceiling is ratio ≈ 0.5; where the softmax is nearly one-hot (most noise levels in high dimension) the second
product is pruned (exactly, see diffusion/optimal.py) and the ratio approaches 1.

Data: training set ~ N(0, 0.5² I); queries x = x_i + σ·ε for random training points i (EDM coordinates, t = σ).
Peak memory is the working memory of one call above what was allocated before it (CUDA: allocator peak; CPU: Linux
peak RSS, reset through /proc/self/clear_refs, with glibc's mmap threshold pinned so freed buffers leave RSS), printed
for two training-set sizes to show it is bounded by the chunk size, not N.
"""
from __future__ import annotations

import ctypes
import time

from ..errors import UserError


def configure(parser) -> None:
    parser.add_argument("--n", type=int, default=50_000, help="training points N")
    parser.add_argument("--d", type=int, default=3072, help="dimension d")
    parser.add_argument("--batch", type=int, default=256, help="query batch size")
    parser.add_argument("--chunk", type=int, default=4096, help="training points per chunk")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (best is reported)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--sigmas", default="0.2,2,80", help="comma-separated noise levels σ (EDM/VE) to time")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)


def _pin_glibc_mmap_threshold() -> None:
    """Large buffers get their own mmap and return to the OS when freed, so peak RSS tracks live memory."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 16)  # M_MMAP_THRESHOLD = 64 KiB (also disables the dynamic threshold)
    except (OSError, AttributeError):
        pass


def _rss_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _peak_working_mib(fn, device) -> float | None:
    """Peak memory during fn() above the memory in use just before it, in MiB (None if not measurable)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # reset VmHWM (peak RSS) to the current RSS
    except OSError:
        return None
    base = _rss_kib("VmRSS")
    fn()
    peak = _rss_kib("VmHWM")
    return None if base is None or peak is None else (peak - base) / 1024


def _best_seconds(fn, repeats: int, device) -> tuple[float, float]:
    """Best (wall, process CPU) seconds over `repeats` calls after one warm-up. CPU time is the steadier figure on
    a shared machine (it does not count time spent waiting for a core); on CUDA only wall time means anything."""
    import torch

    fn()  # warm-up
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best_wall, best_cpu = min(best_wall, time.perf_counter() - wall), min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu


def _fmt_mib(v: float | None) -> str:
    return "n/a" if v is None else f"{v:8.1f} MiB"


def run(args) -> int:
    _pin_glibc_mmap_threshold()
    import torch

    from ..diffusion.optimal import OptimalDenoiser
    from ..diffusion.schedules import make_schedule

    for key in ("n", "d", "batch", "chunk", "repeats"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key} must be ≥ 1, got {getattr(args, key)}")
    try:
        sigmas = [float(s) for s in args.sigmas.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--sigmas must be comma-separated numbers, got '{args.sigmas}'") from None
    if not sigmas or min(sigmas) <= 0:
        raise UserError("--sigmas needs at least one positive noise level")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but CUDA is not available")
    dtype = getattr(torch, args.dtype)
    gen = torch.Generator().manual_seed(args.seed)
    sched = make_schedule("edm")

    def setup(n):
        train = (0.5 * torch.randn(n, args.d, generator=gen, dtype=dtype)).to(device)
        src = torch.randint(0, n, (args.batch,), generator=gen)
        eps = torch.randn(args.batch, args.d, generator=gen, dtype=dtype).to(device)
        return train, train[src], eps

    train, x0, eps = setup(args.n)
    den = OptimalDenoiser(train, sched, chunk_size=args.chunk, dtype=dtype)
    q = x0 + sigmas[0] * eps
    mm = lambda: torch.mm(q, train.T)  # noqa: E731  the [batch, d] × [d, N] product
    mm_wall, mm_cpu = _best_seconds(mm, args.repeats, device)
    gflop = 2 * args.batch * args.d * args.n / 1e9
    print(f"optimal denoiser benchmark: N={args.n} d={args.d} batch={args.batch} chunk={args.chunk} "
          f"dtype={args.dtype} device={device} threads={torch.get_num_threads()} repeats={args.repeats} (best)")
    print(f"torch.mm [batch,d]x[d,N]: wall {mm_wall:.3f} s ({gflop / mm_wall:.1f} GFLOP/s), cpu {mm_cpu:.3f} s")
    print(f"{'sigma':>8} {'wall s':>9} {'ratio(wall)':>12} {'cpu s':>9} {'ratio(cpu)':>11} {'queries/s':>10}")
    ratios = []
    for sigma in sigmas:
        x = x0 + sigma * eps
        wall, cpu = _best_seconds(lambda: den(x, sigma), args.repeats, device)
        ratios.append((mm_wall / wall, mm_cpu / cpu))
        print(f"{sigma:8.3g} {wall:9.3f} {mm_wall / wall:12.3f} {cpu:9.3f} {mm_cpu / cpu:11.3f} "
              f"{args.batch / wall:10.1f}")
    print(f"ratio = torch.mm time / optimal-denoiser time: wall min {min(r[0] for r in ratios):.3f}, "
          f"cpu min {min(r[1] for r in ratios):.3f} (goal ≥ 0.5; the dense ceiling is ≈ 0.5, see the docstring)")

    bytes_per = torch.finfo(dtype).bits // 8
    print("peak working memory of one call (dense σ, above memory in use before the call):")
    print(f"{'N':>8} {'optimal':>12} {'torch.mm':>12} {'train set':>12} {'B×N logits':>12}")
    sigma_dense = max(sigmas)
    for n in (args.n, max(1, args.n // 4)):
        if n != args.n:
            del den, train, x0, eps, q
            train, x0, eps = setup(n)
            den = OptimalDenoiser(train, sched, chunk_size=args.chunk, dtype=dtype)
            q = x0 + sigma_dense * eps
        x = x0 + sigma_dense * eps
        peak_opt = _peak_working_mib(lambda: den(x, sigma_dense), device)
        peak_mm = _peak_working_mib(lambda: torch.mm(q, train.T), device)
        print(f"{n:8d} {_fmt_mib(peak_opt):>12} {_fmt_mib(peak_mm):>12} "
              f"{_fmt_mib(n * args.d * bytes_per / 2**20):>12} {_fmt_mib(args.batch * n * bytes_per / 2**20):>12}")
    print(f"expected working set ≈ batch×chunk logits + 3·batch×d (scaled queries, accumulator, output) = "
          f"{_fmt_mib((args.batch * args.chunk + 3 * args.batch * args.d) * bytes_per / 2**20).strip()} "
          f"(independent of N)")
    return 0

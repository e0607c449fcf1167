"""Each sampler's own per-step overhead as a fraction of one network call (small UNet, batch 64, CPU), beside the
same figure for diffusers' scheduler implementing the method. Prints a table; asserts nothing.

overhead per step = the sampling loop's time with the network replaced by a zero-cost stand-in (FrozenNet, returning
a precomputed output), divided by the number of steps, as a percentage of one real forward (best of `repeats`
timings each: robust on a shared machine). For ours the loop includes the parameterisation adapter, rescheduling
into the sampler's coordinates, grid set-up and the sampler; for diffusers `set_timesteps`, `scale_model_input` and
`step`.
"""
from __future__ import annotations

import statistics
import time

# ours → (diffusers class, constructor options) where diffusers implements the same method
DIFFUSERS = {
    "ddim": ("DDIMScheduler", {"clip_sample": False, "set_alpha_to_one": True}),
    "ddpm": ("DDPMScheduler", {"clip_sample": False}),
    "euler": ("EulerDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm2": ("DPMSolverSinglestepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver",
                                              "final_sigmas_type": "sigma_min"}),
    "dpm3": ("DPMSolverSinglestepScheduler", {"solver_order": 3, "algorithm_type": "dpmsolver",
                                              "final_sigmas_type": "sigma_min"}),
    "dpmpp2s": ("DPMSolverSinglestepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
    "dpmpp2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}),
    "dpmpp3m": ("DPMSolverMultistepScheduler", {"solver_order": 3, "algorithm_type": "dpmsolver++"}),
    "deis": ("DEISMultistepScheduler", {"solver_order": 3}),
    "unipc": ("UniPCMultistepScheduler", {"solver_order": 3}),
}


def configure(parser):
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=8, help="UNet input H = W (1 channel)")
    parser.add_argument("--channels", type=int, default=32, help="UNet base channels (the default digits model)")
    parser.add_argument("--nfe", type=int, default=12, help="denoiser calls per sampling run (rounded to the method)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many timings")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samplers", nargs="*", default=None, help="subset of sampler names (default: all)")


class FrozenNet:
    """Stands in for the network at zero cost: returns one precomputed output (the real forward is timed apart)."""

    def __init__(self, output):
        self.output = output

    def __call__(self, x, t, y=None):
        return self.output


def _min_time(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        steps = fn()
        best = min(best, time.perf_counter() - start)
    return best, steps


def _ours(name, net, schedule, x, nfe, adapter: bool = True):
    """One sampling run; returns the number of steps. adapter=True: through the sweep (eps → x0 adapter,
    rescheduling, NFE counting); False: the sampler alone, its denoiser returning a precomputed x0 at no cost."""
    import torch

    from ..diffusion.denoisers import network_denoiser
    from ..samplers import convert_grid, get_sampler, make_grid
    from ..samplers.sweep import native_schedule, run_cell

    spec = get_sampler(name)
    steps = max(1, nfe // spec.nfe_per_step)
    grid = make_grid(spec.default_grid, schedule, steps)
    with torch.no_grad():
        if adapter:
            run_cell(network_denoiser(net, schedule, "eps"), schedule, name, grid, x)
        else:
            native = native_schedule(spec.coords, schedule)
            spec.bind()(lambda xx, t: net.output, x, convert_grid(grid, schedule, native).tolist(), native,
                        _FreeNoise(x))
    return steps


class _FreeNoise:
    def __init__(self, like):
        self.z = like * 0.5

    def draw(self, like):
        return self.z


def _theirs(cls_name, opts, net, x, nfe):
    import diffusers
    import torch

    sch = getattr(diffusers, cls_name)(num_train_timesteps=1000, beta_schedule="linear", prediction_type="epsilon",
                                       **opts)
    heun = cls_name == "HeunDiscreteScheduler"
    steps = nfe // 2 + 1 if heun else nfe  # Heun: 2K − 1 calls for K steps
    sch.set_timesteps(steps)
    sample = x * float(sch.init_noise_sigma)
    with torch.no_grad():
        for t in sch.timesteps:
            out = net(sch.scale_model_input(sample, t), torch.full((len(x),), float(t) / 1000.0))
            sample = sch.step(out, t, sample).prev_sample
    return steps


def run(args) -> int:
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # diffusers deprecation notices

    from ..diffusion.schedules import make_schedule
    from ..models import build_model
    from ..samplers import SAMPLERS

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    spec = {"arch": "unet", "schedule": {"name": "vp_linear"},
            "unet": {"channels": args.channels, "channel_mult": [1, 2], "num_res_blocks": 1,
                     "attention_resolutions": []}}
    net = build_model(spec, [1, args.image_size, args.image_size]).eval()
    schedule = make_schedule("vp_linear")
    x = torch.randn(args.batch, 1, args.image_size, args.image_size)
    t = torch.full((args.batch,), 0.5)
    with torch.no_grad():
        out = net(x, t)
        call, _ = _min_time(lambda: net(x, t), max(3, args.repeats))
    frozen = FrozenNet(out)
    rows = []
    for name in args.samplers or list(SAMPLERS):
        figures = []
        for adapter in (False, True):
            _ours(name, frozen, schedule, x, args.nfe, adapter)  # warm-up (imports, caches)
            seconds, steps = _min_time(lambda: _ours(name, frozen, schedule, x, args.nfe, adapter), args.repeats)
            figures.append(seconds / steps / call)
        theirs = None
        if name in DIFFUSERS:
            cls_name, opts = DIFFUSERS[name]
            _theirs(cls_name, opts, frozen, x, args.nfe)
            seconds, steps = _min_time(lambda: _theirs(cls_name, opts, frozen, x, args.nfe), args.repeats)
            theirs = seconds / steps / call
        rows.append((name, *figures, theirs, DIFFUSERS.get(name, ("-",))[0]))
    print(f"per-step overhead, % of one UNet forward ({1000 * call:.1f} ms: batch {args.batch}, "
          f"1x{args.image_size}x{args.image_size}, {args.channels} channels, {args.threads} thread(s)); "
          f"NFE {args.nfe}, best of {args.repeats}")
    print("  sampler: the sampler alone (x0 denoiser at no cost); +adapter: through the sweep (eps→x0 adapter, "
          "rescheduling, NFE counter); diffusers: set_timesteps + scale_model_input + step (eps → x0 inside)")
    print(f"{'sampler':10s} {'sampler %':>10s} {'+adapter %':>11s} {'diffusers %':>12s}  diffusers scheduler")
    for name, own, full, theirs, cls_name in rows:
        t_str = f"{100 * theirs:12.3f}" if theirs is not None else f"{'-':>12s}"
        print(f"{name:10s} {100 * own:10.3f} {100 * full:11.3f} {t_str}  {cls_name}")
    return 0

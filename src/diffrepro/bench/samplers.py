"""Each sampler's own overhead per denoiser call as a fraction of one network call (small UNet, batch 64, CPU),
beside the same figure for diffusers' scheduler implementing the method. Prints a table; asserts nothing.

overhead per call = the sampling loop's time with the network replaced by a zero-cost stand-in (FrozenNet, returning
a precomputed output), divided by the number of network calls it made (= per step for one-call steps; a Heun or
singlestep DPM step costs 2–3 calls, and diffusers counts each call as a step), as a percentage of one real forward
(best of `repeats` timings each, the columns timed in turn so that a load spike hits them alike: robust on a shared
machine). For ours the loop includes the parameterisation adapter, rescheduling into the sampler's coordinates, grid
set-up and the sampler; for diffusers `set_timesteps`, `scale_model_input` and `step`.

The published-network row puts ours and diffusers' loop around the same EDM-format network (`net(x_ve, σ) -> D`, EDM's
VP preconditioner around the same UNet: `bench.edm_format`): ours through the sweep (`run_cell` on the denoiser
`denoiser_for(net)`, default the stand-in `edm_format.edm_denoiser`; swap in the model source's adapter), theirs the
documented loop with `prediction_type="sample"` (the net's D is the x0 they step with), timed alternately, best of
`--published-repeats`. Goal: ours ≤ theirs and ≤ 2 % of a forward, per sampler.
"""
from __future__ import annotations

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
    parser.add_argument("--published-repeats", type=int, default=25,
                        help="best of this many alternating timings for the published-network row")



def _counted(net, fn):
    """`fn` returning how many times it called the stand-in `net` (what a timing is divided by)."""
    def run():
        start = net.calls
        fn()
        return net.calls - start
    return run


def _min_time(fn, repeats, sync=None):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        steps = fn()
        if sync is not None:
            sync()
        best = min(best, time.perf_counter() - start)
    return best, steps


def _min_times_alternating(fns, repeats, sync=None):
    """Best time of each of `fns`, timed in turn (a load spike hits all of them alike); returns [(seconds, steps)]."""
    best = [(float("inf"), None)] * len(fns)
    for _ in range(repeats):
        best = [min(b, _min_time(fn, 1, sync), key=lambda v: v[0]) for b, fn in zip(best, fns)]
    return best


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
            spec.bind()(lambda xx, t: net(xx, t), x, convert_grid(grid, schedule, native).tolist(), native,
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


# samplers of the published-network row → diffusers' scheduler for the same method, and how it scales its sample
PUBLISHED = {
    "euler": ("EulerDiscreteScheduler", {}, "ve"),
    "heun": ("HeunDiscreteScheduler", {}, "ve"),
    "dpmpp2m": ("DPMSolverMultistepScheduler", {"solver_order": 2, "algorithm_type": "dpmsolver++"}, "vp"),
}


def _sweep_path(denoiser, schedule, name, x, nfe):
    """One sampling run through the sweep (`run_cell`) on any D(x, t); returns the number of steps."""
    from ..samplers import get_sampler, make_grid
    from ..samplers.sweep import run_cell

    spec = get_sampler(name)
    steps = max(1, nfe // spec.nfe_per_step)
    run_cell(denoiser, schedule, name, make_grid(spec.default_grid, schedule, steps), x)
    return steps


def _theirs_edm(cls_name, opts, scaling, net, x, nfe):
    """diffusers' loop around an EDM-format net: D = net(x_ve, σ) is the x0 it steps with (prediction_type sample).
    Euler/Heun keep x in VE scale (x_ve = sample), DPM-Solver++ in VP scale (x_ve = sample·√(σ²+1))."""
    import diffusers
    import torch

    sch = getattr(diffusers, cls_name)(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4,
                                       beta_end=0.02, prediction_type="sample", **opts)
    steps = nfe // 2 + 1 if cls_name == "HeunDiscreteScheduler" else nfe
    sch.set_timesteps(steps, device=x.device)
    sample = x * float(sch.init_noise_sigma)
    with torch.no_grad():
        for i, t in enumerate(sch.timesteps):
            sch.scale_model_input(sample, t)  # the documented loop (sets the step index); the EDM net scales itself
            sigma = sch.sigmas[i]
            x_ve = sample if scaling == "ve" else sample * (sigma**2 + 1).sqrt()
            sample = sch.step(net(x_ve, sigma), t, sample).prev_sample
    return steps


def published_overhead(denoiser_for, net, schedule, x, names, nfe, repeats, sync=None):
    """Overhead per network call of ours (sweep path around `denoiser_for(net)`) and of diffusers' loop around the same
    EDM-format `net`, as fractions of one real forward `net(x, σ)`. Returns (forward seconds, rows (name, ours,
    theirs, diffusers class)). `denoiser_for(net) -> D(x, t)` on `schedule`; `sync` e.g. torch.cuda.synchronize."""
    import torch

    from .edm_format import FrozenNet

    sigma = torch.full((len(x),), float(schedule.sigma_ve(0.5)), device=x.device)
    with torch.no_grad():
        out = net(x, sigma)
        forward, _ = _min_time(lambda: net(x, sigma), max(3, repeats // 3), sync)
    frozen = FrozenNet(out)
    rows = []
    for name in names:
        cls_name, opts, scaling = PUBLISHED[name]
        ours = _counted(frozen, lambda: _sweep_path(denoiser_for(frozen), schedule, name, x, nfe))
        theirs = _counted(frozen, lambda: _theirs_edm(cls_name, opts, scaling, frozen, x, nfe))
        ours(), theirs()  # warm-up
        (s_ours, k_ours), (s_theirs, k_theirs) = _min_times_alternating([ours, theirs], repeats, sync)
        rows.append((name, s_ours / k_ours / forward, s_theirs / k_theirs / forward, cls_name))
    return forward, rows


def print_published(rows, forward, label: str) -> bool:
    """The published-network table with the goal verdict per sampler; returns whether every row meets it."""
    print(f"\npublished-network path ({label}; forward {1000 * forward:.1f} ms): overhead per network call, "
          f"% of one forward")
    print(f"{'sampler':10s} {'ours %':>8s} {'diffusers %':>12s}  goal (ours <= diffusers and <= 2 %)")
    met = True
    for name, ours, theirs, cls_name in rows:
        ok = ours <= theirs and ours <= 0.02
        met &= ok
        print(f"{name:10s} {100 * ours:8.3f} {100 * theirs:12.3f}  {'met' if ok else 'NOT met'} ({cls_name})")
    print(f"verdict: {'met' if met else 'not met'} on every sampler of the row" if rows else "verdict: no rows")
    return met


def run(args) -> int:
    import warnings

    import torch

    warnings.filterwarnings("ignore", category=FutureWarning)  # diffusers deprecation notices

    from ..diffusion.schedules import make_schedule
    from .edm_format import FrozenNet
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
        runs = [_counted(frozen, lambda a=adapter: _ours(name, frozen, schedule, x, args.nfe, a))
                for adapter in (False, True)]
        if name in DIFFUSERS:
            runs.append(_counted(frozen, lambda: _theirs(*DIFFUSERS[name], frozen, x, args.nfe)))
        for fn in runs:
            fn()  # warm-up (imports, caches)
        figures = [seconds / calls / call for seconds, calls in _min_times_alternating(runs, args.repeats)]
        rows.append((name, *figures[:2], figures[2] if len(figures) > 2 else None, DIFFUSERS.get(name, ("-",))[0]))
    print(f"overhead per network call (= per step for one-call steps), % of one UNet forward ({1000 * call:.1f} ms: "
          f"batch {args.batch}, "
          f"1x{args.image_size}x{args.image_size}, {args.channels} channels, {args.threads} thread(s)); "
          f"NFE {args.nfe}, best of {args.repeats}")
    print("  sampler: the sampler alone (x0 denoiser at no cost); +adapter: through the sweep (eps→x0 adapter, "
          "rescheduling, NFE counter); diffusers: set_timesteps + scale_model_input + step (eps → x0 inside)")
    print(f"{'sampler':10s} {'sampler %':>10s} {'+adapter %':>11s} {'diffusers %':>12s}  diffusers scheduler")
    for name, own, full, theirs, cls_name in rows:
        t_str = f"{100 * theirs:12.3f}" if theirs is not None else f"{'-':>12s}"
        print(f"{name:10s} {100 * own:10.3f} {100 * full:11.3f} {t_str}  {cls_name}")

    from .edm_format import EDMFormatVP, edm_denoiser, vp_schedule

    edm_net = EDMFormatVP(net, args.image_size, 1).eval()
    names = [n for n in (args.samplers or list(SAMPLERS)) if n in PUBLISHED]
    forward, rows = published_overhead(edm_denoiser, edm_net, vp_schedule(), x, names, args.nfe,
                                       args.published_repeats)
    print_published(rows, forward, f"EDM-format VP net around the same UNet, stand-in adapter; NFE {args.nfe}, "
                                   f"best of {args.published_repeats} alternating timings")
    return 0

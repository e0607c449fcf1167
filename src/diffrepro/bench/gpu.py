"""GPU readiness in one command (`diffrepro bench gpu`, `make gpu-check`): a short sweep on an EDM-format network.

Where CUDA is present: a DDPM++-sized UNet with random weights in EDM's VP format (`bench.edm_format`; or a
published model through `--model results/models/<m>/model.pt`), batch 256 by default, a few samplers at NFE 10.
Per sampler it prints images/s in fp32 and under bf16 autocast (`runtime.amp_bf16`), the peak CUDA memory, the
largest |fp32 − bf16| difference of the final samples (same initial noise), and the overhead per network call of the
sweep path (network replaced by a zero-cost stand-in, as in `bench samplers`) beside diffusers' loop on the same
network. fp32 means fp32: TF32 is switched off for it. Where CUDA is absent it says why and exits 0.
Nothing is asserted; a machine with a GPU runs it in well under 5 minutes.
"""
from __future__ import annotations

import time

DEFAULT_SAMPLERS = ["euler", "heun", "dpmpp2m", "ipndm", "ddim"]


def configure(parser):
    parser.add_argument("--batch", type=int, default=256, help="images per batch (256–512 is the intended range)")
    parser.add_argument("--nfe", type=int, default=10)
    parser.add_argument("--samplers", nargs="*", default=DEFAULT_SAMPLERS)
    parser.add_argument("--channels", type=int, default=128, help="base channels of the random DDPM++-sized UNet")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--model", default=None,
                        help="results/models/<m>/model.pt of a published model (diffrepro.sources) instead of the "
                             "random network; loading an EDM pickle runs code stored in that file")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many timings")
    parser.add_argument("--channels-last", action="store_true", help="runtime.channels_last for the network")
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cpu only walks the code path at toy sizes (autocast is then a no-op)")


def cuda_missing_reason() -> str | None:
    """Why there is no CUDA device here, or None when there is one."""
    import torch

    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is a CPU-only build"
    return f"torch {torch.__version__} (CUDA {torch.version.cuda}) finds no CUDA device"


def _network(args, device):
    """(net, schedule, data shape, denoiser_for): the one place a model is obtained (switch to sources here)."""
    from ..runtime import to_device
    from .edm_format import ddpmpp_sized, edm_denoiser, vp_schedule

    runtime = {"channels_last": args.channels_last}
    if args.model is None:
        net = to_device(ddpmpp_sized(args.channels, args.image_size).eval(), runtime, device)
        return net, vp_schedule(), [3, args.image_size, args.image_size], edm_denoiser
    from ..sources import load_model  # the model-source seam
    from ..sources.edm import edm_denoiser as source_adapter

    loaded = load_model(args.model, device=str(device))
    if loaded.kind != "edm":
        from ..errors import UserError

        raise UserError(f"--model {args.model}: bench gpu needs an EDM-format network (source kind 'edm'), "
                        f"got kind '{loaded.kind}'")
    net = to_device(loaded.net.eval(), runtime, device)
    # the source's own adapter, around the real net or (for the overhead figure) the zero-cost stand-in
    return net, loaded.schedule, list(loaded.data_shape), lambda stand_in: source_adapter(stand_in, loaded.schedule)


def _timed(fn, repeats, sync):
    best, out = float("inf"), None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best, out


def run(args) -> int:
    import warnings

    import torch

    from ..runtime import autocast
    from ..samplers import get_sampler, make_grid
    from ..samplers.sweep import initial_noise, run_cell
    from .samplers import PUBLISHED, print_published, published_overhead

    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.device == "cuda":
        reason = cuda_missing_reason()
        if reason is not None:
            print(f"bench gpu: no CUDA here ({reason}); nothing measured. Run it on a machine with a GPU "
                  f"(make gpu-check).")
            return 0
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is fp32 (cuDNN's TF32 default would blur the bf16 figure)
    torch.backends.cudnn.allow_tf32 = False
    net, schedule, shape, denoiser_for = _network(args, device)
    params = sum(p.numel() for p in net.parameters()) if isinstance(net, torch.nn.Module) else 0
    eps0 = initial_noise([args.batch, *shape], 0, 0).to(device)
    amp = {"amp_bf16": True}
    name_dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (code path only)"
    print(f"bench gpu: {name_dev}; network {params / 1e6:.1f} M parameters, batch {args.batch}x{shape}, "
          f"NFE {args.nfe}, best of {args.repeats}{', channels_last' if args.channels_last else ''}")
    sigma = torch.full((args.batch,), float(schedule.sigma_ve(0.5)), device=device)
    with torch.no_grad():
        fwd32, _ = _timed(lambda: net(eps0, sigma), args.repeats, sync)
        with autocast(amp, device):
            fwd16, _ = _timed(lambda: net(eps0, sigma), args.repeats, sync)
    print(f"forward: fp32 {1000 * fwd32:.1f} ms, bf16 autocast {1000 * fwd16:.1f} ms "
          f"({args.batch / fwd32:.0f} / {args.batch / fwd16:.0f} images/s per call)")
    print(f"{'sampler':10s} {'NFE':>4s} {'fp32 img/s':>11s} {'bf16 img/s':>11s} {'peak GiB':>9s} "
          f"{'max|fp32-bf16|':>15s}")
    for name in args.samplers:
        spec = get_sampler(name)
        steps = spec.steps_for_nfe(args.nfe)
        if steps is None:
            print(f"{name:10s} skipped: no step count gives exactly NFE {args.nfe}")
            continue
        grid = make_grid(spec.default_grid, schedule, steps)
        den = denoiser_for(net)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        s32, (x32, rec) = _timed(lambda: run_cell(den, schedule, name, grid, eps0), args.repeats, sync)
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        with autocast(amp, device):
            s16, (x16, _) = _timed(lambda: run_cell(den, schedule, name, grid, eps0), args.repeats, sync)
        diff = float((x32.float() - x16.float()).abs().max())
        print(f"{name:10s} {rec['nfe_measured']:4d} {args.batch / s32:11.0f} {args.batch / s16:11.0f} "
              f"{peak:9.2f} {diff:15.3e}")
    names = [n for n in args.samplers if n in PUBLISHED]
    with autocast(amp, device):
        forward, rows = published_overhead(denoiser_for, net, schedule, eps0, names, args.nfe,
                                           max(5, 3 * args.repeats), sync)
    print_published(rows, forward, f"bf16 autocast forward, batch {args.batch}, NFE {args.nfe}")
    return 0

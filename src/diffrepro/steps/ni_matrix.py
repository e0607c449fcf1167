"""Trace a sampler of the library into its Natural Inference matrices (C, B, nodes) and save them in the paper
repository's `.npz` layout (plus CSV exports of C and B and a marginal table on stdout).

Example: diffrepro ni matrix --sampler dpmpp2m --nfe 10 --schedule vp_linear --grid quadratic_t --out m.npz
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from . import parse_assignments


def configure(parser):
    parser.add_argument("--sampler", required=True, help="sampler registry name (diffrepro.samplers.SAMPLERS)")
    n = parser.add_mutually_exclusive_group(required=True)
    n.add_argument("--steps", type=int, help="sampler steps K (NFE = steps × NFE per step)")
    n.add_argument("--nfe", type=int, help="denoiser evaluations (must be a whole number of steps)")
    parser.add_argument("--schedule", default="vp_linear", help="model schedule (vp_linear, vp_discrete, cosine, flow)")
    parser.add_argument("--schedule-option", action="append", metavar="KEY=VALUE", help="schedule parameter")
    parser.add_argument("--grid", default=None, help="time grid name (default: the sampler's own)")
    parser.add_argument("--grid-option", action="append", metavar="KEY=VALUE", help="grid option, e.g. rho=7")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="sampler option, e.g. eta=0.5")
    parser.add_argument("--out", required=True, help="output .npz (C, B, nodes under the paper's keys)")
    parser.add_argument("--csv", action="store_true", help="also write OUT_C.csv, OUT_Cnorm.csv and OUT_B.csv")


def run(args):
    from ..diffusion.schedules import make_schedule
    from ..io import write_provenance
    from ..natural_inference.matrix import marginal_lines
    from ..natural_inference.tracer import trace_sampler
    from ..samplers import get_sampler

    if not str(args.out).endswith(".npz"):
        raise UserError(f"--out must end in .npz, got {args.out}")
    schedule = make_schedule(args.schedule, **parse_assignments(args.schedule_option, "--schedule-option"))
    spec = get_sampler(args.sampler)
    options = parse_assignments(args.option, "--option")
    nfe = args.nfe if args.nfe is not None else spec.nfe_for_steps(args.steps, options=options)
    if nfe < 1:
        raise UserError(f"--steps/--nfe must be positive, got {nfe}")
    try:
        m = trace_sampler(args.sampler, schedule, nfe, grid=args.grid,
                          grid_options=parse_assignments(args.grid_option, "--grid-option"),
                          **options)
    except (TypeError, ValueError) as exc:
        raise UserError(f"cannot trace sampler '{args.sampler}': {exc}") from None
    out = Path(args.out)
    m.save(out)
    if args.csv:
        stem = out.with_suffix("")
        for which, suffix in (("C", "_C.csv"), ("Cnorm", "_Cnorm.csv"), ("B", "_B.csv")):
            m.to_csv(f"{stem}{suffix}", which=which)
    write_provenance(out, cfg_section={"sampler": args.sampler, "nfe": nfe, "schedule": schedule.describe(),
                                       "grid": m.meta.get("grid_name"), "meta": m.meta})
    print(f"ni matrix: {args.sampler} NFE {m.n} on {m.meta['grid_name']} ({args.schedule}) -> {out}")
    print("\n".join(marginal_lines(m)))

"""Fit one coefficient matrix the sweep runs as a sampler (`natural_inference.fit`): `ni_tuned` at an NFE of
ni.search.nfe or `ni_sharp` at ni.sharpness.nfe, on one model. Writes OUT (paper repository layout, read by
`diffrepro sample --matrix`) and OUT.json (the fit record: start baseline, training errors, loss curve).

Example: diffrepro ni fit --params P --model digits --sampler ni_tuned --nfe 10 \
    --checkpoint results/models/digits/model.pt --out results/ni/fit/digits/ni_tuned_nfe010.npz
"""
from __future__ import annotations

from pathlib import Path

from . import add_fit_args, section


def configure(parser):
    add_fit_args(parser, "--sampler", "the matrix sampler (ni_tuned: ni.search, ni_sharp: ni.sharpness)",
                 "results/ni/fit/M/S_nfeNNN.npz (its .json is written beside it)", choices=("ni_tuned", "ni_sharp"))


def run(args) -> int:
    from .. import config, io, sources
    from ..errors import UserError
    from ..natural_inference.fit import check_request, fit_matrix

    cfg = config.load(args.params)
    section(cfg, "models", args.model, args.params)
    block = check_request(cfg["ni"], args.sampler, args.model, args.nfe, args.params)  # before the model loads
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserError(f"--out {out}: the matrix file must end in .npz (its fit record .json is written beside it)")
    model = sources.load_for_params(cfg, args.model, args.checkpoint, args.params, args.threads)
    matrix, record = fit_matrix(cfg["ni"], args.sampler, args.nfe, args.model, model, cfg["seed"])
    io.ensure_writable_dir(out.parent)
    matrix.save(out)
    io.write_json(out.with_suffix(".json"), record)
    io.write_provenance(out, cfg["ni"][block], seed=cfg["seed"], model=args.model, sampler=args.sampler, nfe=args.nfe)
    print(f"ni fit {args.model}/{args.sampler} NFE {args.nfe}: {record['summary']} in {record['wall_s']:.1f} s → {out}")
    return 0

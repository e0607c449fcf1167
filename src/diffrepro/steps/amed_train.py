"""Train an AMED predictor (GEO §3.3) for one (model, AMED sampler, NFE) by distillation from a finer-grid teacher.

Example: diffrepro amed train --params P --model digits --solver amed --nfe 4 \
    --checkpoint results/models/digits/model.pt --out results/amed/digits/amed_nfe4.pt
"""
from __future__ import annotations

from pathlib import Path

from . import add_fit_args, section


def configure(parser):
    add_fit_args(parser, "--solver", "amed or amed_plugin_<base> (ipndm, dpmpp3m, euler, dpm2)",
                 "results/amed/M/S_nfeN.pt")


def run(args) -> int:
    import torch

    from .. import config, io, sources
    from ..amed import predictor_payload
    from ..amed.fit import check_request, fit_predictor
    from ..samplers.sweep import model_sampling

    cfg = config.load(args.params)
    section(cfg, "models", args.model, args.params)
    sampling = model_sampling(cfg, args.model)
    check_request(sampling, args.solver, args.nfe)  # a bad solver or NFE fails before the model is loaded
    model = sources.load_for_params(cfg, args.model, args.checkpoint, args.params, args.threads)
    predictor, summary = fit_predictor(model.denoiser(), model.schedule, list(model.data_shape), sampling, args.model,
                                       args.solver, args.nfe, cfg["seed"], model.device)
    out = Path(args.out)
    io.ensure_writable_dir(out.parent)
    io.write_with(out, lambda tmp: torch.save(predictor_payload(predictor, summary, model=args.model, nfe=args.nfe), tmp))
    io.write_json(out.with_suffix(".json"), summary)
    io.write_provenance(out, sampling.get("amed", {}), seed=cfg["seed"], model=args.model, sampler=args.solver,
                        nfe=args.nfe)
    print(f"amed train {args.model}/{args.solver} NFE {args.nfe}: loss {summary['loss_initial']:.4g} (r = ½) → "
          f"{summary['loss_final']:.4g}, r = {[round(r, 3) for r in summary['decisions']['r']]} in "
          f"{summary['train_wall_s']:.1f} s → {out}")
    return 0

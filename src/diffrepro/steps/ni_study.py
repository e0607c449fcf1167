"""Natural Inference study, one part per call (`--part`; diffrepro.reports.ni): writes `<out-dir>/section.json` for
the report. The search part scores the matrices `ni fit` fitted (`--fitted`, one per NFE, each with its .json record).

Example: diffrepro ni study --params params/default.yaml --part matrices --out-dir results/ni/matrices
"""
from __future__ import annotations

import time

from . import add_params_arg


def configure(parser):
    from ..reports.ni import PARTS

    add_params_arg(parser)
    parser.add_argument("--part", required=True, choices=PARTS)
    parser.add_argument("--out-dir", required=True, help="folder for the part's section.json, figures and matrices")
    parser.add_argument("--model", default=None, help="search/sharpness/file: one of ni.<part>.models")
    parser.add_argument("--checkpoint", help="results/models/<model>/model.pt (every part but matrices)")
    parser.add_argument("--data", help="results/data/<dataset>/data.npz of the model's dataset")
    parser.add_argument("--classifier", help="results/classifiers/<dataset>/classifier.pt (classifier FID)")
    parser.add_argument("--tuned", help="cfg: results/ni/fit/<model>/ni_tuned_nfeNNN.npz for the sampler ni_tuned")
    parser.add_argument("--fitted", action="append", default=[], metavar="FILE",
                        help="search: results/ni/fit/<model>/ni_tuned_nfeNNN.npz (`ni fit`), one per ni.search.nfe")
    parser.add_argument("--name", default=None, help="file: a key of ni.files.matrices (the stored matrix to replay)")
    parser.add_argument("--threads", type=int, default=None)


def _inputs(cfg: dict, args, model_name: str | None):
    """The part's inputs read from the given paths (PartInputs)."""
    import torch

    from .. import data, runtime, sources
    from ..errors import UserError
    from ..metrics.classifier import load_classifier
    from ..natural_inference.fit import load_fitted
    from ..reports.ni import PartInputs

    inp = PartInputs(cfg, args.params, model_name, tuned=args.tuned, matrix_name=args.name,
                     fitted=[load_fitted(path) for path in args.fitted])
    if model_name is None:
        return inp
    needs_data = args.part in ("sharpness", "cfg") or (args.part == "search" and args.classifier)
    if not args.checkpoint or (needs_data and not args.data):
        raise UserError(f"ni study --part {args.part}: pass --checkpoint" + (" and --data" if needs_data else "")
                        + f" of model '{model_name}'")
    inp.model = sources.load_model(args.checkpoint, device=runtime.setup(cfg.get("runtime"), args.threads))
    if args.data:
        arrays = data.load_npz(args.data, ("x_train", "y_train"))
        inp.x_train, inp.y_train = torch.as_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"])
    inp.classifier = load_classifier(args.classifier) if args.classifier else None
    return inp


def run(args):
    from .. import config
    from ..errors import UserError
    from ..io import ensure_writable_dir, write_json, write_provenance
    from ..reports.ni import PART_FUNCTIONS, part_model

    cfg = config.load(args.params)
    model_name = part_model(cfg, args.part, args.model, args.params)
    if model_name is not None and model_name not in cfg["models"]:
        raise UserError(f"{args.params}: ni.{args.part}.model '{model_name}' is not a key of 'models'")
    out = ensure_writable_dir(args.out_dir)
    start = time.perf_counter()
    sec = PART_FUNCTIONS[args.part](_inputs(cfg, args, model_name), out)
    sec["wall_s"] = time.perf_counter() - start
    dest = out / "section.json"
    write_json(dest, sec)
    write_provenance(dest, cfg["ni"], seed=cfg["seed"], part=args.part)
    print(f"ni study {args.part}: {len(sec['tables'])} tables, {len(sec['figures'])} figures in {sec['wall_s']:.1f} s "
          f"→ {dest}")
    return 0

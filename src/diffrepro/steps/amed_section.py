"""Write the AMED report section: training losses, the chosen r per step (figure) and the r each sweep cell used.

Example: diffrepro amed section --params P --predictors results/amed/*/*.pt \
    --manifests results/samples/*/amed*.json --out-dir results/studies/amed
"""
from __future__ import annotations

from pathlib import Path

from . import add_out_dir_arg, add_params_arg


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--predictors", nargs="*", default=[], help="`amed train` outputs (.pt; the .json beside it)")
    parser.add_argument("--manifests", nargs="*", default=[], help="sample manifests of the AMED samplers")
    add_out_dir_arg(parser)


def run(args) -> int:
    import json

    from .. import config, io
    from ..amed import load_predictor
    from ..amed.section import amed_section
    from ..errors import UserError

    cfg = config.load(args.params)
    summaries = [load_predictor(p)[1]["summary"] for p in args.predictors]
    manifests = {}
    for path in args.manifests:
        try:
            manifests[path] = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise UserError(f"{path}: not a readable sample manifest ({exc})") from None
    out_dir = Path(args.out_dir)
    io.ensure_writable_dir(out_dir)
    section = amed_section(summaries, manifests, out_dir, cfg.get("report", {}).get("scale", "default"),
                           str(args.params))
    io.write_json(out_dir / "section.json", section)
    print(f"amed section: {len(summaries)} predictors, {len(manifests)} manifests → {out_dir / 'section.json'}")
    return 0

"""Train one MDM (ε-network + linear diffusion, jointly) on a prepared dataset, as `mdm.studies.<dataset>` says."""
from __future__ import annotations

import argparse
from pathlib import Path

from .. import config
from ..errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params YAML (validated)")
    parser.add_argument("--dataset", required=True, help="key of mdm.studies")
    parser.add_argument("--diffusion", required=True, help="vp | cld | alda | malda | learned2 | learned3")
    parser.add_argument("--seed", type=int, required=True, help="one of mdm.studies.<dataset>.seeds")
    parser.add_argument("--data", required=True, help="results/data/<dataset>/data.npz")
    parser.add_argument("--out", required=True, help="output model.pt")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")


def run(args: argparse.Namespace) -> None:
    cfg = config.load(args.params)
    import torch

    from ..io import write_provenance, write_with
    from ..mdm import study as S

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    st = S.study_config(cfg, args.dataset)
    if args.diffusion not in st["diffusions"]:
        raise UserError(f"--diffusion {args.diffusion} is not in mdm.studies.{args.dataset}.diffusions "
                        f"{st['diffusions']}")
    if args.seed not in st["seeds"]:
        raise UserError(f"--seed {args.seed} is not in mdm.studies.{args.dataset}.seeds {st['seeds']}")
    data = S.load_split(args.data, "train", S.levels_of(cfg, args.dataset))
    payload = S.train_model(cfg, args.dataset, args.diffusion, args.seed, data)
    history = payload["history"]
    out = Path(args.out)
    write_with(out, lambda p: torch.save(payload, p))
    write_provenance(out, cfg_section={"mdm": cfg["mdm"], "dataset": cfg["datasets"][args.dataset]}, seed=args.seed,
                     train_wall_s=history["wall_s"])
    print(f"mdm train {args.dataset}/{args.diffusion}/seed{args.seed}: {st['train']['steps']} steps in "
          f"{history['wall_s']:.1f}s, final loss {history['loss'][-1]:.4f}")

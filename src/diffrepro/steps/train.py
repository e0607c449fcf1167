"""Train one model (DSM with EMA; resumes from out-dir/ckpt/); writes `model.pt` (EMA weights + spec) and
`train.json` (loss log, wall time)."""
from __future__ import annotations

from pathlib import Path

from . import add_out_dir_arg, add_params_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--model", required=True, help="a key of the params file's `models` section")
    parser.add_argument("--data", required=True, help="the prepared data.npz of the model's dataset")
    add_out_dir_arg(parser)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (runtime.num_threads wins)")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")


def run(args) -> int:
    import torch

    from .. import config, data, io, runtime, training
    from ..validation import check_data_size

    cfg = config.load(args.params)
    spec = section(cfg, "models", args.model, args.params)
    runtime.set_num_threads(cfg.get("runtime"), args.threads)
    out = io.ensure_writable_dir(args.out_dir)
    arrays = data.load_npz(args.data)
    check_data_size(arrays["x_train"], cfg["datasets"].get(spec["dataset"], {}), args.data,
                    f"dataset '{spec['dataset']}' of model '{args.model}'")
    data_sha = io.sha256_file(args.data)
    blob = training.train(args.model, spec, arrays, out, cfg["seed"], cfg.get("runtime"), data_sha,
                          progress=not args.no_progress)
    blob["provenance"] = io.provenance(spec, seed=cfg["seed"], model=args.model, data=str(args.data),
                                       data_sha256=data_sha)
    model_path = io.write_with(Path(out) / "model.pt", lambda tmp: torch.save(blob, tmp))
    summary = {k: blob[k] for k in ("name", "steps", "steps_this_run", "train_wall_s", "loss_log", "num_classes",
                                    "data_shape", "schedule", "parameterisation", "device")}
    io.write_json(Path(out) / "train.json", summary)
    io.write_provenance(model_path, spec, seed=cfg["seed"], model=args.model, data_sha256=data_sha)
    last = blob["loss_log"][-1][1] if blob["loss_log"] else float("nan")
    print(f"{args.model}: {blob['steps']} steps ({blob['steps_this_run']} this run, {blob['train_wall_s']:.1f} s), "
          f"final loss {last:.4f} → {model_path}")
    return 0

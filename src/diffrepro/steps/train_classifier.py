"""Train the feature-space classifier of one image dataset on its training split; write `classifier.pt`.

The classifier's penultimate layer is the FID/KID feature space `<dataset>_classifier` (diffrepro.metrics.fidelity);
its test accuracy goes into the provenance sidecar.
"""
from __future__ import annotations

from . import add_params_arg, add_threads_arg, section


def configure(parser):
    add_params_arg(parser)
    parser.add_argument("--dataset", required=True, help="a key of the params file's `datasets` section")
    parser.add_argument("--data", required=True, help="the dataset's data.npz (from `diffrepro prepare`)")
    parser.add_argument("--out", required=True, help="output file, e.g. results/classifiers/D/classifier.pt")
    add_threads_arg(parser)


def run(args) -> int:
    import torch

    from .. import config, io, runtime
    from ..errors import UserError
    from ..metrics.classifier import accuracy, checkpoint, classifier_params, train_classifier

    cfg = config.load(args.params)
    section(cfg, "datasets", args.dataset, args.params)
    hp = classifier_params(cfg, args.dataset)
    keys = ("x_train", "y_train", "x_test", "y_test")
    arrays = io.read_npz(args.data, "input file", keys)
    x_train, y_train, x_test, y_test = (arrays[k] for k in keys)
    if x_train.ndim != 4 or y_train.min() < 0:
        raise UserError(f"{args.data}: the feature classifier needs labelled images (dataset {args.dataset} has "
                        f"shape {x_train.shape[1:]}, min label {y_train.min()})")
    device = runtime.select_device(cfg.get("runtime"))
    runtime.limit_threads(cfg, args.threads)
    seed = runtime.derive_seed(cfg["seed"], "classifier", args.dataset)
    model = train_classifier(x_train, y_train, hp["steps"], hp["batch_size"], hp["lr"], hp["width"],
                             hp["feature_dim"], seed, str(device))
    test_acc = accuracy(model, torch.from_numpy(x_test), torch.from_numpy(y_test))
    train_acc = accuracy(model, torch.from_numpy(x_train), torch.from_numpy(y_train))
    ckpt = checkpoint(model, dataset=args.dataset, test_accuracy=test_acc, train_accuracy=train_acc)
    io.write_with(args.out, lambda tmp: torch.save(ckpt, tmp))
    io.write_provenance(args.out, hp, seed=seed, dataset=args.dataset, test_accuracy=test_acc,
                        train_accuracy=train_acc, n_train=len(x_train), n_test=len(x_test), arch=model.arch)
    print(f"{args.dataset} classifier: test accuracy {test_acc:.4f} (train {train_acc:.4f}) → {args.out}")
    return 0

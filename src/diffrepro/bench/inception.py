"""Throughput of the published FID detector (StyleGAN3/EDM TorchScript Inception) on CPU by chunk size: the same
random 28×28 grey images through one whole-batch call and through chunks of k images (channels-last), timed in one
run, beside the plain whole-batch call in the default layout, with the features' largest relative difference from the
whole-batch call.

Example: diffrepro bench inception --n 128 --chunks 1 4 16
"""
from __future__ import annotations

import time


def configure(parser):
    parser.add_argument("--n", type=int, default=128, help="images per configuration")
    parser.add_argument("--size", type=int, default=28, help="image side in pixels (resized to 299 by the detector)")
    parser.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16], help="chunk sizes to time")
    parser.add_argument("--threads", type=int, default=None)


def run(args):
    import torch

    from ..metrics import inception

    if args.threads:
        torch.set_num_threads(args.threads)
    path = inception.check_detector(inception.default_path())
    images = torch.randint(0, 256, (args.n, 1, args.size, args.size), generator=torch.Generator().manual_seed(0),
                           dtype=torch.uint8)

    def timed(chunk: int) -> tuple[float, torch.Tensor]:
        detector = inception.load_detector(path, cpu_chunk=chunk)
        with torch.inference_mode():
            detector(images[:2])  # warm-up
            start = time.perf_counter()
            features = detector(images)
        return (time.perf_counter() - start) / args.n, features

    script = inception._load_script(path)
    with torch.inference_mode():  # the plain call: one whole batch in the default (contiguous NCHW) layout
        script(inception._tf_input(images[:2]))
        start = time.perf_counter()
        script(inception._tf_input(images))
        plain = (time.perf_counter() - start) / args.n
    whole, reference = timed(args.n)
    print(f"TorchScript Inception, {args.n} images {args.size}×{args.size} → 299×299, {torch.get_num_threads()} "
          f"threads: whole batch {1000 * plain:.0f} ms/image contiguous, {1000 * whole:.0f} ms/image channels-last")
    for chunk in args.chunks:
        seconds, features = timed(chunk)
        rel = float((features - reference).abs().max() / reference.abs().max())
        print(f"  chunks of {chunk:3d}: {1000 * seconds:.0f} ms/image, {plain / seconds:.2f}× the contiguous whole "
              f"batch's throughput, max relative feature difference {rel:.1e} from the whole batch")
    return 0

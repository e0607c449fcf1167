"""The published FID detector on real images: FID of a real dataset's train split against its test split, and of
uniform noise against the same test split, in the StyleGAN3/EDM TorchScript Inception's space (the detector of the
EDM/GEO/AMED tables; `make assets-inception`). The two anchors every real-data FID of the pipeline sits between.
Prints the figures and the detector's throughput; asserts nothing.

Example: diffrepro bench real-fid --dataset fashion_mnist --n 2000 --noise 500
"""
from __future__ import annotations

import time


def configure(parser):
    parser.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist", "cifar10"))
    parser.add_argument("--root", default=None, help="torchvision root (default: the pipeline's dataset cache)")
    parser.add_argument("--n", type=int, default=2000, help="images of each split (the first n)")
    parser.add_argument("--noise", type=int, default=500, help="uniform-noise images")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None)


def run(args):
    import numpy as np
    import torch

    from ..data.images import torchvision_split
    from ..metrics import inception
    from ..metrics.fidelity import frechet_distance_of_features

    if args.threads:
        torch.set_num_threads(args.threads)
    detector = inception.load_detector(inception.check_detector(inception.default_path()))
    def split(train: bool) -> np.ndarray:  # NCHW in [-1, 1] → the detector's uint8 range
        x = torchvision_split(args.dataset, args.root, download=False, train=train)[0][: args.n]
        return np.round((x + 1.0) * 127.5).clip(0, 255).astype(np.uint8)

    train, test = split(True), split(False)
    noise = np.random.default_rng(0).integers(0, 256, (args.noise, *train.shape[1:]), dtype=np.uint8)

    def features(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images)
        with torch.no_grad():
            return torch.cat([detector(x[i:i + args.batch]) for i in range(0, len(x), args.batch)]).double()

    start = time.perf_counter()
    f_train, f_test, f_noise = features(train), features(test), features(noise)
    wall = time.perf_counter() - start
    n_images = len(train) + len(test) + len(noise)
    print(f"real-Inception FID ({args.dataset}, TorchScript detector, {torch.get_num_threads()} threads): "
          f"train ({len(train)}) vs test ({len(test)}) {frechet_distance_of_features(f_train, f_test):.2f}; "
          f"uniform noise ({len(noise)}) vs test {frechet_distance_of_features(f_noise, f_test):.2f}; "
          f"{n_images} images in {wall:.0f} s ({wall / n_images:.3f} s per image)")
    return 0

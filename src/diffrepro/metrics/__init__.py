"""Layer 7: sample quality metrics. FID/KID/IS via torch-fidelity in a named feature space (`fidelity`), the
feature classifier (`classifier`), the published FID detector (`inception`: the StyleGAN3/EDM TorchScript Inception,
obtained by `diffrepro assets inception`), distances for vector data and the trajectory error (`distances`), and
which feature space a dataset uses (`spaces`, torch-free so the Snakefile can import it cheaply).

The distance functions are re-exported lazily: `import diffrepro.metrics.spaces` does not import torch.
"""
_DISTANCES = ("energy_distance", "median_bandwidth", "mmd_rbf", "sliced_wasserstein", "trajectory_error",
              "vector_metrics", "VectorReference")
__all__ = list(_DISTANCES)


def __getattr__(name):
    if name in _DISTANCES:
        from . import distances

        return getattr(distances, name)
    raise AttributeError(f"module 'diffrepro.metrics' has no attribute {name!r}")

"""Vector datasets with known structure: toy 2-D shapes and the exact-answer beds (Gaussian, Gaussian mixture).

Each generator takes a NumPy `Generator` and returns float32 arrays plus the known parameters (float64), so the
closed-form denoisers of `diffusion.gaussian` can be evaluated on exactly the distribution that produced the data.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError


def eight_gaussians(rng: np.random.Generator, n: int, radius: float = 2.0, std: float = 0.1) -> np.ndarray:
    """Eight isotropic Gaussians with centres evenly spaced on a circle of `radius`."""
    angles = 2 * np.pi * rng.integers(0, 8, size=n) / 8
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres + std * rng.standard_normal((n, 2))


def two_moons(rng: np.random.Generator, n: int, noise: float = 0.05) -> np.ndarray:
    """Two interleaved half circles (as scikit-learn's make_moons), centred and scaled to roughly [-2, 2]."""
    upper = rng.random(n) < 0.5
    angle = np.pi * rng.random(n)
    x = np.where(upper, np.cos(angle), 1 - np.cos(angle))
    y = np.where(upper, np.sin(angle), 0.5 - np.sin(angle))
    pts = np.stack([x - 0.5, y - 0.25], axis=1) * 2.0
    return pts + noise * 2.0 * rng.standard_normal((n, 2))


def checkerboard(rng: np.random.Generator, n: int, cells: int = 4, half_width: float = 2.0) -> np.ndarray:
    """Uniform on the black squares of a `cells`×`cells` board covering [-half_width, half_width]²."""
    size = 2 * half_width / cells
    i = rng.integers(0, cells, size=n)
    j = (2 * rng.integers(0, cells // 2, size=n) + (i % 2)) % cells  # (i + j) even: a black square
    u = rng.random((n, 2))
    return np.stack([i + u[:, 0], j + u[:, 1]], axis=1) * size - half_width


TOY2D = {"eight_gaussians": eight_gaussians, "two_moons": two_moons, "checkerboard": checkerboard}


def toy2d(rng: np.random.Generator, n: int, shape: str) -> tuple[np.ndarray, dict]:
    if shape not in TOY2D:
        raise UserError(f"toy2d shape '{shape}' is unknown (known: {sorted(TOY2D)})")
    return TOY2D[shape](rng, n), {}


def gaussian_params(rng: np.random.Generator, dim: int) -> dict:
    """A random Gaussian N(μ, Σ): μ ~ N(0, 0.25 I); Σ = Q diag(s) Qᵀ with Q Haar-random and s log-uniform in
    [0.05, 1] (a spread spectrum, so the high-dimension effects are visible)."""
    mean = 0.5 * rng.standard_normal(dim)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    eig = np.exp(rng.uniform(np.log(0.05), 0.0, size=dim))
    cov = (q * eig) @ q.T
    return {"gauss_mean": mean, "gauss_cov": 0.5 * (cov + cov.T)}


def gaussian(rng: np.random.Generator, n: int, params: dict) -> np.ndarray:
    chol = np.linalg.cholesky(params["gauss_cov"])
    return params["gauss_mean"] + rng.standard_normal((n, len(params["gauss_mean"]))) @ chol.T


def gmm_params(rng: np.random.Generator, dim: int, components: int, component_std: float) -> dict:
    """K isotropic components: weights ~ Dirichlet(5·1), means ~ N(0, I), shared std `component_std`."""
    weights = rng.dirichlet(5.0 * np.ones(components))
    means = rng.standard_normal((components, dim))
    return {"gmm_weights": weights, "gmm_means": means, "gmm_std": np.float64(component_std)}


def gaussian_mixture(rng: np.random.Generator, n: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Samples and their component labels."""
    k = rng.choice(len(params["gmm_weights"]), size=n, p=params["gmm_weights"])
    x = params["gmm_means"][k] + float(params["gmm_std"]) * rng.standard_normal((n, params["gmm_means"].shape[1]))
    return x, k

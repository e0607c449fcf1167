"""Figures of the NI study (matplotlib figures returned, saved by the caller): coefficient-matrix heatmaps with a
diverging colormap centred at 0 (negative "self guidance" entries in blue), sharpness proxies and search losses."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402


def heatmaps(panels: list[tuple[str, np.ndarray]], title: str, cols: int = 4, clip: float | None = None):
    """One heatmap per (label, matrix); colour scale symmetric about 0 per panel (clipped at ±clip if given)."""
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 2.9 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (label, M) in zip(axes.flat, panels):
        M = np.where(np.isfinite(M), M, 0.0)
        lim = float(np.abs(M).max()) or 1.0
        if clip is not None:
            lim = min(lim, clip)
        im = ax.imshow(M, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, -lim, lim), interpolation="nearest")
        neg = int((M < -1e-12).sum())
        ax.set_title(f"{label}\nmin {M.min():.2g}, {neg} negative", fontsize=8)
        ax.set_xlabel("prediction j", fontsize=7)
        ax.set_ylabel("output row k", fontsize=7)
        ax.tick_params(labelsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def sharpness_figure(weights: list[float], hf: list[float], nn: list[float], base_hf: float, base_nn: float,
                     window: int | None):
    panels = [(hf, base_hf, "high-frequency energy (mean squared Laplacian)"),
              (nn, base_nn, "distance to nearest training sample (RMS per coordinate)")]
    panels = [p for p in panels if np.all(np.isfinite(p[0]))]  # vector data have no Laplacian
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.4), squeeze=False)
    for ax, (vals, base, name) in zip(axes[0], panels):
        ax.plot(weights, vals, "o-", label=f"window {window}, boosted last weight")
        ax.axhline(base, color="grey", ls="--", label="full-history Δσ matrix")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("last-prediction weight multiplier")
        ax.set_ylabel(name, fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def loss_curves(curves: dict[str, list[float]]):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for label, losses in curves.items():
        ax.plot(np.arange(1, len(losses) + 1), losses, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("Adam iteration")
    ax.set_ylabel("training objective (mean per-sample RMSE)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def image_rows(rows: list[tuple[str, np.ndarray]], n: int = 12):
    """Rows of sample images (NCHW, [-1, 1], first channel), one labelled row per variant."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.6, 0.75 * len(rows)), squeeze=False)
    for ax, (label, x) in zip(axes[:, 0], rows):
        imgs = np.clip(np.asarray(x[:n, 0]), -1, 1)
        ax.imshow(np.concatenate(list(imgs), axis=1), cmap="gray", vmin=-1, vmax=1)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def cfg_figure(summary: dict, beds: list[str], samplers: list[str], scales: list[float]):
    """FID and mean overshoot against the guidance scale, one line per sampler, one row per denoiser."""
    fig, axes = plt.subplots(len(beds), 2, figsize=(9, 3.0 * len(beds)), squeeze=False)
    for row, bed in zip(axes, beds):
        for ax, key, name in ((row[0], "fid", "FID (classifier features)"), (row[1], "excess", "mean excess beyond ±1")):
            for s in samplers:
                ax.plot(scales, [summary[(bed, float(w), s)][key] for w in scales], "o-", label=s)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("guidance scale")
            ax.set_ylabel(name, fontsize=8)
            ax.set_title(f"{bed} denoiser", fontsize=9)
        row[0].legend(fontsize=7)
    fig.tight_layout()
    return fig

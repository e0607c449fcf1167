"""Matplotlib figures for the report: sample grids (images), scatter plots (2-D), metric versus NFE (one or more
versions overlaid). Each function draws from arrays/tables and writes one PNG atomically."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ..io import write_with  # noqa: E402

DPI = 100


def save_figure(fig, dest, dpi: int = DPI, tight: bool = True):
    """Write `fig` as a PNG at `dest` atomically (cropped to its content unless `tight` is false), close it and
    return `dest`."""
    crop = {"bbox_inches": "tight"} if tight else {}
    write_with(dest, lambda p: fig.savefig(p, dpi=dpi, format="png", **crop))
    plt.close(fig)
    return dest


def tile_images(images: np.ndarray, max_images: int = 64) -> np.ndarray:
    """NCHW images in [-1, 1] -> one HWC (or HW) mosaic in [0, 1], √N per side, one pixel of padding."""
    x = np.clip((images[:max_images] + 1) / 2, 0, 1)
    n, c, h, w = x.shape
    side = math.ceil(math.sqrt(n))
    canvas = np.ones((c, side * (h + 1) + 1, side * (w + 1) + 1))
    for i in range(n):
        r, q = divmod(i, side)
        canvas[:, 1 + r * (h + 1): 1 + r * (h + 1) + h, 1 + q * (w + 1): 1 + q * (w + 1) + w] = x[i]
    return canvas[0] if c == 1 else canvas.transpose(1, 2, 0)


def sample_panels(panels: Sequence[tuple[str, np.ndarray]], dest: Path, title: str,
                  reference: np.ndarray | None = None, max_images: int = 64) -> Path:
    """One panel per (label, samples): image mosaics for NCHW arrays, scatter plots for [N, 2] arrays."""
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    for ax, (label, x) in zip(axes[0], panels):
        if x.ndim == 4:
            ax.imshow(tile_images(x, max_images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_axis_off()
        else:
            if reference is not None:
                ax.scatter(reference[:, 0], reference[:, 1], s=2, c="0.75", label="data")
            ax.scatter(x[:, 0], x[:, 1], s=3, c="C0", label="samples")
            ax.set_aspect("equal", adjustable="datalim")
            ax.tick_params(labelsize=6)
        ax.set_title(label, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, dest)


def metric_vs_nfe(versions: Sequence[tuple[str, pl.DataFrame]], model: str, metrics: Sequence[str], dest: Path,
                  title: str) -> Path:
    """Seed-mean ± std of each metric against NFE, one line per (sampler, grid); several versions are overlaid
    (first solid, then dashed, dotted) with the same colour per (sampler, grid)."""
    styles = ["-", "--", ":", "-."]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.0), squeeze=False)
    series = sorted({(s, g) for _, agg in versions
                     for s, g in agg.filter(pl.col("model") == model).select("sampler", "grid").iter_rows()})
    colour = {key: f"C{i % 10}" for i, key in enumerate(series)}
    for ax, metric in zip(axes[0], metrics):
        for v, (label, agg) in enumerate(versions):
            for sampler, grid in series:
                cells = agg.filter((pl.col("model") == model) & (pl.col("sampler") == sampler) & (pl.col("grid") == grid)
                                   & pl.col(f"{metric}_mean").is_not_null()).sort("nfe")
                if cells.height == 0:
                    continue
                name = f"{sampler}/{grid}" + (f" ({label})" if len(versions) > 1 else "")
                std = cells[f"{metric}_std"].fill_null(0.0).to_numpy()
                ax.errorbar(cells["nfe"].to_numpy(), cells[f"{metric}_mean"].to_numpy(), yerr=std, capsize=2,
                            ls=styles[v % len(styles)], marker="o", ms=3, color=colour[(sampler, grid)], label=name)
        ax.set_xlabel("NFE (requested)")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, dest)


def metric_vs_nfe_by_grid(agg: pl.DataFrame, model: str, metrics: Sequence[str], samplers_of: dict[str, list[str]],
                          dest: Path, title: str, divergent: set | None = None) -> Path:
    """The papers' form: one column of panels per grid (`samplers_of[grid]`: at most ~8 samplers each), one row per
    metric, log y; divergent cells (`divergent`: (sampler, grid, nfe)) are drawn as open markers."""
    grids = list(samplers_of)
    fig, axes = plt.subplots(len(metrics), len(grids), figsize=(4.2 * len(grids), 3.0 * len(metrics)), squeeze=False)
    names = sorted({s for ss in samplers_of.values() for s in ss})
    colour = {s: f"C{i % 10}" for i, s in enumerate(names)}
    marker = {s: "osD^v<>px*"[i // 10 % 10] for i, s in enumerate(names)}
    for row, metric in enumerate(metrics):
        for col, grid in enumerate(grids):
            ax = axes[row][col]
            for sampler in samplers_of[grid]:
                cells = agg.filter((pl.col("model") == model) & (pl.col("sampler") == sampler)
                                   & (pl.col("grid") == grid) & pl.col(f"{metric}_mean").is_not_null()
                                   & (pl.col(f"{metric}_mean") > 0)).sort("nfe")
                if cells.height == 0:
                    continue
                nfe, y = cells["nfe"].to_numpy(), cells[f"{metric}_mean"].to_numpy()
                ax.plot(nfe, y, marker=marker[sampler], ms=4, color=colour[sampler], label=sampler)
                bad = np.array([(sampler, grid, int(n)) in (divergent or set()) for n in nfe])
                if bad.any():
                    ax.scatter(nfe[bad], y[bad], s=60, facecolors="none", edgecolors="red", zorder=5)
            ax.set_yscale("log")
            ax.set_xlabel("NFE")
            ax.set_ylabel(metric)
            ax.set_title(f"grid: {grid}", fontsize=9)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, dest)


def sample_mosaic(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], dest: Path, title: str,
                  reference: np.ndarray | None = None, max_images: int = 16) -> Path:
    """One figure per model: a row of panels per sampler (label, [(panel label, samples), ...]); image mosaics of
    `max_images` images for NCHW arrays, scatter plots for [N, 2] arrays."""
    ncol = max(len(p) for _, p in rows)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.7 * ncol + 0.6, 1.7 * len(rows)), squeeze=False)
    for r, (label, panels) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(panels):
                ax.set_axis_off()
                continue
            name, x = panels[c]
            if x.ndim == 4:
                ax.imshow(tile_images(x, max_images), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            else:
                if reference is not None:
                    ax.scatter(reference[:, 0], reference[:, 1], s=1, c="0.8")
                    lim = 1.4 * float(np.abs(reference).max())
                    ax.set_xlim(-lim, lim)
                    ax.set_ylim(-lim, lim)
                ax.scatter(x[:, 0], x[:, 1], s=1, c="C0")
            if r == 0:
                ax.set_title(name, fontsize=7)
            if c == 0:
                ax.set_ylabel(label, fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, dest)


def mdm_samples(samples: dict, data, levels, dest: Path) -> None:
    """MDM samples (§5): one panel of data and one per diffusion: scatter plots (2-D) or a grid of up to 16 images (first channel)."""
    names = list(samples)
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.2 * (len(names) + 1), 2.4), squeeze=False)
    panels = [("data", data[: len(next(iter(samples.values())))])] + [(n, samples[n]) for n in names]
    for ax, (title, x) in zip(axes[0], panels):
        x = np.asarray(x)
        if levels is None:
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
            ax.set_xlim(-3.5, 3.5); ax.set_ylim(-3.5, 3.5); ax.set_aspect("equal")
        else:  # a square grid of the first (up to 16) images, first channel
            side = int(min(16, len(x)) ** 0.5)
            imgs = (x[: side * side, 0] + 1) / 2
            h, w = imgs.shape[-2:]
            grid = imgs.reshape(side, side, h, w).transpose(0, 2, 1, 3).reshape(side * h, side * w)
            ax.imshow(grid, cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8); ax.set_xticks([]); ax.set_yticks([])
    fig.tight_layout()
    save_figure(fig, dest, dpi=110, tight=False)

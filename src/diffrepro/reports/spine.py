"""The spine sections of the report, built from the aggregated metrics table and the sample files:
samples (digit grids, toy2d scatter), metric tables, metric-vs-NFE figures, and the GEO numbers beside ours."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from ..errors import UserError
from ..samplers import get_sampler
from ..samplers.sweep import model_sampling
from . import figures
from .paper import as_section_table, beside_ours, source_line
from .tables import aggregated_metrics

# Display order of metric families (feature-space names vary: fid_digits_classifier, fid_inception, ...).
METRIC_ORDER = ("fid_", "kid_", "is_", "swd", "mmd", "energy", "traj_rmse", "wall_s")
QUALITY_PLOTS = 4  # metric-vs-NFE panels per model


def metric_rank(name: str) -> int:
    return next((i for i, p in enumerate(METRIC_ORDER) if name.startswith(p)), len(METRIC_ORDER))


def metrics_of(agg: pl.DataFrame, model: str) -> list[str]:
    sub = agg.filter(pl.col("model") == model)
    present = [m for m in aggregated_metrics(agg) if sub[f"{m}_mean"].null_count() < sub.height]
    return sorted(present, key=lambda m: (metric_rank(m), m))


def cell(row: dict, metric: str) -> dict | None:
    mean = row[f"{metric}_mean"]
    return None if mean is None else {"mean": mean, "std": row[f"{metric}_std"]}


def metrics_table(agg: pl.DataFrame, model: str) -> dict:
    metrics = metrics_of(agg, model)
    rows = [[r["sampler"], r["grid"], r["nfe"], r.get("nfe_measured"), r["n_seeds"], *[cell(r, m) for m in metrics]]
            for r in agg.filter(pl.col("model") == model).sort("sampler", "grid", "nfe").iter_rows(named=True)]
    return {"id": f"metrics_{model}", "source": "ours",
            "caption": f"Model {model}: metrics per (sampler, grid, NFE), mean ± std over seeds (lower is better).",
            "columns": ["sampler", "grid", "NFE", "NFE measured", "seeds", *metrics], "rows": rows}


def best_cell_text(agg: pl.DataFrame, model: str) -> str | None:
    metrics = [m for m in metrics_of(agg, model) if m not in ("wall_s",)]
    if not metrics:
        return None
    m = metrics[0]
    best = agg.filter((pl.col("model") == model) & pl.col(f"{m}_mean").is_not_null()).sort(f"{m}_mean").row(0, named=True)
    worst = agg.filter((pl.col("model") == model) & pl.col(f"{m}_mean").is_not_null()).sort(f"{m}_mean").row(-1, named=True)
    return (f"**{model}** ({best['dataset']}): lowest `{m}` {best[f'{m}_mean']:.4g} with `{best['sampler']}` on the "
            f"`{best['grid']}` grid at NFE {best['nfe']}; highest {worst[f'{m}_mean']:.4g} with `{worst['sampler']}` "
            f"at NFE {worst['nfe']}.")


def load_reference(results: Path, dataset: str) -> np.ndarray | None:
    path = results / "data" / dataset / "data.npz"
    if not path.exists():
        return None
    with np.load(path) as data:
        x = data["x_test"] if "x_test" in data else None
    return x if x is not None and x.ndim == 2 and x.shape[1] == 2 else None


def sweep_grid(grid: str, sampler: str) -> str:
    """The grid a sweep cell records for a params grid name: `default` is the sampler's recommended grid."""
    if grid != "default":
        return grid
    try:
        return get_sampler(sampler).default_grid
    except UserError:  # sweep variants of other areas (ni_tuned, ...) are not in the sampler registry
        return grid


def choose_cells(keys, grids: list[str], nfes: list[int], seeds: list[int]) -> tuple[str, list[int], int] | None:
    """(grid, NFEs, seed) to show from the `GRID/nfeN/seedK` keys of a samples file: the sweep's first grid and seed
    and the requested NFEs where present, else what the file holds (extra samplers may use their own grid/NFE)."""
    cells = {}
    for key in keys:
        parts = key.split("/")
        if len(parts) == 3 and parts[1].startswith("nfe") and parts[2].startswith("seed"):
            cells.setdefault(parts[0], set()).add((int(parts[1][3:]), int(parts[2][4:])))
    if not cells:
        return None
    grid = next((g for g in grids if g in cells), sorted(cells)[0])
    seed = next((k for k in seeds if any(s == k for _, s in cells[grid])), min(s for _, s in cells[grid]))
    have = sorted({n for n, s in cells[grid] if s == seed})
    shown = [n for n in nfes if n in have] or sorted({have[0], have[-1]})
    return grid, shown, seed


def sample_figures(cfg: dict, agg: pl.DataFrame, results: Path, fig_dir: Path) -> tuple[list[dict], list[str]]:
    """One figure per (model, sampler): the selected NFE cells side by side (report.nfe_shown, default the smallest
    and largest swept NFE), first grid and seed of the sweep."""
    report = cfg.get("report", {})
    out, notes = [], []
    for model in cfg["sampling"]["models"]:
        sweep = model_sampling(cfg, model)  # per-model NFE/seeds (sampling.per_model)
        wanted = report.get("nfe_shown") or sorted({min(sweep["nfe"]), max(sweep["nfe"])})
        dataset = cfg["models"][model]["dataset"]
        reference = load_reference(results, dataset)
        for sampler in sorted(set(agg.filter(pl.col("model") == model)["sampler"].to_list())):
            path = results / "samples" / model / f"{sampler}.npz"
            if not path.exists():
                notes.append(f"Samples {path} not found: no sample figure for {model}/{sampler}.")
                continue
            with np.load(path) as data:
                chosen = choose_cells(data.keys(), [sweep_grid(g, sampler) for g in sweep["grids"]], wanted,
                                      sweep["seeds"])
                grid, nfes, seed = chosen or (None, [], None)
                panels = [(f"{sampler}, {grid}, NFE {n}", data[f"{grid}/nfe{n}/seed{seed}"]) for n in nfes]
            panels = [(label, x) for label, x in panels if x.ndim == 4 or (x.ndim == 2 and x.shape[1] == 2)]
            if not panels:
                notes.append(f"{path} holds no image or 2-D sample cells (GRID/nfeN/seedK): no sample figure.")
                continue
            kind = ("sample grid" if panels[0][1].ndim == 4 else
                    "scatter plot" + (" (grey: test data)" if reference is not None else ""))
            dest = figures.sample_panels(panels, fig_dir / f"spine_samples_{model}_{sampler}.png",
                                         f"{model}: {sampler} samples", reference=reference,
                                         max_images=report.get("samples_shown", 64))
            out.append({"path": str(dest), "caption": f"{dataset} {kind}: `{sampler}` on the `{grid}` grid at NFE "
                                                      f"{', '.join(map(str, nfes))} (seed {seed})."})
    return out, notes


def fid_protocol_text(agg: pl.DataFrame) -> list[str]:
    """One line per (model, feature space, protocol) saying what its FID is: detector, sample count, reference."""
    if not {"fid_protocol", "feature_space"} <= set(agg.columns):
        return []
    rows = agg.select("model", "feature_space", "fid_protocol").drop_nulls("fid_protocol").unique(maintain_order=True)
    return [f"FID protocol of {r['model']} (`fid_{r['feature_space']}`): {r['fid_protocol']}."
            for r in rows.iter_rows(named=True)]


def spine_section(cfg: dict, agg: pl.DataFrame, results: Path, fig_dir: Path, config_label: str) -> tuple[dict, list]:
    models = [m for m in cfg["sampling"]["models"] if m in set(agg["model"].to_list())]
    sample_figs, notes = sample_figures(cfg, agg, results, fig_dir)
    nfe_figs = []
    for model in models:
        metrics = [m for m in metrics_of(agg, model) if m != "wall_s"][:QUALITY_PLOTS]
        if metrics:
            dest = figures.metric_vs_nfe([("", agg)], model, metrics, fig_dir / f"spine_nfe_{model}.png",
                                         f"{model}: metrics vs NFE per sampler and grid")
            nfe_figs.append({"path": str(dest), "caption": f"Model {model}: {', '.join(metrics)} against NFE; "
                                                           "error bars: std over seeds."})
    n_seeds = agg["n_seeds"].max()
    text = [f"{agg.height} cells: {len(models)} models × samplers {sorted(set(agg['sampler']))} × grids "
            f"{sorted(set(agg['grid']))} × NFE {sorted(set(agg['nfe']))}, up to {n_seeds} seed(s) each. "
            "FID/KID on images are computed in the feature space named in the column (e.g. the pipeline's own "
            "digits classifier), so they are comparable across our rows but not with Inception FIDs."]
    text += [t for t in (best_cell_text(agg, m) for m in models) if t]
    text += fid_protocol_text(agg)
    section = {"id": "spine", "order": 45, "paper": "GEO", "title": "Samplers × NFE: samples and metrics",
               "reproduces": "GEO fast-sampler comparison (diff-solvers README tables, GITS Table) at small scale",
               "scale": cfg.get("report", {}).get("scale", "default"), "config": config_label, "text": text,
               "tables": [metrics_table(agg, m) for m in models], "figures": sample_figs + nfe_figs, "notes": []}
    return section, notes


def beside_tables(cfg: dict, agg: pl.DataFrame, tables: dict[str, dict]) -> list[dict]:
    """Our first FID column per sweep model beside every matching (sampler, grid, NFE) cell of the paper tables."""
    out = []
    for model in cfg["sampling"]["models"]:
        fids = [m for m in metrics_of(agg, model) if m.startswith("fid_")] if model in set(agg["model"]) else []
        if not fids:
            continue
        sub = agg.filter(pl.col("model") == model)
        ours = {(r["sampler"], r["grid"], r["nfe"]): cell(r, fids[0]) for r in sub.iter_rows(named=True)
                if cell(r, fids[0])}
        source = Path(str(cfg["models"].get(model, {}).get("source", {}).get("path", ""))).name
        for key, table in tables.items():
            rows = beside_ours(ours, table, sweep_grid)
            if rows:
                own = bool(table.get("network")) and table.get("network") == source
                out.append({"id": f"beside_{model}_{key.replace('/', '_')}", "source": "ours+paper",
                            "caption": f"Ours ({model}, `{fids[0]}`, scale "
                                       f"{cfg.get('report', {}).get('scale', 'default')}"
                                       + (", the paper's own network" if own else "") + f") beside {table['title']} "
                                       f"({table['metric']}, full scale); grids as the paper ran each row "
                                       "(default = each solver's recommended grid).",
                            "columns": ["sampler", "NFE", f"ours: {fids[0]}", "paper: FID (full scale)"],
                            "rows": rows, "cites": source_line(table)})
    return out


def paper_section(cfg: dict, agg: pl.DataFrame, papers: dict[str, dict], config_label: str) -> dict | None:
    """GEO tables (full scale) beside our matching (sampler, grid, NFE) cells: our first FID column per model."""
    geo = {k: t for k, t in papers.items() if t["paper"] == "GEO"}
    if not geo:
        return None
    tables, text = beside_tables(cfg, agg, geo), []
    text.append("Published numbers are full scale (50k samples, Inception features, EDM checkpoints). Where our row "
                "is the paper's own network with the EDM FID protocol the values are directly comparable; otherwise "
                "ours are small-scale runs in a different feature space: compare trends across samplers and NFE.")
    if not tables:
        text.append("None of our (sampler, NFE) cells matches a published cell, so only the published tables follow.")
    tables += [as_section_table(k, t) for k, t in geo.items()]
    return {"id": "geo_published", "order": 46, "paper": "GEO", "title": "Published GEO/GITS numbers beside ours",
            "reproduces": "diff-solvers README FID tables; GITS (ICML 2024) FID table",
            "scale": "full scale (published) and ours", "config": config_label, "text": text, "tables": tables,
            "figures": [], "notes": []}


def ni_paper_section(cfg: dict, agg: pl.DataFrame, papers: dict[str, dict], config_label: str) -> dict | None:
    """NI's published CIFAR-10 FIDs beside our matching cells; None when no cell matches (the NI study sections
    already show the published table)."""
    ni = {k: t for k, t in papers.items() if t["paper"] == "NI" and "sampler_of_row" in t}
    tables = beside_tables(cfg, agg, ni)
    if not tables:
        return None
    text = ["NaturalDiffusion's FIDs (ScoreSDE VP DDPM++ on CIFAR-10, pytorch-fid, 50k samples, time-quadratic grid "
            "1 → 1e-3) beside ours on the same (sampler, NFE). Only rows run on that network with an Inception FID "
            "against CIFAR-10 statistics are comparable in value."]
    return {"id": "ni_published", "order": 30, "paper": "NI", "title": "Published NI CIFAR-10 numbers beside ours",
            "reproduces": "NaturalDiffusion results/FID tables (NI §5.4 baselines)",
            "scale": "full scale (published) and ours", "config": config_label, "text": text,
            "tables": tables + [as_section_table(k, t) for k, t in ni.items()], "figures": [], "notes": []}

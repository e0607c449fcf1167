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


def metric_rank(name: str) -> int:
    return next((i for i, p in enumerate(METRIC_ORDER) if name.startswith(p)), len(METRIC_ORDER))


def metrics_of(agg: pl.DataFrame, model: str) -> list[str]:
    sub = agg.filter(pl.col("model") == model)
    present = [m for m in aggregated_metrics(agg) if sub[f"{m}_mean"].null_count() < sub.height]
    return sorted(present, key=lambda m: (metric_rank(m), m))


def cell(row: dict, metric: str) -> dict | None:
    mean = row[f"{metric}_mean"]
    return None if mean is None else {"mean": mean, "std": row[f"{metric}_std"]}


def metrics_table(agg: pl.DataFrame, model: str, divergent: set = frozenset()) -> dict:
    metrics = metrics_of(agg, model)
    rows = [[r["sampler"] + (" †" if (model, r["sampler"], r["grid"], r["nfe"]) in divergent else ""), r["grid"],
             r["nfe"], r.get("nfe_measured"), r["n_seeds"], *[cell(r, m) for m in metrics]]
            for r in agg.filter(pl.col("model") == model).sort("sampler", "grid", "nfe").iter_rows(named=True)]
    return {"id": f"metrics_{model}", "source": "ours",
            "caption": f"Model {model}: every metric per (sampler, grid, NFE), lower is better; "
                       + ("mean ± std over seeds." if agg.filter(pl.col("model") == model)["n_seeds"].max() > 1
                          else "one seed per cell (no spread).") + " †: diverged cell (excluded from 'best').",
            "columns": ["sampler", "grid", "NFE", "NFE measured", "seeds", *metrics], "rows": rows}


def best_cell_text(agg: pl.DataFrame, model: str, divergent: set = frozenset()) -> str | None:
    """The best and worst non-diverged cell of the model's first metric."""
    metrics = [m for m in metrics_of(agg, model) if m not in ("wall_s",)]
    if not metrics:
        return None
    m = metrics[0]
    cells = agg.filter((pl.col("model") == model) & pl.col(f"{m}_mean").is_not_null()).filter(
        ~pl.struct("sampler", "grid", "nfe").map_elements(lambda r: (model, r["sampler"], r["grid"], r["nfe"])
                                                          in divergent, return_dtype=pl.Boolean)).sort(f"{m}_mean")
    if cells.height == 0:
        return None
    best, worst = cells.row(0, named=True), cells.row(-1, named=True)
    return (f"**{model}** ({best['dataset']}): lowest `{m}` {best[f'{m}_mean']:.4g} with `{best['sampler']}` on the "
            f"`{best['grid']}` grid at NFE {best['nfe']}; highest (not diverged) {worst[f'{m}_mean']:.4g} with "
            f"`{worst['sampler']}` on `{worst['grid']}` at NFE {worst['nfe']}.")


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
    except UserError:  # a sampler this version no longer has
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


DIVERGED_FACTOR = 5.0  # a cell whose trajectory error exceeds 5× the median of its (model, NFE) is flagged diverged
PANEL_SAMPLERS = 8  # samplers per panel of the metric-vs-NFE figures (the papers' figures show about as many)


def divergent_cells(agg: pl.DataFrame) -> set[tuple[str, str, str, int]]:
    """(model, sampler, grid, nfe) of cells that diverged: non-finite metrics or a trajectory error above
    DIVERGED_FACTOR × the median over the model's cells at the same NFE."""
    if "traj_rmse_mean" not in agg.columns:
        return set()
    med = agg.group_by("model", "nfe").agg(pl.col("traj_rmse_mean").median().alias("_med"))
    flagged = agg.join(med, on=["model", "nfe"]).filter(
        pl.col("traj_rmse_mean").is_nan() | pl.col("traj_rmse_mean").is_infinite()
        | (pl.col("traj_rmse_mean") > DIVERGED_FACTOR * pl.col("_med")))
    return {(r["model"], r["sampler"], r["grid"], r["nfe"]) for r in flagged.iter_rows(named=True)}


def primary_metric(agg: pl.DataFrame, model: str) -> str | None:
    metrics = [m for m in metrics_of(agg, model) if m not in ("wall_s", "traj_rmse")]
    return metrics[0] if metrics else None


def pivot_table(agg: pl.DataFrame, model: str, metric: str, divergent: set, kinds: list[str]) -> dict:
    """Sampler × NFE with the sweep's grids side by side (diff-solvers README layout; `default` resolves to each
    sampler's recommended grid); the best non-diverged value of each column bold, diverged cells marked †."""
    sub = agg.filter((pl.col("model") == model) & pl.col(f"{metric}_mean").is_not_null())
    value = {(r["sampler"], r["grid"], r["nfe"]): r[f"{metric}_mean"] for r in sub.iter_rows(named=True)}
    samplers, nfes = sorted(set(sub["sampler"])), sorted(set(sub["nfe"]))
    # grids only some samplers run on (a coefficient matrix's own nodes, e.g. ni_tuned on quadratic_t) get columns too
    covered = {sweep_grid(k, s) for k in kinds for s in samplers}
    kinds = list(kinds) + sorted({g for _, g, _ in value} - covered)
    columns = [(n, k) for n in nfes for k in kinds if any((s, sweep_grid(k, s), n) in value for s in samplers)]
    rows = [[s] for s in samplers]
    for n, k in columns:
        here = {s: value.get((s, sweep_grid(k, s), n)) for s in samplers}
        bad = {s for s in samplers if (model, s, sweep_grid(k, s), n) in divergent}
        ok = [(v, s) for s, v in here.items() if v is not None and s not in bad]
        best = min(ok)[1] if ok else None
        for row, s in zip(rows, samplers):
            row.append(None if here[s] is None else
                       {"mean": here[s], "std": None, "bold": s == best, "flag": "†" if s in bad else None})
    return {"id": f"pivot_{model}_{metric}", "source": "ours",
            "caption": f"Model {model}: `{metric}` (lower is better) per sampler × NFE, the grids "
                       f"{', '.join(kinds)} side by side ('default': each sampler's recommended grid); bold: best "
                       f"non-diverged value per column; †: diverged cell (trajectory error > {DIVERGED_FACTOR:g}× "
                       "the median at that NFE), excluded from 'best'.",
            "columns": ["sampler"] + [f"NFE {n} {k}" for n, k in columns], "rows": rows}


def panel_samplers(agg: pl.DataFrame, model: str, metric: str, grid: str, divergent: set) -> list[str]:
    """The PANEL_SAMPLERS samplers with the lowest median `metric` on `grid` (diverged cells count as worst)."""
    sub = agg.filter((pl.col("model") == model) & (pl.col("grid") == grid) & pl.col(f"{metric}_mean").is_not_null())
    score = {}
    for r in sub.iter_rows(named=True):
        bad = (model, r["sampler"], grid, r["nfe"]) in divergent
        score.setdefault(r["sampler"], []).append(float("inf") if bad else r[f"{metric}_mean"])
    return sorted(score, key=lambda s: (float(np.median(score[s])), s))[:PANEL_SAMPLERS]


def sample_figure(cfg: dict, agg: pl.DataFrame, results: Path, fig_dir: Path, model: str) -> tuple[list, list]:
    """One mosaic per model: a row per sampler, the smallest and largest swept NFE on the first grid, first seed."""
    report = cfg.get("report", {})
    sweep = model_sampling(cfg, model)  # per-model NFE/seeds (sampling.per_model)
    wanted = report.get("nfe_shown") or sorted({min(sweep["nfe"]), max(sweep["nfe"])})
    dataset = cfg["models"][model]["dataset"]
    reference = load_reference(results, dataset)
    rows, notes, shown, n_per = [], [], set(), None
    for sampler in sorted(set(agg.filter(pl.col("model") == model)["sampler"].to_list())):
        path = results / "samples" / model / f"{sampler}.npz"
        if not path.exists():
            notes.append(f"Samples {path} not found: no samples of {model}/{sampler} shown.")
            continue
        with np.load(path) as data:
            chosen = choose_cells(data.keys(), [sweep_grid(g, sampler) for g in sweep["grids"]], wanted,
                                  sweep["seeds"])
            grid, nfes, seed = chosen or (None, [], None)
            panels = [(f"{grid}, NFE {n}", data[f"{grid}/nfe{n}/seed{seed}"]) for n in nfes]
        panels = [(label, x) for label, x in panels if x.ndim == 4 or (x.ndim == 2 and x.shape[1] == 2)]
        if panels:
            rows.append((sampler, panels))
            shown.add(seed)
            n_per = len(panels[0][1])
    if not rows:
        return [], notes
    images = rows[0][1][0][1].ndim == 4
    max_images = report.get("samples_shown", 16)
    dest = figures.sample_mosaic(rows, fig_dir / f"spine_samples_{model}.png", f"{model}: samples per sampler",
                                 reference=reference, max_images=max_images)
    what = (f"the first {min(max_images, n_per)} of {n_per} samples per cell" if images else
            f"all {n_per} samples per cell (grey: test data)")
    return [{"path": str(dest), "caption": f"{dataset}: samples of every sampler (rows) at the smallest and largest "
                                           f"NFE on each sampler's first sweep grid (columns), seed "
                                           f"{', '.join(map(str, sorted(shown)))}; {what}."}], notes


def nfe_figure(agg: pl.DataFrame, model: str, fig_dir: Path, divergent: set) -> dict | None:
    metric = primary_metric(agg, model)
    metrics = [m for m in (metric, "traj_rmse") if m and m in metrics_of(agg, model)]
    if not metrics:
        return None
    sub = agg.filter(pl.col("model") == model)
    grids = sorted(set(sub["grid"]), key=lambda g: (g == "gits", g))
    samplers_of = {g: panel_samplers(agg, model, metrics[0], g, divergent) for g in grids}
    dest = figures.metric_vs_nfe_by_grid(agg, model, metrics, samplers_of, fig_dir / f"spine_nfe_{model}.png",
                                         f"{model}: {', '.join(metrics)} against NFE, one panel per grid",
                                         {(s, g, n) for m, s, g, n in divergent if m == model})
    n_total = len(set(sub["sampler"]))
    seeds = int(sub["n_seeds"].max())
    return {"path": str(dest), "caption": f"Model {model}: {' and '.join(f'`{m}`' for m in metrics)} (log scale, "
                                          f"lower is better) against NFE, one column per grid; each panel shows the "
                                          f"{min(PANEL_SAMPLERS, n_total)} samplers (of {n_total}) with the lowest median on that "
                                          f"grid; red rings: diverged cells. Seed mean over {seeds} seed(s)"
                                          + (" (no error bars with one seed)." if seeds < 2 else ".")}


def fid_protocol_text(agg: pl.DataFrame) -> list[str]:
    """One line per (model, feature space, protocol) saying what its FID is: detector, sample count, reference."""
    if not {"fid_protocol", "feature_space"} <= set(agg.columns):
        return []
    rows = agg.select("model", "feature_space", "fid_protocol").drop_nulls("fid_protocol").unique(maintain_order=True)
    return [f"FID protocol of {r['model']} (`fid_{r['feature_space']}`): {r['fid_protocol']}."
            for r in rows.iter_rows(named=True)]


def feature_space_text(agg: pl.DataFrame) -> str:
    """What the table's FID columns are: each `fid_<space>` column named with its feature space."""
    if "feature_space" not in agg.columns:
        return ""
    from .realdata import detector_label

    spaces = agg["feature_space"].drop_nulls().unique(maintain_order=True).to_list()
    if not spaces:
        return ""
    names = "; ".join(f"`fid_{space}`: {detector_label(space)}" for space in spaces)
    return f"FID/KID on images are computed in the feature space named in the column ({names}). "


def spine_section(cfg: dict, agg: pl.DataFrame, results: Path, fig_dir: Path, config_label: str) -> tuple[dict, list]:
    models = [m for m in cfg["sampling"]["models"] if m in set(agg["model"].to_list())]
    divergent = divergent_cells(agg)
    sample_figs, notes, nfe_figs, pivots = [], [], [], []
    for model in models:
        figs, more = sample_figure(cfg, agg, results, fig_dir, model)
        sample_figs += figs
        notes += more
        fig = nfe_figure(agg, model, fig_dir, divergent)
        nfe_figs += [fig] if fig else []
        for metric in dict.fromkeys(m for m in (primary_metric(agg, model), "traj_rmse") if m):
            if metric in metrics_of(agg, model):
                pivots.append(pivot_table(agg, model, metric, divergent,
                                              list(model_sampling(cfg, model)["grids"])))
    n_seeds = agg["n_seeds"].max()
    text = [f"{agg.height} cells: {len(models)} models × samplers {sorted(set(agg['sampler']))} × grids "
            f"{sorted(set(agg['grid']))} × NFE {sorted(set(agg['nfe']))}, up to {n_seeds} seed(s) each. "
            + feature_space_text(agg) +
            "`traj_rmse` is the RMS distance per coordinate to a high-accuracy PF-ODE solution from the same "
            "initial noise (data units, images in [-1, 1])."]
    if divergent:
        text.append(f"{len(divergent)} diverged cell(s) (trajectory error > {DIVERGED_FACTOR:g}× the median of "
                    "the model's cells at that NFE), marked † and excluded from every 'best' statement: "
                    + ", ".join(f"{m}/{s}/{g}/NFE {n}" for m, s, g, n in sorted(divergent)) + ".")
    text += [t for t in (best_cell_text(agg, m, divergent) for m in models) if t]
    if "ni_tuned" in set(agg["sampler"]) and cfg.get("ni", {}).get("search"):
        counts = ", ".join(f"{m}: {model_sampling(cfg, m)['n_samples']}" for m in models)
        text.append(f"The `ni_tuned` rows are the matrices of the Natural Inference search, scored here like every "
                    f"sampler on this sweep's initial noises ({counts} samples per cell); the search section scores "
                    f"them on its own {cfg['ni']['search'].get('n_val', 256)} held-out noises, so the two sections' "
                    "numbers for the same matrix differ by the sample set.")
    text += fid_protocol_text(agg)
    section = {"id": "spine", "order": 45, "paper": "GEO", "title": "Samplers × NFE: samples and metrics",
               "reproduces": "GEO fast-sampler comparison (diff-solvers README tables, GITS Table) at small scale",
               "scale": cfg.get("report", {}).get("scale", "default"), "config": config_label, "text": text,
               "tables": pivots + [metrics_table(agg, m, divergent) for m in models], "figures": nfe_figs + sample_figs,
               "notes": []}
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


def gits_indices(results: Path, model: str, sampler: str) -> dict[int, list[int]]:
    """NFE -> the teacher-grid indices GITS chose, from the samples manifest (`gits_indices` of each cell)."""
    import json

    path = results / "samples" / model / f"{sampler}.json"
    if not path.exists():
        return {}
    cells = json.loads(path.read_text()).get("cells", [])
    return {c["nfe"]: c["gits_indices"] for c in cells if c.get("grid") == "gits" and "gits_indices" in c}


def gits_section(cfg: dict, agg: pl.DataFrame, results: Path, config_label: str) -> dict | None:
    """GITS versus each solver's default grid, in the quantity the DP optimises (trajectory error) and in the sample
    metric, for the teacher solver (the solver the grid was searched with) and Euler (whose one-step error is the DP
    cost), per model; with the teacher settings of the run and the chosen indices."""
    if "gits" not in set(agg["grid"]) or "traj_rmse_mean" not in agg.columns:
        return None
    tables, text = [], []
    for model in [m for m in cfg["sampling"]["models"] if m in set(agg["model"])]:
        o = {"coeff": 1.15, "teacher_steps": 60, "warmup": 256, "metric": "dev", "teacher": "ipndm",
             **model_sampling(cfg, model).get("grid_options", {}).get("gits", {})}
        metric = primary_metric(agg, model)
        sigma = teacher_sigmas(cfg, model, int(o["teacher_steps"]), float(o.get("rho", 7.0)))
        rows = []
        base = next((g for g in model_sampling(cfg, model)["grids"] if g != "gits"), "default")
        swept = sorted(set(agg.filter((pl.col("model") == model) & (pl.col("grid") == "gits"))["sampler"]))
        shown = [x for x in dict.fromkeys([o["teacher"], "euler"]) if x in swept] or swept
        for sampler in shown:
            idx = gits_indices(results, model, sampler)
            for nfe in sorted(set(agg.filter(pl.col("model") == model)["nfe"])):
                g = cell_of(agg, model, sampler, "gits", nfe)
                d = cell_of(agg, model, sampler, sweep_grid(base, sampler), nfe)
                if g is None or d is None:
                    continue
                rows.append([sampler, nfe, d["traj_rmse_mean"], g["traj_rmse_mean"],
                             round(g["traj_rmse_mean"] / d["traj_rmse_mean"], 3) if d["traj_rmse_mean"] else None]
                            + ([d[f"{metric}_mean"], g[f"{metric}_mean"]] if metric else [])
                            + [str(idx.get(nfe, "–")),
                               f"{sigma[idx[nfe][-2]]:.3g} → {sigma[idx[nfe][-1]]:.3g}" if nfe in idx and sigma else None])
        if not rows:
            continue
        wins = {x: sum(r[3] < r[2] for r in rows if r[0] == x) for x in shown}
        text.append(f"**{model}**: GITS grid searched with teacher `{o['teacher']}` on a {o['teacher_steps']}-step "
                    f"EDM ρ = 7 grid from {o['warmup']} warm-up noises, cost `{o['metric']}`, coeff {o['coeff']}. "
                    "GITS has the lower trajectory error at " + "; ".join(
                        f"{w} of {sum(r[0] == x for r in rows)} NFE for `{x}`" + (" (the teacher)" if x == o["teacher"]
                                                                                   else "")
                        for x, w in wins.items()) + ".")
        tables.append({"id": f"gits_vs_default_{model}", "source": "ours",
                       "caption": f"Model {model}: trajectory error (RMS per coordinate to the reference PF-ODE "
                                  f"solution, data units) and `{metric}` on the `{base}` grid"
                                  + (" (each solver's recommended grid: EDM ρ = 7 for euler and ipndm)"
                                     if base == "default" else "") + " versus the GITS grid; ratio < 1: GITS "
                                  "better; indices: the teacher-grid points GITS chose.",
                       "columns": ["solver", "NFE", f"traj. error {base}", "traj. error GITS", f"GITS / {base}"]
                                  + ([f"{metric} {base}", f"{metric} GITS"] if metric else [])
                                  + ["GITS indices", "last GITS step (σ)"],
                       "rows": rows})
    if not tables:
        return None
    return {"id": "gits_investigation", "order": 47, "paper": "GEO", "title": "GITS versus the default grids",
            "reproduces": "GITS (ICML 2024) FID table: GITS grids beat the EDM ρ = 7 grid for Euler and iPNDM",
            "scale": cfg.get("report", {}).get("scale", "default"), "config": config_label, "text": text,
            "tables": tables, "figures": [], "notes": []}


def teacher_sigmas(cfg: dict, model: str, steps: int, rho: float) -> list[float]:
    """σ_ve of the GITS teacher grid (EDM ρ-grid on the model's schedule), to read the chosen indices as noise levels."""
    from ..samplers.grids import edm
    from ..training import schedule_from_spec

    try:
        schedule = schedule_from_spec(cfg["models"][model])
    except (KeyError, TypeError, ValueError):
        return []
    return [float(v) for v in schedule.sigma_ve(edm(schedule, steps, rho=rho))]


def cell_of(agg: pl.DataFrame, model: str, sampler: str, grid: str, nfe: int) -> dict | None:
    sub = agg.filter((pl.col("model") == model) & (pl.col("sampler") == sampler) & (pl.col("grid") == grid)
                     & (pl.col("nfe") == nfe))
    return sub.row(0, named=True) if sub.height else None

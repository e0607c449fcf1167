"""Geometry study (GEO 2305.19947; spec research/geometric.md §4, §7): Euler sampling and denoising trajectories
of a trained model and of the optimal denoiser from the same initial noise, in EDM coordinates; chord deviation,
distances, direction cosines, norms, chord + PCA projection; annealed mean shift and density monotonicity along the
optimal trajectories; memorisation (nearest-neighbour distances) and score deviation ‖D_θ − D*‖.

  diffrepro study geometry --params P --model M --checkpoint results/models/M/model.pt \
      --data results/data/D/data.npz --out-dir results/studies/geometry
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from .. import config, io
from ..errors import UserError
from .study_degradation import (fmt, load_denoiser, load_x_train, save_figure, seeded_generator, setup_runtime,
                                write_table)

F64 = torch.float64
DENOISERS = ("model", "optimal")


def configure(parser) -> None:
    parser.add_argument("--params", required=True, help="params YAML (validated)")
    parser.add_argument("--model", required=True, help="model name (a key of 'models')")
    parser.add_argument("--checkpoint", required=True, help="results/models/M/model.pt")
    parser.add_argument("--data", required=True, help="data.npz of the model's dataset (optimal denoiser)")
    parser.add_argument("--out-dir", required=True, help="folder for tables, figures and section.json")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (runtime.num_threads wins)")


# --- trajectories -----------------------------------------------------------------------------------------------------

def record(denoiser, x_start: torch.Tensor, grid, schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler (= DDIM in EDM coordinates, GEO §2.1) from x_start: (xs [K+1, B, d], denoised [K, B, d]) (GEO §4.1)."""
    from ..samplers.solvers import euler

    trajectory: list = []
    x_end = euler(denoiser, x_start, grid, schedule, trajectory=trajectory)
    xs = torch.stack([x for _, x, _ in trajectory] + [x_end]).to(device="cpu", dtype=F64).flatten(2)
    denoised = torch.stack([d for _, _, d in trajectory]).to(device="cpu", dtype=F64).flatten(2)
    return xs, denoised


def mean_shift_checks(xs_opt: torch.Tensor, data: torch.Tensor, sigmas: list[float]) -> dict:
    """Along optimal-denoiser Euler trajectories: each step vs one annealed mean-shift step, and the KDE density
    at the step's bandwidth before/after (GEO §4.3, §7 claims 1 and 6)."""
    from ..analysis.mean_shift import annealed_mean_shift_step, density_gain

    worst_rel, gains = 0.0, []
    for i in range(len(sigmas) - 1):
        shifted = annealed_mean_shift_step(xs_opt[i], data, sigmas[i], sigmas[i + 1])
        err = (shifted - xs_opt[i + 1]).abs().max() / xs_opt[i].abs().max().clamp_min(1e-300)
        worst_rel = max(worst_rel, float(err))
        gains.append(density_gain(xs_opt[i], xs_opt[i + 1], data, sigmas[i]))
    gains = torch.stack(gains)
    return {"max_rel_diff_euler_vs_mean_shift": worst_rel, "min_log_density_gain": float(gains.min()),
            "frac_steps_density_nondecreasing": float((gains >= -1e-9).double().mean()), "steps_checked": len(gains)}


def per_sigma_rows(stats: dict, sigmas: list[float], dim: int, gaps: dict, cross: dict) -> list[dict]:
    """One row per (denoiser, step): mean and std over trajectories of every statistic."""
    rows = []
    for name in DENOISERS:
        st = stats[name]
        for i, sigma in enumerate(sigmas):
            row = {"denoiser": name, "step": i, "sigma": sigma, "sigma_sqrt_d": sigma * math.sqrt(dim)}
            for key, val in st.items():
                if i < val.shape[0]:
                    row[key] = float(val[i].mean())
                    row[key + "_std"] = float(val[i].std()) if val.shape[1] > 1 else 0.0
            if i < gaps[name].shape[0]:
                row["score_deviation"] = float(gaps[name][i].mean())
            row["dist_to_other_x"] = float(cross["x"][i].mean())
            if i < cross["denoised"].shape[0]:
                row["dist_to_other_denoised"] = float(cross["denoised"][i].mean())
            rows.append(row)
    return rows


# --- figures ----------------------------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_distances(stats, sigmas, dim, out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    sig = np.asarray(sigmas)
    for ax, name in zip(axes, DENOISERS):
        st = stats[name]
        k = st["dist_denoised_end"].shape[0]
        ax.plot(sig, st["dist_x_end"].mean(1), "o-", ms=3, label="‖x_i − x_K‖ (sampling)")
        ax.plot(sig[:k], st["dist_denoised_end"].mean(1), "s-", ms=3, label="‖D_i − x_K‖ (denoising)")
        ax.plot(sig, st["dev_sampling"].mean(1), "^-", ms=3, label="deviation from chord (sampling)")
        ax.plot(sig, sig * math.sqrt(dim), "k:", label="σ√d")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.invert_xaxis()
        ax.set_xlabel("σ")
        ax.set_title(f"{name} denoiser")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("distance (mean over trajectories)")
    axes[1].legend(fontsize=7)
    return save_figure(fig, out / "distances.png")


def figure_directions(stats, sigmas, dim, out: Path) -> str:
    plt = _plt()
    fig, (ax_c, ax_n) = plt.subplots(1, 2, figsize=(10, 3.8))
    sig = np.asarray(sigmas)
    for name, style in zip(DENOISERS, ("-", "--")):
        st = stats[name]
        k = st["cos_direction_end"].shape[0]
        ax_c.plot(sig[:k], st["cos_direction_end"].mean(1), style, label=f"{name}: cos(d_i, x_i − x_K)")
        ax_n.plot(sig[:k], st["norm_direction"].mean(1) / math.sqrt(dim), style, label=f"{name}: ‖d_i‖/√d")
        ax_n.plot(sig, st["norm_x"].mean(1).numpy() / np.sqrt(sig**2 * dim), style, label=f"{name}: ‖x_i‖/(σ_i√d)")
    for ax in (ax_c, ax_n):
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("σ")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_c.set_ylabel("cosine")
    ax_n.set_ylabel("norm ratio")
    ax_n.set_yscale("log")
    return save_figure(fig, out / "directions_norms.png")


def figure_projection(coords: dict, n_plot: int, out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    for row, name in zip(axes, DENOISERS):
        c = coords[name][:, :n_plot].numpy()
        for j in range(c.shape[1]):
            row[0].plot(c[:, j, 0], c[:, j, 1], "-", lw=0.8, alpha=0.7)
            row[1].plot(c[:, j, 0], c[:, j, 2], "-", lw=0.8, alpha=0.7)
        for ax, pc in zip(row, ("PC1", "PC2")):
            ax.set_xlabel("coordinate along the chord x_K → x_0 (relative to x_K)")
            ax.set_ylabel(f"{pc} of the off-chord residual")
            ax.set_title(f"{name} denoiser: {c.shape[1]} trajectories", fontsize=9)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return save_figure(fig, out / "projection.png")


def figure_score_deviation(gaps, cross, sigmas, out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    sig = np.asarray(sigmas)
    k = gaps["model"].shape[0]
    ax.plot(sig[:k], gaps["model"].mean(1), "o-", ms=3, label="‖D_θ − D*‖ along the model trajectory")
    ax.plot(sig[:k], gaps["optimal"].mean(1), "s-", ms=3, label="‖D_θ − D*‖ along the optimal trajectory")
    ax.plot(sig, cross["x"].mean(1), ":", label="‖x_i − x_i*‖ (sampling trajectories)")
    ax.plot(sig[:k], cross["denoised"].mean(1), "--", label="‖R_i − R_i*‖ (denoising trajectories)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("σ")
    ax.set_ylabel("distance (mean over trajectories)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, out / "score_deviation.png")


def figure_memorisation(nn: dict, spacing: torch.Tensor, out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    values = [nn["model"].numpy(), nn["optimal"].numpy(), spacing.numpy()]
    hi = max(float(v.max()) for v in values)
    lo = max(min(float(v[v > 0].min()) if (v > 0).any() else hi for v in values), 1e-8)
    bins = np.geomspace(lo, hi, 40)
    for v, label in zip(values, ("model samples → nearest training sample", "optimal-denoiser samples → nearest "
                                 "training sample", "training set's own NN spacing")):
        ax.hist(np.clip(v, lo, None), bins=bins, histtype="step", density=True, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("Euclidean distance")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    return save_figure(fig, out / "memorisation.png")


def figure_samples(finals: dict, nearest: dict, shape, out: Path, count: int = 10) -> str | None:
    """Rows: model samples, their nearest training images, optimal samples, their nearest training images."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        return None
    plt = _plt()
    rows = [("model sample", finals["model"]), ("nearest training", nearest["model"]),
            ("optimal sample", finals["optimal"]), ("nearest training", nearest["optimal"])]
    count = min(count, len(finals["model"]))
    fig, axes = plt.subplots(len(rows), count, figsize=(1.0 * count, 1.1 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for j in range(count):
            img = imgs[j].reshape(shape).clamp(-1, 1).add(1).div(2).permute(1, 2, 0).numpy()
            axes[r][j].imshow(img.squeeze(-1) if shape[0] == 1 else img, cmap="gray" if shape[0] == 1 else None,
                              vmin=0, vmax=1)
            axes[r][j].set_xticks([])
            axes[r][j].set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=6)
    return save_figure(fig, out / "samples.png")


# --- report section ---------------------------------------------------------------------------------------------------

def summary_rows(stats, coords_ratio, memo, sigmas, dim) -> list[dict]:
    rows = []
    for name in DENOISERS:
        st = stats[name]
        rel = st["dev_sampling_rel"].max(0).values
        rows.append({
            "denoiser": name,
            "chord_over_sigma_max_sqrt_d": float(st["chord_sampling"][0].mean() / (sigmas[0] * math.sqrt(dim))),
            "max_dev_over_chord_median": float(rel.median()),
            "max_dev_over_chord_max": float(rel.max()),
            "x0_norm_over_sigma_max_sqrt_d": float(st["norm_x"][0].mean() / (sigmas[0] * math.sqrt(dim))),
            "direction_norm_over_sqrt_d_mean": float(st["norm_direction"].mean() / math.sqrt(dim)),
            "cos_direction_end_median": float(st["cos_direction_end"].median()),
            "top2_pc_variance_ratio_median": float(coords_ratio[name].median()),
            **{f"memo_{k}": v for k, v in memo[name].items()},
        })
    return rows


def _sigma_index(sigmas, target):
    return int(np.argmin(np.abs(np.log(np.asarray(sigmas)) - math.log(target))))


def section(summary, per_sigma, checks, figures, sigmas, cfg, args, dim, n_train) -> dict:
    sec = cfg["studies"]["geometry"]
    by = {r["denoiser"]: r for r in summary}
    m, o = by["model"], by["optimal"]
    mid = _sigma_index(sigmas, 1.0)
    at = {r["denoiser"]: r for r in per_sigma if r["step"] == mid}
    text = [
        f"{sec['n_trajectories']} Euler trajectories ({len(sigmas) - 1} steps, EDM ρ = {sec['rho']} grid from σ = "
        f"{sec['sigma_max']:g} to {sec['sigma_min']:g}) of the trained **{args.model}** model and of the optimal "
        f"denoiser over its N = {n_train} training samples (d = {dim}), from the same initial noise.",
        f"Quasi-linearity: the largest deviation from the chord is a median "
        f"{fmt(100 * m['max_dev_over_chord_median'], 2)}% of the chord length for the model "
        f"({fmt(100 * o['max_dev_over_chord_median'], 2)}% for the optimal "
        f"denoiser; toy reference in the spec: 0.5%), the chord is {fmt(m['chord_over_sigma_max_sqrt_d'])}·σ_max√d "
        f"long, and ‖d_i‖/√d averages {fmt(m['direction_norm_over_sqrt_d_mean'])}. The top-2 principal components "
        f"hold a median {fmt(100 * m['top2_pc_variance_ratio_median'], 1)}% of the off-chord residual.",
        f"The denoising trajectory converges first: at σ = {fmt(sigmas[mid], 2)} the model's ‖D_i − x_K‖ is "
        f"{fmt(at['model']['dist_denoised_end'])} while ‖x_i − x_K‖ is {fmt(at['model']['dist_x_end'])} "
        f"(optimal denoiser: {fmt(at['optimal']['dist_denoised_end'])} vs {fmt(at['optimal']['dist_x_end'])}); the "
        f"median cosine between the ODE direction and x_i − x_K is {fmt(m['cos_direction_end_median'])}.",
        f"Annealed mean shift: every optimal-denoiser Euler step equals one partial mean-shift step computed from the "
        f"kernel density gradient to a relative {checks['max_rel_diff_euler_vs_mean_shift']:.1e}, and the kernel "
        f"density at the step's bandwidth did not decrease in "
        f"{fmt(100 * checks['frac_steps_density_nondecreasing'], 1)}% of {checks['steps_checked']} steps (smallest "
        f"log-density change {checks['min_log_density_gain']:.3g}).",
        f"Memorisation: optimal-denoiser samples end a median {o['memo_nn_median']:.2g} from a training sample "
        f"({fmt(100 * o['memo_frac_copies'], 1)}% copies), the trained model's samples "
        f"{m['memo_nn_median']:.3g} ({fmt(100 * m['memo_frac_copies'], 1)}% copies), against a median training-set "
        f"NN spacing of {m['memo_train_spacing_median']:.3g}.",
    ]
    steps = sorted({int(v) for v in np.linspace(0, len(sigmas) - 2, min(10, len(sigmas) - 1)).round()})
    per = {(r["denoiser"], r["step"]): r for r in per_sigma}

    def r4(v):
        return None if v is None else float(f"{v:.4g}")

    tables = [
        {"id": "geometry_summary", "source": "ours",
         "caption": "Trajectory geometry and memorisation per denoiser (medians over trajectories).",
         "columns": ["denoiser", "chord/(σ_max√d)", "max dev/chord", "‖x_0‖/(σ_max√d)", "‖d_i‖/√d",
                     "cos(d_i, x_i − x_K)", "top-2 PC var.", "NN dist. median", "train NN spacing", "copies"],
         "rows": [[r["denoiser"], r4(r["chord_over_sigma_max_sqrt_d"]), r4(r["max_dev_over_chord_median"]),
                   r4(r["x0_norm_over_sigma_max_sqrt_d"]), r4(r["direction_norm_over_sqrt_d_mean"]),
                   r4(r["cos_direction_end_median"]), r4(r["top2_pc_variance_ratio_median"]),
                   r4(r["memo_nn_median"]), r4(r["memo_train_spacing_median"]), r4(r["memo_frac_copies"])]
                  for r in summary]},
        {"id": "geometry_per_sigma", "source": "ours",
         "caption": "Distances along the trajectories (means over trajectories): sampling ‖x_i − x_K‖ and denoising "
                    "‖D_i − x_K‖ for the model and the optimal denoiser, and the score deviation ‖D_θ − D*‖ along "
                    "each trajectory.",
         "columns": ["σ", "σ√d", "model ‖x_i − x_K‖", "model ‖D_i − x_K‖", "optimal ‖x_i − x_K‖",
                     "optimal ‖D_i − x_K‖", "‖D_θ − D*‖ (model traj.)", "‖D_θ − D*‖ (optimal traj.)"],
         "rows": [[r4(sigmas[i]), r4(per[("model", i)]["sigma_sqrt_d"]), r4(per[("model", i)]["dist_x_end"]),
                   r4(per[("model", i)]["dist_denoised_end"]), r4(per[("optimal", i)]["dist_x_end"]),
                   r4(per[("optimal", i)]["dist_denoised_end"]), r4(per[("model", i)]["score_deviation"]),
                   r4(per[("optimal", i)]["score_deviation"])] for i in steps]},
        {"id": "geometry_mean_shift", "source": "ours",
         "caption": "Optimal denoiser = annealed mean shift: Euler step vs mean-shift step, and the kernel density "
                    "at each step's bandwidth.",
         "columns": ["steps checked", "max rel. |Euler − mean shift|", "min Δ log p_σ", "steps with Δ log p_σ ≥ 0"],
         "rows": [[checks["steps_checked"], float(f"{checks['max_rel_diff_euler_vs_mean_shift']:.3g}"),
                   float(f"{checks['min_log_density_gain']:.4g}"), r4(checks["frac_steps_density_nondecreasing"])]]},
    ]
    scale = cfg.get("report", {}).get("scale", "default")
    return {"id": "geo_trajectories", "order": 40, "paper": "GEO", "title": "Geometry of sampling trajectories",
            "reproduces": "GEO §3–5 (quasi-linear trajectories, denoising trajectory, annealed mean shift, "
                          "memorisation, score deviation)",
            "scale": f"{scale} (CPU)" if scale != "paper" else "paper", "config": str(args.params),
            "text": text, "tables": tables, "figures": figures}


# --- entry point ------------------------------------------------------------------------------------------------------

def run(args) -> int:
    from ..analysis import geometry as geo
    from ..analysis import memorisation as memo
    from ..diffusion.denoisers import reschedule
    from ..diffusion.optimal import OptimalDenoiser
    from ..diffusion.schedules import make_schedule
    from ..samplers.grids import make_grid

    start = time.perf_counter()
    cfg = config.load(args.params)
    sec = cfg["studies"]["geometry"]
    if args.model not in cfg["models"]:
        raise UserError(f"--model '{args.model}' is not a key of 'models' in {args.params}")
    if sec["sigma_min"] >= sec["sigma_max"]:
        raise UserError("studies.geometry: sigma_min must be smaller than sigma_max")
    out = io.ensure_writable_dir(args.out_dir)
    device = setup_runtime(cfg, args.threads)
    net_denoiser, model_schedule = load_denoiser(args.checkpoint, device)
    x_train = load_x_train(args.data, "study geometry")
    if sec["n_train"] is not None and sec["n_train"] < len(x_train):
        keep = torch.randperm(len(x_train), generator=seeded_generator(cfg["seed"], "geometry-subset"))
        x_train = x_train[keep[: sec["n_train"]].sort().values]
    shape, dim, data = tuple(x_train.shape[1:]), x_train[0].numel(), x_train.flatten(1)

    edm = make_schedule("edm", sigma_min=sec["sigma_min"], sigma_max=sec["sigma_max"])
    grid = make_grid("edm", edm, sec["steps"], rho=sec["rho"])
    sigmas = [float(v) for v in grid]
    rescheduled = reschedule(net_denoiser, model_schedule, edm)

    def model(x, t):  # the network runs in float32; trajectories are kept in float64
        try:
            return rescheduled(x.float(), t).to(F64)
        except ValueError as exc:
            raise UserError(f"studies.geometry: σ range [{sec['sigma_min']}, {sec['sigma_max']}] does not fit model "
                            f"'{args.model}': {exc}") from None

    optimal = OptimalDenoiser(x_train, edm, device=device)
    gen = seeded_generator(cfg["seed"], "geometry-noise", args.model)
    x_start = sigmas[0] * torch.randn((sec["n_trajectories"], *shape), generator=gen, dtype=F64).to(device)
    paths = {"model": record(model, x_start, grid, edm), "optimal": record(optimal, x_start, grid, edm)}

    stats = {k: geo.trajectory_statistics(xs, den, sigmas) for k, (xs, den) in paths.items()}
    coords, ratio = {}, {}
    for k, (xs, _) in paths.items():
        coords[k], ratio[k] = geo.chord_pca_projection(xs)

    def unflat(denoiser):
        return lambda x, t: denoiser(x.reshape(-1, *shape).to(device), t).flatten(1).cpu()

    # score deviation: D* at the model's states vs the model's own outputs, and D_θ at the optimal states
    gaps = {"model": memo.denoiser_gap(unflat(optimal), paths["model"][1], paths["model"][0][:-1], sigmas[:-1]),
            "optimal": memo.denoiser_gap(unflat(model), paths["optimal"][1], paths["optimal"][0][:-1], sigmas[:-1])}
    cross = {"x": geo.distance_to(paths["model"][0], paths["optimal"][0]),
             "denoised": geo.distance_to(paths["model"][1], paths["optimal"][1])}
    finals = {k: xs[-1] for k, (xs, _) in paths.items()}
    memo_stats = {k: memo.memorisation_summary(v, data) for k, v in finals.items()}
    nn = {k: memo.nearest_neighbour(v, data) for k, v in finals.items()}
    spacing = memo.training_spacing(data)
    checks = mean_shift_checks(paths["optimal"][0], data, sigmas)

    per_sigma = per_sigma_rows(stats, sigmas, dim, gaps, cross)
    summary = summary_rows(stats, ratio, memo_stats, sigmas, dim)
    figures = [
        {"path": figure_distances(stats, sigmas, dim, out),
         "caption": "Distance to the final sample along the sampling and denoising trajectories, and the sampling "
                    "trajectory's deviation from its chord, against σ (GEO Fig. 2b analogue)."},
        {"path": figure_directions(stats, sigmas, dim, out),
         "caption": "Cosine between the ODE direction d_i and x_i − x_K; norms of d_i and x_i against √d and σ√d."},
        {"path": figure_projection(coords, sec["n_plot"], out),
         "caption": "Trajectories projected on their chord and the top-2 principal components of the off-chord "
                    "residual (coordinates relative to the final sample)."},
        {"path": figure_score_deviation(gaps, cross, sigmas, out),
         "caption": "Score deviation ‖D_θ − D*‖ along the model's and the optimal denoiser's trajectories, and the "
                    "distance between the two trajectories."},
        {"path": figure_memorisation({k: v[0] for k, v in nn.items()}, spacing, out),
         "caption": "Nearest-training-sample distance of final samples against the training set's own NN spacing."},
    ]
    strip = figure_samples(finals, {k: data[v[1]] for k, v in nn.items()}, shape, out)
    if strip:
        figures.append({"path": strip, "caption": "Final samples of the model and of the optimal denoiser, each "
                                                  "above its nearest training image."})
    write_table(per_sigma, out / "per_sigma")
    write_table(summary, out / "summary")
    io.write_json(out / "mean_shift_checks.json", checks)
    keep = min(sec["n_plot"], sec["n_trajectories"])
    io.write_with(out / "trajectories.npz", lambda tmp: np.savez_compressed(
        tmp, sigmas=np.asarray(sigmas),
        **{f"{k}_{part}": v[:, :keep].float().numpy() for k, (xs, den) in paths.items()
           for part, v in (("x", xs), ("denoised", den))},
        **{f"{k}_projection": coords[k][:, :keep].float().numpy() for k in coords}))
    doc = section(summary, per_sigma, checks, figures, sigmas, cfg, args, dim, len(data))
    io.write_json(out / "section.json", doc)
    io.write_provenance(out / "section.json", cfg["studies"]["geometry"], seed=cfg["seed"], model=args.model,
                        checkpoint=str(args.checkpoint), wall_s=round(time.perf_counter() - start, 3))
    print(f"geometry study: {sec['n_trajectories']} trajectories x {len(sigmas) - 1} steps, d = {dim}, "
          f"N = {len(data)} in {time.perf_counter() - start:.1f}s -> {out}")
    return 0

"""Report section of the geometry study (GEO 2305.19947 §3–5): figures, tables and prose from the result of
`diffrepro.studies.geometry.geometry_study`."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..studies.geometry import DENOISERS
from .figures import plt, save_figure
from .numbers import fmt


def figure_distances(stats, sigmas, dim, out: Path) -> str:
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
    return str(save_figure(fig, out / "distances.png", dpi=120))


def figure_directions(stats, sigmas, dim, out: Path) -> str:
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
    return str(save_figure(fig, out / "directions_norms.png", dpi=120))


def figure_projection(coords: dict, n_plot: int, out: Path) -> str:
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
    return str(save_figure(fig, out / "projection.png", dpi=120))


def figure_score_deviation(gaps, cross, sigmas, out: Path) -> str:
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
    return str(save_figure(fig, out / "score_deviation.png", dpi=120))


def figure_memorisation(nn: dict, spacing, out: Path) -> str:
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
    return str(save_figure(fig, out / "memorisation.png", dpi=120))


def figure_samples(finals: dict, nearest: dict, shape, out: Path, count: int = 10) -> str | None:
    """Rows: model samples, their nearest training images, optimal samples, their nearest training images."""
    if len(shape) != 3 or shape[0] not in (1, 3):
        return None
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
    return str(save_figure(fig, out / "samples.png", dpi=120))


def figures(result: dict, n_plot: int, out: Path) -> list[dict]:
    """Every figure of the section, written into `out`, with its caption."""
    r = result
    figs = [
        {"path": figure_distances(r["stats"], r["sigmas"], r["dim"], out),
         "caption": "Distance to the final sample along the sampling and denoising trajectories, and the sampling "
                    "trajectory's deviation from its chord, against σ (GEO Fig. 2b analogue)."},
        {"path": figure_directions(r["stats"], r["sigmas"], r["dim"], out),
         "caption": "Cosine between the ODE direction d_i and x_i − x_K; norms of d_i and x_i against √d and σ√d."},
        {"path": figure_projection(r["coords"], n_plot, out),
         "caption": "Trajectories projected on their chord and the top-2 principal components of the off-chord "
                    "residual (coordinates relative to the final sample)."},
        {"path": figure_score_deviation(r["gaps"], r["cross"], r["sigmas"], out),
         "caption": "Score deviation ‖D_θ − D*‖ along the model's and the optimal denoiser's trajectories, and the "
                    "distance between the two trajectories."},
        {"path": figure_memorisation({k: v[0] for k, v in r["nn"].items()}, r["spacing"], out),
         "caption": "Nearest-training-sample distance of final samples against the training set's own NN spacing."},
    ]
    strip = figure_samples(r["finals"], {k: r["data"][v[1]] for k, v in r["nn"].items()}, r["shape"], out)
    if strip:
        figs.append({"path": strip, "caption": "Final samples of the model and of the optimal denoiser, each "
                                               "above its nearest training image."})
    return figs


def _sigma_index(sigmas, target):
    return int(np.argmin(np.abs(np.log(np.asarray(sigmas)) - math.log(target))))


def _r4(v):
    return None if v is None else float(f"{v:.4g}")


def section(result: dict, figs: list[dict], cfg: dict, model_name: str, config_label: str) -> dict:
    """The `geo_trajectories` report section."""
    sec = cfg["studies"]["geometry"]
    summary, per_sigma, checks, sigmas = result["summary"], result["per_sigma"], result["checks"], result["sigmas"]
    dim, n_train = result["dim"], len(result["data"])
    by = {r["denoiser"]: r for r in summary}
    m, o = by["model"], by["optimal"]
    mid = _sigma_index(sigmas, 1.0)
    at = {r["denoiser"]: r for r in per_sigma if r["step"] == mid}
    text = [
        f"{sec['n_trajectories']} Euler trajectories ({len(sigmas) - 1} steps, EDM ρ = {sec['rho']} grid from σ = "
        f"{sec['sigma_max']:g} to {sec['sigma_min']:g}) of the trained **{model_name}** model and of the optimal "
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
    tables = [
        {"id": "geometry_summary", "source": "ours",
         "caption": "Trajectory geometry and memorisation per denoiser (medians over trajectories).",
         "columns": ["denoiser", "chord/(σ_max√d)", "max dev/chord", "‖x_0‖/(σ_max√d)", "‖d_i‖/√d",
                     "cos(d_i, x_i − x_K)", "top-2 PC var.", "NN dist. median", "train NN spacing", "copies"],
         "rows": [[r["denoiser"], _r4(r["chord_over_sigma_max_sqrt_d"]), _r4(r["max_dev_over_chord_median"]),
                   _r4(r["x0_norm_over_sigma_max_sqrt_d"]), _r4(r["direction_norm_over_sqrt_d_mean"]),
                   _r4(r["cos_direction_end_median"]), _r4(r["top2_pc_variance_ratio_median"]),
                   _r4(r["memo_nn_median"]), _r4(r["memo_train_spacing_median"]), _r4(r["memo_frac_copies"])]
                  for r in summary]},
        {"id": "geometry_per_sigma", "source": "ours",
         "caption": "Distances along the trajectories (means over trajectories): sampling ‖x_i − x_K‖ and denoising "
                    "‖D_i − x_K‖ for the model and the optimal denoiser, and the score deviation ‖D_θ − D*‖ along "
                    "each trajectory.",
         "columns": ["σ", "σ√d", "model ‖x_i − x_K‖", "model ‖D_i − x_K‖", "optimal ‖x_i − x_K‖",
                     "optimal ‖D_i − x_K‖", "‖D_θ − D*‖ (model traj.)", "‖D_θ − D*‖ (optimal traj.)"],
         "rows": [[_r4(sigmas[i]), _r4(per[("model", i)]["sigma_sqrt_d"]), _r4(per[("model", i)]["dist_x_end"]),
                   _r4(per[("model", i)]["dist_denoised_end"]), _r4(per[("optimal", i)]["dist_x_end"]),
                   _r4(per[("optimal", i)]["dist_denoised_end"]), _r4(per[("model", i)]["score_deviation"]),
                   _r4(per[("optimal", i)]["score_deviation"])] for i in steps]},
        {"id": "geometry_mean_shift", "source": "ours",
         "caption": "Optimal denoiser = annealed mean shift: Euler step vs mean-shift step, and the kernel density "
                    "at each step's bandwidth.",
         "columns": ["steps checked", "max rel. |Euler − mean shift|", "min Δ log p_σ", "steps with Δ log p_σ ≥ 0"],
         "rows": [[checks["steps_checked"], float(f"{checks['max_rel_diff_euler_vs_mean_shift']:.3g}"),
                   float(f"{checks['min_log_density_gain']:.4g}"), _r4(checks["frac_steps_density_nondecreasing"])]]},
    ]
    scale = cfg.get("report", {}).get("scale", "default")
    return {"id": "geo_trajectories", "order": 40, "paper": "GEO", "title": "Geometry of sampling trajectories",
            "reproduces": "GEO §3–5 (quasi-linear trajectories, denoising trajectory, annealed mean shift, "
                          "memorisation, score deviation)",
            "scale": f"{scale} (CPU)" if scale != "paper" else "paper", "config": config_label,
            "text": text, "tables": tables, "figures": figs}

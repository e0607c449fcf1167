"""Geometry study (GEO 2305.19947): Euler sampling and denoising trajectories of a trained model and of the optimal
denoiser from the same initial noise, in EDM coordinates; chord deviation, distances, direction cosines, norms,
chord + PCA projection; annealed mean shift and density monotonicity along the optimal trajectories; memorisation
(nearest-neighbour distances) and score deviation ‖D_θ − D*‖. Tensors in, tensors and rows out."""
from __future__ import annotations

import math

import torch

from ..analysis import geometry as geo
from ..analysis import memorisation as memo
from ..errors import UserError
from ..runtime import seeded_generator

F64 = torch.float64
DENOISERS = ("model", "optimal")


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
    at the step's bandwidth before/after (GEO §4.3)."""
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


def summary_rows(stats, coords_ratio, memo_stats, sigmas, dim) -> list[dict]:
    """One row per denoiser: quasi-linearity, direction and memorisation summaries (GEO §3–5)."""
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
            **{f"memo_{k}": v for k, v in memo_stats[name].items()},
        })
    return rows


def geometry_study(sec: dict, model_name: str, net_denoiser, model_schedule, x_train: torch.Tensor, seed: int,
                   device=None) -> dict:
    """Both denoisers' trajectories and every statistic of the study, as a dict of tensors and rows:
    sigmas, shape, dim, data, paths, stats, coords, gaps, cross, finals, nn, spacing, checks, per_sigma, summary."""
    from ..diffusion.denoisers import reschedule
    from ..diffusion.optimal import OptimalDenoiser
    from ..diffusion.schedules import make_schedule
    from ..samplers.grids import make_grid

    if sec["n_train"] is not None and sec["n_train"] < len(x_train):
        keep = torch.randperm(len(x_train), generator=seeded_generator(seed, "geometry-subset"))
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
                            f"'{model_name}': {exc}") from None

    optimal = OptimalDenoiser(x_train, edm, device=device)
    gen = seeded_generator(seed, "geometry-noise", model_name)
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
    return {"sigmas": sigmas, "shape": shape, "dim": dim, "data": data, "paths": paths, "stats": stats,
            "coords": coords, "gaps": gaps, "cross": cross, "finals": finals,
            "nn": {k: memo.nearest_neighbour(v, data) for k, v in finals.items()},
            "spacing": memo.training_spacing(data), "checks": mean_shift_checks(paths["optimal"][0], data, sigmas),
            "per_sigma": per_sigma_rows(stats, sigmas, dim, gaps, cross),
            "summary": summary_rows(stats, ratio, memo_stats, sigmas, dim)}

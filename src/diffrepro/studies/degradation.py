"""Weighted-sum degradation study (NI §3.2): exact posterior weights of the optimal denoiser over (data set, D, N,
schedule, t), the critical t against D with the rule of thumb, and a trained denoiser against its degraded target.

Every function returns plain rows (dicts); data arrive as tensors, keyed by dataset name."""
from __future__ import annotations

import math

import torch

from ..analysis import degradation as dg
from ..errors import UserError
from ..runtime import seeded_generator

F64 = torch.float64


def set_label(spec: dict) -> str:
    if "name" in spec:
        return spec["name"]
    return {"gaussian": "gaussian", "subspace": f"subspace-r{spec.get('rank')}",
            "dataset": spec.get("dataset", "dataset")}[spec["kind"]]


def expand_sets(sec: dict, seed: int, datasets: dict[str, torch.Tensor]):
    """Yield (set spec, label, D, data [N, D] float64) for every data set × dimension of `studies.degradation.sets`;
    `datasets` maps a dataset name to its training images/points (float64)."""
    for i, spec in enumerate(sec["sets"]):
        label, where = set_label(spec), f"studies.degradation.sets[{i}]"
        if spec["kind"] in ("gaussian", "subspace"):
            for dim in spec["dims"]:
                gen = seeded_generator(seed, "degradation-data", label, dim)
                if spec["kind"] == "gaussian":
                    yield spec, label, dim, dg.gaussian_data(spec["n"], dim, gen)
                else:
                    yield spec, label, dim, dg.subspace_data(spec["n"], dim, spec["rank"], gen)
            continue
        name = spec["dataset"]
        if name not in datasets:
            raise UserError(f"{where}: dataset '{name}' needs --data {name}=PATH (results/data/{name}/data.npz)")
        x = datasets[name]
        if "n" in spec and spec["n"] < len(x):
            keep = torch.randperm(len(x), generator=seeded_generator(seed, "degradation-subset", label))[: spec["n"]]
            x = x[keep.sort().values]
        for factor in spec.get("upsample", [1]):
            if factor != 1 and x.ndim != 4:
                raise UserError(f"{where}: upsample needs image data [N, C, H, W]; '{name}' has shape {tuple(x.shape)}")
            xs = dg.upsample_images(x, factor) if factor != 1 else x
            yield spec, label, xs[0].numel(), xs.flatten(1)


def degradation_rows(sec: dict, seed: int, datasets: dict[str, torch.Tensor], device=None) -> list[dict]:
    """One row per (set, D, schedule, variant, timestep): the posterior-weight statistics of NI Fig. 2."""
    from ..diffusion.schedules import make_schedule

    schedules = {name: make_schedule(name) for name in sec["schedules"]}
    rows = []
    for spec, label, dim, data in expand_sets(sec, seed, datasets):
        n = len(data)
        n_q = min(n, spec.get("n_queries", n))
        gen = seeded_generator(seed, "degradation-queries", label, dim)
        sources = torch.randperm(n, generator=gen)[:n_q].sort().values
        noise = torch.randn(n_q, dim, generator=gen, dtype=F64)
        posterior = dg.SourcePosterior(data.to(device), sources.to(device), noise.to(device))
        for sched_name, schedule in schedules.items():
            for variant in sec["variants"]:
                for row in dg.degradation_curve(posterior, schedule, sec["timesteps"], sources.to(device),
                                                variant=variant, bins=sec["histogram_bins"]):
                    rows.append({"data": label, "kind": spec["kind"], "D": dim, "N": n, "n_queries": n_q,
                                 "schedule": sched_name, "variant": variant, **row})
    return rows


def critical_rows(rows: list[dict], sec: dict) -> list[dict]:
    """Per (data, D, schedule): the timestep where the mean max weight crosses the threshold, and the rule of thumb."""
    from ..diffusion.schedules import make_schedule

    out, thr = [], sec["critical_threshold"]
    keys = sorted({(r["data"], r["kind"], r["D"], r["N"], r["schedule"]) for r in rows if r["variant"] == "exact"},
                  key=lambda k: (k[0], k[4], k[2]))
    for label, kind, dim, n, sched_name in keys:
        cell = [r for r in rows if (r["data"], r["D"], r["N"], r["schedule"], r["variant"]) ==
                (label, dim, n, sched_name, "exact")]
        schedule = make_schedule(sched_name)
        crit = dg.critical_timestep([r["timestep"] for r in cell], [r["mean_max_weight"] for r in cell], thr)
        crit_ratio = math.nan if math.isnan(crit) else schedule.sigma_ve(dg.timestep_to_t(schedule, crit))
        iid = kind == "gaussian"  # the rule of thumb is derived for iid unit-variance data only
        out.append({"data": label, "kind": kind, "D": dim, "N": n, "schedule": sched_name, "threshold": thr,
                    "critical_timestep": crit, "critical_noise_ratio": crit_ratio,
                    "rule_timestep": dg.rule_of_thumb_timestep(schedule, dim, n) if iid else math.nan,
                    "rule_noise_ratio": dg.rule_of_thumb_ratio(dim, n) if iid else math.nan})
    return out


def trained_rows(sec: dict, model_name: str, dataset: str, x: torch.Tensor, denoiser, schedule, seed: int,
                 device=None) -> list[dict]:
    """A trained denoiser D_θ (float32, its own schedule) against the exact weighted mean D* of its training set x."""
    from ..diffusion.optimal import OptimalDenoiser

    tr = sec["trained"]
    if tr["n_train"] is not None and tr["n_train"] < len(x):
        x = x[torch.randperm(len(x), generator=seeded_generator(seed, "trained-subset"))[: tr["n_train"]]]
    gen = seeded_generator(seed, "trained-queries", model_name)
    pick = torch.randperm(len(x), generator=gen)[: tr["n_queries"]]
    noise = torch.randn(x[pick].shape, generator=gen, dtype=F64)
    optimal = OptimalDenoiser(x, schedule, device=device)

    def model_in_float32(v, t):
        return denoiser(v.to(device=device, dtype=torch.float32), t).to(device="cpu", dtype=F64)

    rows = dg.trained_vs_target(model_in_float32, optimal, optimal.log_weights, x[pick], schedule, tr["t"], noise)
    return [{"model": model_name, "dataset": dataset, "N": len(x), **r} for r in rows]

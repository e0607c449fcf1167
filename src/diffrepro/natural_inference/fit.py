"""Fitting the coefficient matrices the sweep runs as samplers: training, upstream of the sweep (no file I/O).

  ni_tuned  C tuned at one NFE under exact marginals, from the NFE-matched baseline best after projection
            (NI §5.4 "a better coefficient matrix", §9 automated search; `study.fit_at`, `search.search`)
  ni_sharp  the Δσ-weighted matrix on the DDIM nodes, truncated to a window with the final row's last weight boosted
            (NI §5.3 sharpness control; `sharpness`)

The step `ni fit` writes each matrix in the paper repository's layout and its fit record beside it; the sweep runs it
as the registry sampler of the same name (`samplers.registry`, `solvers.coefficient_matrix`), and the report's NI
search section scores it on held-out noises.
"""
from __future__ import annotations

import time

import torch

from ..errors import UserError
from ..samplers.reference import reference_solution
from ..samplers.sweep import initial_noise
from .matrix import NIMatrix
from .sharpness import delta_sigma_matrix, sharpen
from .study import fit_at
from .tracer import trace_sampler

FITTED = ("ni_tuned", "ni_sharp")
# cell seeds (samplers.sweep.initial_noise) of the search's training and held-out noises; sampling.seeds are small
# integers, so the search never trains on the noises the sweep scores it on
TRAIN_NOISE_SEED = 9_000_001
VALIDATION_NOISE_SEED = 9_000_002


def check_request(ni: dict, sampler: str, model_name: str, nfe: int, source: str) -> str:
    """The `ni` block that fits `sampler` ("search" for ni_tuned, "sharpness" for ni_sharp), once `model_name` and
    `nfe` are checked against it (UserError naming the key otherwise)."""
    if sampler not in FITTED:
        raise UserError(f"ni fit: '{sampler}' is not a fitted matrix sampler (known: {', '.join(FITTED)})")
    block = "search" if sampler == "ni_tuned" else "sharpness"
    nfes = list(ni["search"]["nfe"]) if block == "search" else [int(ni["sharpness"]["nfe"])]
    if model_name not in ni[block]["models"]:
        raise UserError(f"{source}: model '{model_name}' is not in ni.{block}.models {ni[block]['models']}")
    if nfe not in nfes:
        raise UserError(f"{source}: {sampler} at NFE {nfe}: not in ni.{block}.nfe ({nfes})")
    return block


def fit_matrix(ni: dict, sampler: str, nfe: int, model_name: str, model, seed: int) -> tuple[NIMatrix, dict]:
    """(matrix, JSON-able record) of `sampler` at `nfe` on `model` (a sources.LoadedModel) under the `ni` params,
    for a request `check_request` accepted; the record's `summary` is one line for the log."""
    start = time.perf_counter()
    if sampler == "ni_sharp":
        c = ni["sharpness"]
        base = delta_sigma_matrix(trace_sampler("ddim", model.schedule, nfe, grid=c["grid"]).nodes)
        m = sharpen(base, c["window"], c["sweep_last_weight"])
        return m, {"sampler": sampler, "model": model_name, "nfe": nfe, "grid": c["grid"], "window": c["window"],
                   "last_weight": float(c["sweep_last_weight"]), "wall_s": time.perf_counter() - start,
                   "summary": f"window {c['window']}, last weight ×{c['sweep_last_weight']:g} ({c['grid']} grid)"}
    s = ni["search"]
    shape = tuple(model.data_shape)
    n_train = s["n_train_per_model"].get(model_name, s["n_train"])
    denoiser = model.denoiser()
    e_train = initial_noise((n_train, *shape), seed, TRAIN_NOISE_SEED).to(model.device)
    with torch.no_grad():
        r_train = reference_solution(denoiser, model.schedule, e_train, steps=s["reference_steps"])
    res = fit_at(model.schedule, nfe, s["baselines"], s["grid"], denoiser, model.denoiser(grad=True), e_train, r_train,
                 s["iterations"], s["lr"], s["window"], batch_size=s["batch_size"], trim=s["trim"])
    best = res["best"]
    return res["matrix"], {"sampler": sampler, "model": model_name, "nfe": nfe, "grid": s["grid"], "start": best,
                           "train_err": res["train_err"], "losses": res["losses"], "n_train": n_train,
                           "iterations": s["iterations"], "wall_s": time.perf_counter() - start,
                           "summary": f"from {best} ({s['grid']} grid), search objective "
                                      + (f"{res['losses'][0]:.4g} → {min(res['losses']):.4g}" if res["losses"]
                                         else "– (no free weights)")}


def load_fitted(path) -> tuple[NIMatrix, dict]:
    """(matrix, fit record) of an `ni fit` output (the record is the .json beside the matrix)."""
    from pathlib import Path

    from ..io import read_json

    record = Path(path).with_suffix(".json")
    if not record.is_file():
        raise UserError(f"{path}: its fit record {record} is missing (written by `diffrepro ni fit`)")
    return NIMatrix.load(path), read_json(record)

"""AMED predictors (GEO §3.3): the tiny network that chooses each step's intermediate time (`predictor`) and its
distillation training (`distill`). The step rule itself is pure and lives in `diffrepro.samplers.amed`.

Artifact (`save_predictor` / `load_predictor`): a torch file with the predictor's weights and config, the sampler, NFE
and options it was trained for, and the training summary (loss history, decisions on the training grid).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError
from .predictor import AMEDPredictor, as_options, step_decisions

__all__ = ["AMEDPredictor", "as_options", "step_decisions", "save_predictor", "load_predictor", "load_predictors", "decisions_for", "decisions_on_grid"]

FORMAT = "diffrepro-amed-predictor/1"


def predictor_payload(predictor: AMEDPredictor, summary: dict, *, model: str, nfe: int) -> dict:
    return {"format": FORMAT, "model": model, "sampler": summary["sampler"], "nfe": int(nfe),
            "config": predictor.config(), "state_dict": predictor.state_dict(), "summary": summary}


def load_predictor(path: str | Path) -> tuple[AMEDPredictor, dict]:
    """(predictor, payload) from an `amed train` file; UserError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"AMED predictor file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
        raise UserError(f"{path}: not a readable AMED predictor file ({exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path}: not an AMED predictor file (expected format '{FORMAT}')")
    predictor = AMEDPredictor(**payload["config"])
    predictor.load_state_dict(payload["state_dict"])
    return predictor.eval(), payload


def decisions_for(predictor: AMEDPredictor, sigmas) -> dict[str, list[float]]:
    """The predictor's decisions (sampler options, one float per step) on the σ grid `sigmas`."""
    with torch.no_grad():
        return as_options(step_decisions(predictor, [float(s) for s in sigmas]))


def load_predictors(paths: list, model: str, sampler: str) -> dict:
    """NFE → (path, predictor) from `amed train` files, checked against the model and sampler."""
    out = {}
    for path in paths:
        predictor, payload = load_predictor(path)
        if payload["sampler"] != sampler or payload["model"] != model:
            raise UserError(f"{path} is a predictor for {payload['model']}/{payload['sampler']}, not "
                            f"{model}/{sampler}")
        if payload["nfe"] in out:
            raise UserError(f"two AMED predictors for NFE {payload['nfe']}: {out[payload['nfe']][0]} and {path}")
        out[payload["nfe"]] = (path, predictor)
    return out


def predictors_by_sampler(paths: list, model: str, samplers: list[str]) -> dict[str, dict]:
    """sampler → (NFE → (path, predictor)) for the samplers of one sample job: each predictor file goes to the
    sampler it was trained for (UserError for a file of another model or of a sampler not in `samplers`)."""
    grouped: dict[str, list] = {}
    for path in paths:
        sampler = load_predictor(path)[1]["sampler"]
        if sampler not in samplers:
            raise UserError(f"--amed-predictor {path} is for sampler '{sampler}', which is not among --sampler "
                            f"{' '.join(samplers)}")
        grouped.setdefault(sampler, []).append(path)
    return {s: load_predictors(grouped.get(s, []), model, s) for s in samplers}


def decisions_on_grid(predictor, sampler: str, schedule, grid) -> dict:
    """The predictor's decisions (one float per step) on a cell's grid in the sampler's coordinates."""
    from ..samplers import convert_grid, get_sampler
    from ..samplers.sweep import native_schedule

    native = native_schedule(get_sampler(sampler).coords, schedule)
    return decisions_for(predictor, convert_grid(grid, schedule, native).tolist())

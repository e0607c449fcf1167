"""The "Real data" report section: what the FID/KID columns of a real dataset mean (detector, sample count,
reference split), two anchors in the same feature space (real train images and uniform noise against the test
split), and whether FID falls with NFE for the high-order samplers (GEO §5: convergence of fast solvers).

Functions over plain numbers and the aggregated metrics table; `feature_spaces` scores the anchors (no file I/O)."""
from __future__ import annotations

import polars as pl

from ..errors import UserError
from ..samplers import get_sampler

REAL_KINDS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}
EXTRA_HIGH_ORDER = ("ni_tuned",)  # coefficient matrices tuned from the best high-order baseline (NI §5.4)


def is_high_order(sampler: str) -> bool:
    if sampler in EXTRA_HIGH_ORDER:
        return True
    try:
        return get_sampler(sampler).order >= 2  # a matrix sampler's order is NaN: not claimed
    except UserError:  # not a sampler (e.g. a renamed one in an old metrics table)
        return False


def feature_spaces(cfg: dict, dataset: str, models: list[str], refstats, classifier: str | None, x_train, x_test,
                   agg: pl.DataFrame, samples: list[str], reference: list[str]) -> list[dict]:
    """The section's feature spaces: the sweep's own (anchors: real train images and uniform noise against the test
    split, and the per-cell FIDs of the aggregated table) and, when the sweep scores in another space (Inception) and a
    classifier is given, our classifier's space beside it (its reference statistics, anchors and per-cell FIDs from
    the sample files)."""
    import copy

    from ..metrics.refstats import compute as compute_refstats
    from ..metrics.scoring import CellScorer, sample_cells, space_summary
    from ..metrics.spaces import feature_kind
    from ..samplers.sweep import model_sampling

    n_samples = max([model_sampling(cfg, m)["n_samples"] for m in models] or [1000])
    n = min(n_samples, len(x_train))
    own = CellScorer(cfg, dataset, refstats, classifier)
    spaces = [{**space_summary(own, refstats, x_train, n, n_samples, cfg["seed"], reference),
               "cells": {m: cells_from_agg(agg, m, f"fid_{own.space.name}") for m in models}}]
    if feature_kind(cfg, dataset) != "classifier" and classifier:
        cfg_clf = copy.deepcopy(cfg)
        cfg_clf["metrics"].setdefault("feature_extractor", {})[dataset] = "classifier"
        ref_clf = compute_refstats(cfg_clf, dataset, x_test, classifier)
        clf = CellScorer(cfg_clf, dataset, ref_clf, classifier)
        spaces.append({**space_summary(clf, ref_clf, x_train, n, n_samples, cfg["seed"], reference),
                       "cells": sample_cells(clf, samples)})
    return spaces


def detector_label(space: str, extractor: str | None = None, dim: int | None = None) -> str:
    """Human name of a feature space for captions (the torch-fidelity extractor and the width when known)."""
    size = f", {dim}-d" if dim else ""
    if space.endswith("_classifier"):
        return f"our own {space[:-len('_classifier')]} classifier's penultimate features{size} (not Inception)"
    return f"Inception-v3 pool3 features{size} (TF FID graph{f', `{extractor}`' if extractor else ''})"


def trend(values: list[float]) -> str:
    """'falls' (every step lower), 'falls overall' (last < first), else 'does not fall'."""
    if len(values) < 2:
        return "single NFE"
    if all(b < a for a, b in zip(values, values[1:])):
        return "falls"
    return "falls overall" if values[-1] < values[0] else "does not fall"


def nfe_rows(cells: list[dict], reference: float | None = None) -> tuple[list[int], list[list]]:
    """cells: {sampler, grid, nfe, fid}. Rows per high-order (sampler, grid): FID at each NFE, the trend of FID and,
    given the FID of the converged PF-ODE solution, the trend of |FID − FID_reference| (convergence to it)."""
    nfes = sorted({c["nfe"] for c in cells})
    by_key: dict[tuple, dict] = {}
    for c in cells:
        if is_high_order(c["sampler"]) and c["fid"] is not None:
            by_key.setdefault((c["sampler"], c["grid"]), {})[c["nfe"]] = c["fid"]
    rows = []
    for (sampler, grid), fids in sorted(by_key.items()):
        ordered = [fids[n] for n in nfes if n in fids]
        gap = [] if reference is None else [trend([abs(f - reference) for f in ordered])]
        rows.append([sampler, grid, *[None if n not in fids else round(fids[n], 3) for n in nfes], trend(ordered),
                     *gap])
    return nfes, rows


def cells_from_agg(agg: pl.DataFrame, model: str, metric: str) -> list[dict]:
    col = f"{metric}_mean"
    if col not in agg.columns:
        return []
    return [{"sampler": r["sampler"], "grid": r["grid"], "nfe": r["nfe"], "fid": r[col]}
            for r in agg.filter(pl.col("model") == model).iter_rows(named=True)]


def trend_summary(rows: list[list], column: int = -1, what: str = "FID") -> str:
    verdicts = [r[column] for r in rows]
    n_falls, n_overall = verdicts.count("falls"), verdicts.count("falls overall")
    bad = [f"`{r[0]}` on `{r[1]}`" for r in rows if r[column] == "does not fall"]
    text = (f"{what}: {n_falls} of {len(rows)} high-order (sampler, grid) rows fall at every NFE step, {n_overall} "
            "fall overall (last below first)")
    return text + (f"; not falling: {', '.join(bad)}." if bad else ".")


def build_section(*, dataset: str, kind: str, models: list[str], split: dict, spaces: list[dict],
                  config_label: str, scale: str) -> dict:
    """spaces: one entry per feature space, {name, extractor, dim, n_samples, n_reference, anchors: {train, noise},
    cells: {model: [cell dicts]}, source} — the first is the sweep's own (its FID columns)."""
    name = REAL_KINDS.get(kind, kind)
    text = [f"**Real data, not a toy**: {name} (dataset `{dataset}`), read from the real IDX files (MD5-verified) by "
            f"torchvision's own class: {split['train']} train / {split['test']} test images at 28×28. Every FID/KID "
            "below and in the sweep tables of this dataset is computed from generated samples against the real "
            "**test split**, in the feature space named in the caption."]
    tables = []
    for i, sp in enumerate(spaces):
        det = detector_label(sp["name"], sp["extractor"], sp.get("dim"))
        a = sp["anchors"]
        text.append(f"Feature space `{sp['name']}` ({det}){' — the sweep’s own FID columns' if i == 0 else ''}: "
                    f"FID of {a['n']} real train images vs the {sp['n_reference']} test images is "
                    f"{a['train']['fid']:.3g}; of {a['n']} uniform-noise images {a['noise']['fid']:.3g} "
                    f"({a['noise']['fid'] / max(a['train']['fid'], 1e-12):.3g}× higher).")
        tables.append({"id": f"real_{dataset}_anchors_{sp['name']}", "source": "ours",
                       "caption": f"{name}: anchors in `{sp['name']}` ({det}); {a['n']} images each against the "
                                  f"{sp['n_reference']}-image real test split.",
                       "columns": ["images", "FID", "KID"],
                       "rows": [["real train split", round(a["train"]["fid"], 4), round(a["train"]["kid"], 6)],
                                ["uniform noise", round(a["noise"]["fid"], 4), round(a["noise"]["kid"], 6)]]})
        for model in models:
            ref = sp.get("reference", {}).get(model)
            nfes, rows = nfe_rows(sp["cells"].get(model, []), ref)
            if not rows:
                continue
            tables.append({"id": f"real_{model}_fid_vs_nfe_{sp['name']}", "source": "ours",
                           "caption": f"Model {model} ({name}): FID (`{sp['name']}`, {sp['n_samples']} generated "
                                      f"samples per cell vs the {sp['n_reference']}-image test split) of the "
                                      "high-order samplers against NFE, whether it falls, and whether its "
                                      "distance to the converged PF-ODE solution's FID falls.",
                           "columns": ["sampler", "grid", *[f"NFE {n}" for n in nfes], "FID trend",
                                       *(["|FID − reference| trend"] if ref is not None else [])], "rows": rows})
            text.append(f"Model {model}, `{sp['name']}`: " + trend_summary(rows, len(nfes) + 2)
                        + (f" The converged PF-ODE solution from the same initial noises has FID {ref:.4g}; "
                           + trend_summary(rows, -1, "|FID − that|") if ref is not None else ""))
    return {"id": f"real_{dataset}", "order": 44, "paper": "GEO",
            "title": f"Real data: {name} FID against the real test split",
            "reproduces": "fast-sampler convergence with NFE on real images (GEO §5, small scale)",
            "scale": scale, "config": config_label, "text": text, "tables": tables, "figures": [], "notes": []}

"""Front and back matter of the report, computed from the config and provenance: the setup and limitations paragraphs,
the full citations, and the appendix that takes the long tables out of the sections."""
from __future__ import annotations

REFERENCES = [
    {"key": "NI", "text": "Zhenxin Zheng and Zhenjie Zheng (2025). *Rethinking Diffusion Model in High Dimension*. "
                          "arXiv:2503.08643 (NeurIPS 2025 submission). Code: github.com/blairstar/NaturalDiffusion."},
    {"key": "GEO", "text": "Defang Chen et al. (2023). *A Geometric Perspective on Diffusion Models*. arXiv:2305.19947. "
                           "With the GITS paper: Defang Chen et al. (2024), *On the Trajectory Regularity of "
                           "ODE-based Diffusion Sampling*, ICML 2024, arXiv:2405.11326; and their diff-sampler toolbox "
                           "(github.com/zju-pi/diff-sampler, commit 68d5ce4)."},
    {"key": "MDM", "text": "Raghav Singhal, Mark Goldstein and Rajesh Ranganath (2023). *Where to Diffuse, How to "
                           "Diffuse, and How to Get Back: Automated Learning for Multivariate Diffusions*. ICLR 2023, "
                           "arXiv:2302.07261 (OpenReview osei3IzUia)."},
]

TIME_CONVENTION = ("Times: t ∈ [0, 1] is the continuous model time (t = 0 clean, t = 1 pure noise) everywhere except "
                   "the weighted-sum degradation tables, which use the paper's discrete 0–999 step index of the "
                   "1000-step DDPM schedule (t = 500 there is σ/α ≈ 3.44); σ is the VE/EDM noise level σ/α.")

SPACE_LABELS = {"classifier": "the pipeline's own {d} classifier (not Inception)",
                "inception": "Inception-v3 pool3 (torch-fidelity)",
                "inception_ts": "the StyleGAN3/EDM TorchScript Inception-v3 (the published FID detector)"}


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def limitations_text(cfg: dict) -> str:
    """The limitations paragraph for this config: which models (trained here, for how long, or imported), how many
    samples and seeds per cell, and the feature space of each swept image dataset's metrics."""
    from ..metrics.spaces import feature_kind

    models = cfg.get("models", {})
    swept = cfg.get("sampling", {}).get("models", [])
    trained = [m for m in models.values() if not m.get("source")]
    imported = sorted(n for n, m in models.items() if m.get("source"))
    steps = max((m.get("train", {}).get("steps", 0) for m in trained), default=0)
    who = (f"{_count(len(trained), 'model')} trained by this pipeline for at most {steps} steps" if trained else "")
    who += (" and " if who and imported else "") + (f"{_count(len(imported), 'published checkpoint')} "
                                                   f"({', '.join(imported)})" if imported else "")
    spaces = sorted({SPACE_LABELS.get(k, k).format(d=d) for d, k in
                     ((models[m]["dataset"], feature_kind(cfg, models[m]["dataset"])) for m in swept if m in models)
                     if k != "vector"})
    n, seeds = cfg.get("sampling", {}).get("n_samples"), cfg.get("sampling", {}).get("seeds", [])
    return (f"Limitations: {who or 'no models'}, {n} samples per sweep cell and "
            f"{_count(len(seeds), 'sampling seed')}, so absolute numbers are comparable with the papers' (50k "
            "samples, Inception features, full-size networks) only where a section says so. "
            + (f"Image metrics are Fréchet and kernel distances in the feature space of {'; '.join(spaces)}. "
               if spaces else "")
            + "A difference between two cells is called a reproduction only where it exceeds the spread over "
            "seeds, and sampler comparisons share the initial noise (paired). Claims whose inputs this run does not "
            "compute (e.g. CIFAR-10, ImageNet or SD3 checkpoints) are listed as not testable at this scale.")


def models_text(cfg: dict) -> str:
    parts = []
    for name, m in cfg.get("models", {}).items():
        train = m.get("train", {})
        arch = m.get("arch", "?")
        size = m.get(arch, {})
        shape = (f"{size.get('hidden')}×{size.get('depth')}" if arch == "mlp" else
                 f"{size.get('channels')} channels × {size.get('channel_mult')}") if size else ""
        parts.append(f"`{name}` ({arch} {shape}, {m.get('schedule', {}).get('name', '?')}, "
                     f"{m.get('parameterisation', '?')}, {train.get('steps', '?')} steps × batch "
                     f"{train.get('batch_size', '?')})")
    return "; ".join(parts)


def setup_text(cfg: dict, provenance: dict) -> list[str]:
    """The setup paragraph: data, models, sweep sizes, compute and time, all from the config and benchmarks."""
    data = "; ".join(f"`{k}` (N = {d.get('N')}, shape {d.get('shape')})" for k, d in provenance["datasets"].items())
    s = cfg.get("sampling", {})
    per_model = "; ".join(f"{m}: {o.get('n_samples', s.get('n_samples'))} samples, NFE {o.get('nfe', s.get('nfe'))}"
                          for m, o in (s.get("per_model") or {}).items())
    seconds = provenance.get("total_seconds")
    compute = (f"{provenance['machine']['cpus']} CPUs; {seconds / 60:.1f} min of job time in total"
               if seconds else f"{provenance['machine']['cpus']} CPUs; no benchmark files found")
    return [f"Setup: data {data or '(none recorded)'}. Models {models_text(cfg)}. Sampler sweep: "
            f"{len(s.get('samplers', []))} samplers × grids {s.get('grids')} × NFE {s.get('nfe')}, "
            f"{s.get('n_samples')} samples per cell, seeds {s.get('seeds')}"
            + (f" ({per_model})" if per_model else "") + f". Compute: {compute}.", TIME_CONVENTION]


def split_appendix(sections: list[dict], max_rows: int) -> list[dict]:
    """Move every table longer than `max_rows` (except the scorecard) to the appendix; its section gets a link."""
    appendix = []
    for s in sections:
        kept = []
        for t in s["tables"]:
            if len(t["rows"]) > max_rows and s["id"] != "scorecard":
                anchor = f"appendix-{s['id']}-{t['id']}"
                appendix.append({**t, "section": s["id"], "section_title": s["title"], "anchor": anchor})
                s["text"] = s["text"] + [f"The full table *{t['id']}* ({len(t['rows'])} rows) is in the "
                                         f"[appendix](#{anchor})."]
            else:
                kept.append(t)
        s["tables"] = kept
    return appendix

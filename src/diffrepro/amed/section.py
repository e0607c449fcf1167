"""The AMED report section (docs/DEVELOPING.md "Report sections"): the predictors' training losses, the chosen r per
step (the paper's figure of r across steps) and what Natural Inference can say about a learned solver. Every number
is formatted from the predictor summaries and the sweep manifests."""
from __future__ import annotations

from pathlib import Path

NI_NOTE = ("What NI can and cannot say about a learned solver: once the predictor's decisions (r, c, g per step) are "
           "fixed, an AMED step is arithmetic on the state and the denoiser outputs with float coefficients, so the "
           "sampler traces into (C, B) exactly like any other (`diffrepro ni matrix --sampler amed --option "
           "r=[...]`) and the executor replays it. The decisions are recorded per sweep cell (`amed.r` in "
           "results/samples/<model>/<sampler>.json), so each cell's matrix is reproducible. With our networks the "
           "predictor sees the zero feature (they expose no bottleneck), so its decisions depend on the grid only "
           "and one matrix holds for every sample; with a bottleneck feature the decisions depend on the noise, the "
           "matrix is per sample (or per batch: our denoisers take one time per batch, so the sampler uses the "
           "batch mean), and NI describes each run, not the method: the map noise → sample is no longer linear, "
           "and marginal checks or searches over C say nothing about how the predictor would choose elsewhere.")


def training_rows(summaries: list[dict]) -> list[list]:
    rows = []
    for s in sorted(summaries, key=lambda s: (s["model"], s["sampler"], s["nfe"])):
        rows.append([s["model"], s["sampler"], s["nfe"], s["grid"], s["n_train"], s["iterations"],
                     s["loss_initial"], s["loss_final"], ", ".join(f"{r:.3f}" for r in s["decisions"]["r"]),
                     round(s["train_wall_s"], 2)])
    return rows


def swept_r(manifests: dict[str, dict]) -> list[list]:
    """[model, sampler, cell key, r per step] for every swept AMED cell that used a predictor."""
    rows = []
    for m in manifests.values():
        for c in m.get("cells", []):
            if "amed" in c:
                rows.append([m["model"], m["sampler"], c["key"], ", ".join(f"{r:.3f}" for r in c["amed"]["r"])])
    return rows


def r_figure(summaries: list[dict], dest: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import write_with

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for s in sorted(summaries, key=lambda s: (s["model"], s["sampler"], s["nfe"])):
        r = s["decisions"]["r"]
        ax.plot(range(1, len(r) + 1), r, marker="o", label=f"{s['model']} {s['sampler']} NFE {s['nfe']}")
    longest = max((len(s["decisions"]["r"]) for s in summaries), default=1)
    ax.set_xticks(range(1, longest + 1))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--", label="r = ½ (DPM-Solver-2 / midpoint split)")
    ax.set_xlabel("step i")
    ax.set_ylabel("chosen r")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    write_with(dest, lambda p: fig.savefig(p, dpi=100, format="png"))
    plt.close(fig)
    return dest


def amed_section(summaries: list[dict], manifests: dict[str, dict], fig_dir: Path, scale: str, config: str) -> dict:
    figure = r_figure(summaries, fig_dir / "amed_r.png") if summaries else None
    better = [s for s in summaries if s["loss_final"] < s["loss_initial"]]
    total = sum(s["train_wall_s"] for s in summaries)
    text = [f"{len(summaries)} AMED predictors trained by distillation (teacher: a finer grid with M points inserted "
            f"into every interval; loss: squared distance to the teacher at every grid point along the student's own "
            f"rollout), {total:.1f} s of training in all. {len(better)} of {len(summaries)} end below the loss of "
            "their starting point r = ½ (DPM-Solver-2 for AMED-Solver, the midpoint split for a plugin) on their "
            "training noises; the sweep's metrics tables show the held-out result (rows `amed`, `amed_plugin_*`).",
            NI_NOTE]
    tables = [{"id": "amed_training", "source": "ours",
               "caption": "AMED predictors: training loss at r = ½ and after training, chosen r per step.",
               "columns": ["model", "sampler", "NFE", "grid", "noises", "iterations", "loss (r = ½)",
                           "loss (trained)", "r per step", "train s"], "rows": training_rows(summaries)}]
    rows = swept_r(manifests)
    if rows:
        tables.append({"id": "amed_swept_r", "source": "ours", "caption": "The r each swept AMED cell used.",
                       "columns": ["model", "sampler", "cell", "r per step"], "rows": rows})
    return {"id": "amed", "order": 47, "paper": "GEO", "title": "AMED-Solver and AMED-Plugin: learned intermediate times",
            "reproduces": "AMED (CVPR 2024) step rule, predictor and distillation; the figure of r across steps",
            "scale": scale, "config": config, "text": text, "tables": tables,
            "figures": [{"path": str(figure), "caption": "Chosen r per step for every trained predictor."}]
            if figure else [], "notes": []}

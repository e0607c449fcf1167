"""End to end: the whole chain on params/smoke.yaml through DVC, real Snakemake and real torch-fidelity."""
import json
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.slow


def test_report_and_tables_exist(smoke_workspace):
    ws = smoke_workspace
    for rel in ["reports/index.html", "reports/report.md", "results/tables/metrics.parquet",
                "results/tables/metrics.csv", "results/metrics.json"]:
        assert (ws / rel).is_file() and (ws / rel).stat().st_size > 0, rel


def test_metrics_table_covers_the_sweep(smoke_workspace):
    import yaml

    cfg = yaml.safe_load((smoke_workspace / "params/smoke.yaml").read_text())
    df = pl.read_parquet(smoke_workspace / "results/tables/metrics.parquet")
    for model in cfg["sampling"]["models"]:
        for sampler in cfg["sampling"]["samplers"]:
            rows = df.filter((pl.col("model") == model) & (pl.col("sampler") == sampler))
            assert rows.height > 0, (model, sampler)
            assert rows["traj_rmse"].is_finite().all()
    digits = df.filter(pl.col("dataset") == "digits")
    assert "fid_digits_classifier" in df.columns and digits["fid_digits_classifier"].is_finite().all()
    assert "kid_digits_classifier" in df.columns
    toy = df.filter(pl.col("dataset") == "toy2d")
    assert "swd" in df.columns and toy["swd"].is_finite().all()
    # NFE is measured by counting denoiser calls; for DDIM it equals the request
    ddim = df.filter(pl.col("sampler") == "ddim")
    assert (ddim["nfe_measured"] == ddim["nfe"]).all()


def test_fitted_matrices_are_swept_as_samplers(smoke_workspace):
    """One-way flow: `ni fit` writes the matrices, the sweep's `sample` job runs them as registry samplers (cells on
    their own nodes, NFE counted), and the samples equal the NI executor's replay of the matrix from the sweep's
    initial noises; the metrics table scores them like any sampler."""
    import numpy as np
    import yaml

    from diffrepro import sources
    from diffrepro.natural_inference.matrix import NIMatrix
    from diffrepro.natural_inference.study import sample
    from diffrepro.samplers.sweep import initial_noise, model_sampling

    ws = smoke_workspace
    cfg = yaml.safe_load((ws / "params/smoke.yaml").read_text())
    df = pl.read_parquet(ws / "results/tables/metrics.parquet")
    for sampler in ("ni_tuned", "ni_sharp"):
        for model in cfg["sampling"]["models"]:
            manifest = json.loads((ws / f"results/samples/{model}/{sampler}.json").read_text())
            assert manifest["sampler"] == sampler and manifest["cells"], (model, sampler)
            loaded = sources.load_model(ws / f"results/models/{model}/model.pt")
            n = model_sampling(cfg, model)["n_samples"]
            with np.load(ws / f"results/samples/{model}/{sampler}.npz") as z:
                for cell in manifest["cells"]:
                    assert cell["matrix"].startswith(f"results/ni/fit/{model}/{sampler}_nfe")
                    m = NIMatrix.load(ws / cell["matrix"])
                    assert cell["nfe_measured"] == cell["nfe"] == m.n
                    eps = initial_noise((n, *loaded.data_shape), cfg["seed"], cell["seed"])
                    replay = sample(m, loaded.denoiser(), eps).float().numpy()
                    assert np.abs(z[cell["key"]] - replay).max() <= 1e-6 * np.abs(replay).max(), cell["key"]
            assert df.filter((pl.col("model") == model) & (pl.col("sampler") == sampler)).height > 0


def test_metrics_json_is_flat_for_dvc(smoke_workspace):
    summary = json.loads((smoke_workspace / "results/metrics.json").read_text())
    assert summary and all(not isinstance(v, (dict, list)) for v in _leaves(summary))


def _leaves(d):
    for v in d.values():
        if isinstance(v, dict):
            yield from _leaves(v)
        else:
            yield v


def test_every_rule_left_a_benchmark_and_log(smoke_workspace):
    bench = list((smoke_workspace / "benchmarks").rglob("*.tsv"))
    logs = list((smoke_workspace / "logs").rglob("*.log"))
    assert len(bench) >= 5 and len(logs) >= 5


def test_rerun_is_a_no_op(smoke_workspace):
    from conftest import run_snakemake

    r = run_snakemake(smoke_workspace, "-n")  # params/run.yaml selects the smoke config here
    assert r.returncode == 0
    assert "Nothing to be done" in r.stdout + r.stderr, r.stdout[-3000:]


def test_full_report_has_the_scorecard_and_no_outside_references(smoke_workspace):
    """Every section of the smoke run rendered: no caption or text points to files outside the repository."""
    import re

    from diffrepro.reports.claims import load_claims

    for name in ("index.html", "report.md"):
        text = (smoke_workspace / "reports" / name).read_text()
        for needle in (r"\bspec ", r"research/", r"\.\./shared"):
            assert not re.search(needle, text), (name, re.search(f".{{60}}{needle}.{{40}}", text).group())
        assert all(c["id"] in text for c in load_claims())
    assert 'id="scorecard"' in (smoke_workspace / "reports" / "index.html").read_text()


# benchmarks/ is left out: Snakemake writes those timing records itself (they are no rule's output), and the report's
# compute table summarises whichever exist, saying so.
CHECKED_TREES = ("results/", "reports/", "logs/")


def _jobs_by_command(ws):
    """shell command (as argv, up to the first redirection) -> {rule, inputs, outputs} from Snakemake's own
    `--detailed-summary` of the smoke workflow."""
    import csv
    import io
    import shlex
    import subprocess

    from conftest import PY, run_env

    r = subprocess.run([PY, "-m", "snakemake", "--configfile", "params/smoke.yaml", "--detailed-summary", "--nolock"],
                       cwd=ws, capture_output=True, text=True, env=run_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs, produced = {}, set()
    for row in csv.DictReader(io.StringIO(r.stdout), delimiter="\t"):
        produced.add(row["output_file"])
        if row["shellcmd"] in ("-", ""):
            continue
        argv = []
        for token in shlex.split(row["shellcmd"]):
            if token.startswith((">", "2>", "&>", "|")):
                break
            argv.append(token)
        job = jobs.setdefault(tuple(argv), {"rule": row["rule"], "inputs": set(), "outputs": set()})
        job["outputs"].add(row["output_file"])
        job["inputs"].update(p for p in row["input-file(s)"].split(",") if p and p != "-")
    for job in jobs.values():
        job["produced"] = produced
    return jobs


def _declared(rel: str, job: dict) -> bool:
    """`rel` is an input or output of the job, inside a declared folder, the provenance sidecar of one, or a file
    beside a declared report section (`section.json` names its figures and tables, written with it)."""
    import os

    paths = job["inputs"] | job["outputs"]
    target = rel[: -len(".prov.json")] if rel.endswith(".prov.json") else rel
    sections = {os.path.dirname(p) for p in job["inputs"] if p.endswith("section.json")}
    # the job's own folders (where it keeps side files such as training checkpoints), but no other job's output
    own = {os.path.dirname(p) for p in job["outputs"]} - {"results", ""}
    return target in paths or any(target.startswith(p.rstrip("/") + "/") for p in paths) \
        or os.path.dirname(target) in sections \
        or (target not in job["produced"] and any(target.startswith(d + "/") or target == d for d in own))


def test_every_job_reads_only_declared_inputs(smoke_workspace):
    """One-way data flow: each workflow job of the smoke build opened (or listed) only files that its rule declares
    (inputs, its own outputs, their provenance sidecars). The jobs recorded their reads with DIFFREPRO_READ_TRACE
    (diffrepro.readtrace); the rules' inputs come from Snakemake's --detailed-summary."""
    from conftest import smoke_read_traces

    ws = smoke_workspace.resolve()
    traces = [json.loads(p.read_text()) for p in sorted(smoke_read_traces(smoke_workspace).glob("*.json"))]
    jobs = _jobs_by_command(ws)
    assert len(traces) >= 20 and jobs
    unmatched, undeclared, checked = [], [], 0
    for trace in traces:
        job = jobs.get(tuple(trace["argv"]))
        if job is None:
            unmatched.append(" ".join(trace["argv"])[:200])
            continue
        for path in trace["reads"] + trace["listed"]:
            try:
                rel = str(Path(path).relative_to(ws))
            except ValueError:
                continue  # outside the workspace: the venv, the package, cached assets
            if not rel.startswith(CHECKED_TREES):
                continue
            checked += 1
            if not _declared(rel, job):
                undeclared.append(f"{job['rule']}: {rel}")
    assert not unmatched, f"diffrepro processes that are no workflow job: {unmatched[:5]}"
    assert checked > 50
    assert not undeclared, "jobs read files their rules do not declare:\n" + "\n".join(sorted(set(undeclared)))

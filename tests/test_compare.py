"""`diffrepro compare` across git revisions and DVC experiments, on a small git+DVC repo whose one stage writes
synthetic metric rows (the evaluate-step format) and runs the real `diffrepro aggregate`."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from diffrepro.reports import compare

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1",
       "SNAKEMAKE_PROFILE": "workflow/profiles/local"}

GENERATE = f"""
import sys, yaml
sys.path.insert(0, {str(REPO / 'tests')!r})
from test_report import write_synthetic_results
p = yaml.safe_load(open("params.yaml"))["sampling"]
write_synthetic_results(__import__("pathlib").Path("."), shift={{"ddpm": p["ddpm_shift"]}}, nfes=p["nfe"], seeds=(0,))
"""

DVC_YAML = f"""
stages:
  sweep:
    cmd: {sys.executable} gen.py && {sys.executable} -m diffrepro aggregate --params {REPO / 'params' / 'smoke.yaml'} --metrics results/metrics --out-dir results/tables --summary results/metrics.json
    deps: [gen.py]
    params: [sampling]
    outs: [results/tables/metrics.parquet, results/tables/metrics_agg.parquet, results/tables/metrics_agg.csv,
           results/metrics, results/samples, results/data, benchmarks]
    metrics:
      - results/metrics.json: {{cache: false}}
    plots:
      - results/tables/metrics.csv: {{cache: false, x: nfe, y: traj_rmse}}
"""


def sh(*args, cwd, check=True, timeout=300):
    out = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{args} failed:\n{out.stdout}\n{out.stderr}")
    return out


def set_params(repo: Path, **sampling):
    (repo / "params.yaml").write_text(yaml.safe_dump({"sampling": {"nfe": [4, 8], "ddpm_shift": 0.0, **sampling}}))


def commit(repo: Path, message: str, tag: str | None = None):
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-q", "-m", message, cwd=repo)
    if tag:
        sh("git", "tag", tag, cwd=repo)


@pytest.fixture(scope="module")
def versions(tmp_path_factory):
    """Tags v1 (baseline), v2 (ddpm_shift changed), bad (schema 0); `empty` = a commit without results."""
    repo = tmp_path_factory.mktemp("cmp")
    sh("git", "init", "-q", "-b", "main", cwd=repo)
    sh("dvc", "init", "-q", cwd=repo)
    (repo / "gen.py").write_text(GENERATE)
    set_params(repo)
    commit(repo, "empty", tag="empty")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    sh("dvc", "repro", "-q", cwd=repo)
    commit(repo, "baseline", tag="v1")
    set_params(repo, ddpm_shift=0.5)
    sh("dvc", "repro", "-q", cwd=repo)
    commit(repo, "ddpm shifted", tag="v2")
    return repo


def delta_rows(md: str) -> list[list[str]]:
    """The metric-delta table of a comparison's Markdown, one list of 11 stripped cells per row."""
    section = md.split("## Metric deltas", 1)[1].split("## Figures", 1)[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in section.splitlines() if line.startswith("| ")]
    return [r for r in rows[1:] if len(r) == 11]  # rows[0] is the header


def run_compare(repo, a, b):
    return sh(str(BIN / "diffrepro"), "compare", a, b, "--out-dir", "reports/compare", cwd=repo, check=False)


def test_compare_two_revisions(versions):
    out = run_compare(versions, "v1", "v2")
    assert out.returncode == 0, out.stderr
    html = (versions / "reports/compare/v1_vs_v2.html").read_text()
    md = (versions / "reports/compare/v1_vs_v2.md").read_text()
    # exactly the changed param
    assert re.findall(r"<code>([^<]+)</code></td><td", html) == ["sampling.ddpm_shift"]
    assert "| params.yaml | `sampling.ddpm_shift` | 0.0 | 0.5 |" in md.replace("| 0 |", "| 0.0 |")
    # deltas: ddpm rows that carry the shift are worse by exactly 0.5, every ddim row is unchanged
    rows = delta_rows(md)
    assert rows
    for dataset, model, sampler, grid, nfe, metric, old, new, delta, rel, direction in rows:
        if sampler == "ddim" or metric in ("wall_s", "kid_digits_classifier", "mmd", "energy"):
            assert direction == "same" and float(delta) == 0.0, (sampler, metric)
        else:
            assert "worse" in direction and float(delta) == pytest.approx(0.5), (sampler, metric)
    assert 'class="worse"' in html and 'class="same"' in html
    assert re.search(r'<img src="data:image/png;base64,', html)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all((versions / "reports/compare" / link).exists() for link in links)
    assert (versions / "reports/compare/v1_vs_v2_dvc_plots/index.html").exists()
    assert "[dvc plots diff](v1_vs_v2_dvc_plots/index.html)" in md


def test_deltas_added_and_removed():
    def agg(nfes, value):
        return pl.DataFrame({"dataset": "d", "model": "m", "sampler": "s", "grid": "g", "nfe": nfes,
                             "n_seeds": 1, "swd_mean": [value] * len(nfes), "swd_std": [None] * len(nfes)})
    d = compare.deltas(agg([4, 8], 1.0), agg([8, 10], 0.5))
    assert d.select("nfe", "direction").rows() == [(4, "removed"), (8, "better"), (10, "added")]
    assert d.filter(pl.col("nfe") == 8)["relative"][0] == pytest.approx(-0.5)


@pytest.mark.slow  # `dvc exp run` re-runs the stage: ~15 s on a loaded 2-core machine
def test_dvc_experiment_name(versions):
    sh("dvc", "exp", "run", "-q", "-n", "shift-small", "-S", "params.yaml:sampling.ddpm_shift=0.25", cwd=versions)
    out = run_compare(versions, "v1", "shift-small")
    assert out.returncode == 0, out.stderr
    md = (versions / "reports/compare/v1_vs_shift-small.md").read_text()
    assert "`sampling.ddpm_shift` | 0.0 | 0.25 |" in md.replace("| 0 |", "| 0.0 |")


def test_unknown_revision_and_missing_metrics(versions):
    out = run_compare(versions, "v1", "no-such-rev")
    assert out.returncode == 2 and "unknown revision 'no-such-rev'" in out.stderr
    out = run_compare(versions, "empty", "v1")
    assert out.returncode == 2 and "revision 'empty'" in out.stderr and "results/metrics.json" in out.stderr


def test_incompatible_schema_version(versions, tmp_path):
    summary = versions / "results" / "metrics.json"
    data = json.loads(summary.read_text())
    summary.write_text(json.dumps({**data, "schema_version": 0}))
    try:
        out = run_compare(versions, "v1", "workspace")
    finally:
        summary.write_text(json.dumps(data))
    assert out.returncode == 2 and "revision 'workspace'" in out.stderr and "schema version 0" in out.stderr

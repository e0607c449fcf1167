"""Versioned results with DVC: repro → change one sampling param → repro reruns only downstream; metrics and params
diffs show exactly that change; push → fresh clone → `make pull` → Snakemake has nothing to do."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_env

pytestmark = pytest.mark.slow
VENV_STAMP = Path(sys.executable).parent.parent / ".diffrepro-installed"


def sh(cwd, *args, check=True, timeout=900):
    r = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=run_env(), timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}")
    return r


def dvc(cwd, *args, **kw):
    return sh(cwd, sys.executable, "-m", "dvc", *args, **kw)


def set_ddim_eta(repo: Path, eta: float) -> None:
    import yaml

    path = repo / "params/smoke.yaml"  # the file params/run.yaml selects in the smoke workspace
    cfg = yaml.safe_load(path.read_text())
    cfg["sampling"].setdefault("sampler_options", {}).setdefault("ddim", {})["eta"] = eta
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def versions(tmp_path_factory, smoke_workspace):
    """Two committed versions (tags v1, v2) of the smoke pipeline that differ only in DDIM's η; pushed to a remote.
    v1 is the session's smoke run (dvc repro, tagged v1), copied so that other tests keep their own."""
    base = tmp_path_factory.mktemp("versions")
    repo = base / "origin"
    shutil.copytree(smoke_workspace, repo, symlinks=True)
    dvc(repo, "remote", "modify", "--local", "local", "url", str(base / "remote"))
    set_ddim_eta(repo, 0.5)
    sh(repo, "git", "commit", "-qam", "ddim eta 0.5")
    runs = {"v2": dvc(repo, "repro")}
    sh(repo, "git", "add", "-A"); sh(repo, "git", "commit", "-qm", "v2 results"); sh(repo, "git", "tag", "v2")
    dvc(repo, "push")
    return {"repo": repo, "base": base, "runs": runs}


def test_param_change_reruns_only_downstream(versions):
    out = versions["runs"]["v2"].stdout
    assert "Stage 'train' didn't change, skipping" in out, out[-3000:]
    assert "Running stage 'sweep'" in out


def test_params_diff_names_exactly_the_change(versions):
    diff = json.loads(dvc(versions["repo"], "params", "diff", "v1", "v2", "--json").stdout)
    changed = {k for per_file in diff.values() for k in per_file}
    assert changed == {"sampling.sampler_options.ddim.eta"}, changed


def test_metrics_diff_shows_the_change(versions):
    diff = json.loads(dvc(versions["repo"], "metrics", "diff", "v1", "v2", "--json", "--all").stdout)
    # wall_s is a measurement of this machine, not a result: it differs between any two runs
    cells = {k: v for k, v in next(iter(diff.values())).items() if not k.endswith("/wall_s")}
    ddim = {k: v for k, v in cells.items() if "/ddim/" in k}
    ddpm = {k: v for k, v in cells.items() if "/ddpm/" in k}
    assert ddim and ddpm
    assert any(abs(v.get("diff") or 0) > 0 for v in ddim.values()), ddim
    assert all((v.get("diff") or 0) == 0 for v in ddpm.values()), ddpm


def test_push_clone_pull_leaves_nothing_to_rerun(versions):
    clone = versions["base"] / "clone"
    sh(versions["base"], "git", "clone", "-q", str(versions["repo"]), str(clone))
    dvc(clone, "remote", "modify", "--local", "local", "url", str(versions["base"] / "remote"))
    venv = Path(sys.executable).parent.parent
    sh(clone, "make", "pull", f"VENV={venv}", "-o", str(VENV_STAMP))
    r = sh(clone, sys.executable, "-m", "snakemake", "--cores", "1", "-n")
    out = r.stdout + r.stderr
    reasons = sorted({line.strip() for line in out.splitlines() if line.strip().startswith("reason:")})
    assert "Nothing to be done" in out, "\n".join(reasons)[:4000]
    assert "Data and pipelines are up to date" in dvc(clone, "status").stdout


def test_compare_shows_exactly_the_change(versions):
    """Issue 7 acceptance: compare shows exactly the changed param, non-zero deltas for the affected rows (DDIM, whose
    η changed) and zero for the others (wall time excepted: it is a measurement, not a result)."""
    import re

    from test_compare import delta_rows, run_compare

    repo = versions["repo"]
    out = run_compare(repo, "v1", "v2")
    assert out.returncode == 0, out.stderr
    md = (repo / "reports/compare/v1_vs_v2.md").read_text()
    changed = re.findall(r"^\| params/smoke.yaml \| `([^`]+)` \|", md, flags=re.M)
    assert changed == ["sampling.sampler_options.ddim.eta"], changed
    rows = delta_rows(md)
    assert {r[2] for r in rows} >= {"ddim", "ddpm"}
    for dataset, model, sampler, grid, nfe, metric, old, new, delta, rel, direction in rows:
        if metric == "wall_s":
            continue
        if sampler == "ddim":
            assert direction != "same" and float(delta) != 0.0, (model, sampler, nfe, metric)
        else:
            assert direction == "same" and float(delta) == 0.0, (model, sampler, nfe, metric)

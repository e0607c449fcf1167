"""The SLURM profile on a real single-node SLURM (munge, MariaDB, slurmdbd, slurmctld, slurmd on loopback, one fake
GPU), started and stopped by tests/slurm/harness.sh. Every job must go through sbatch, the results must equal a local
run with the same seed, and a failing job must be reported rather than hang. Needs root and apt (Debian)."""
import os
import re
import shutil
import subprocess
import sys

import polars as pl
import pytest
import yaml

from conftest import ROOT, copy_worktree, run_env

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
HARNESS = ROOT / "tests/slurm/harness.sh"
DETERMINISTIC = ["dataset", "model", "sampler", "grid", "nfe", "seed"]


def _can_run_slurm() -> str | None:
    if os.geteuid() != 0:
        return "needs root to install and start SLURM daemons"
    if not shutil.which("apt-get") and not shutil.which("slurmctld"):
        return "needs apt-get (Debian) or an installed SLURM"
    return None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = _can_run_slurm()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-state")
    try:
        up = subprocess.run(["bash", str(HARNESS), "up", str(state)], capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, f"SLURM did not start:\n{up.stdout}\n{up.stderr}"
        yield state
    finally:  # stop exactly the daemons the harness started, by PID, even when the test failed
        subprocess.run(["bash", str(HARNESS), "down", str(state)], capture_output=True, text=True, timeout=120)


def _test_profile(tmp_path):
    """A test copy of the profile: same settings, resources shrunk to a 2-CPU node, fast status checks."""
    profile = yaml.safe_load((ROOT / "workflow/profiles/slurm/config.yaml").read_text())
    profile["slurm-init-seconds-before-status-checks"] = 2
    profile["latency-wait"] = 5
    profile["retries"] = 0
    profile["set-threads"] = {k: 1 for k in profile["set-threads"]}
    for res in profile["set-resources"].values():
        res.update(cpus_per_gpu=1, mem_mb=1500, runtime=15)
    profile["default-resources"].update(mem_mb=1500, runtime=15)
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(profile))
    return out


def _slurm_env():
    env = run_env()
    env.update(SLURM_PARTITION="debug")  # no account: the plugin falls back to the user's default
    return env


def _snakemake(cwd, profile, *args, timeout):
    # `timeout -k`: a hung Snakemake ignores SIGTERM (slurm_local.md, "everything that failed" 10)
    cmd = ["timeout", "-k", "20", str(timeout), sys.executable, "-m", "snakemake", "--profile", str(profile), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=_slurm_env(), timeout=timeout + 60)


def test_smoke_pipeline_through_slurm_equals_local_run(tmp_path, slurm_cluster, smoke_workspace):
    ws = copy_worktree(ROOT, tmp_path / "repo")
    profile = _test_profile(tmp_path)
    # Up to the metrics table (prepare, train, classifier, reference stats, sample, evaluate, NI sweep variants,
    # aggregate): the comparison with the local run is on that table.
    r = _snakemake(ws, profile, "stage_sweep", "--configfile", "params/smoke.yaml", timeout=900)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    job_ids = set(re.findall(r"SLURM jobid (\d+)", log))
    assert job_ids, "no job was submitted through sbatch:\n" + log[-4000:]
    acct = subprocess.run(["sacct", "-X", "--noheader", "--parsable2", "--format=JobIDRaw,State", "--starttime",
                           "now-2hours"], capture_output=True, text=True, timeout=60).stdout
    states = dict(line.split("|", 1) for line in acct.splitlines() if "|" in line)
    missing = [j for j in job_ids if j not in states]
    assert not missing, f"jobs not in sacct: {missing}"
    assert all(states[j] == "COMPLETED" for j in job_ids), {j: states[j] for j in job_ids}
    # Every job that is not a local rule was submitted: one SLURM job id per submission, no job run locally.
    submitted = len(re.findall(r"has been submitted with SLURM jobid", log))
    assert submitted == len(job_ids)
    local_runs = set(re.findall(r"^localrule (\w+):", log, re.M))
    assert "aggregate" in local_runs  # cheap steps stay on the submitting host
    assert local_runs <= {"all", "aggregate", "report", "stage_train", "stage_sweep", "stage_studies"}, local_runs
    ours = pl.read_parquet(ws / "results/tables/metrics.parquet")
    local = pl.read_parquet(smoke_workspace / "results/tables/metrics.parquet")
    value_cols = [c for c in local.columns if c not in DETERMINISTIC and c not in ("wall_s",)
                  and local.schema[c].is_numeric()]
    a = ours.sort(DETERMINISTIC).select(DETERMINISTIC + value_cols)
    b = local.sort(DETERMINISTIC).select(DETERMINISTIC + value_cols)
    assert a.equals(b), f"SLURM run differs from the local run:\n{a}\n{b}"


def test_failing_job_is_reported_not_hung(tmp_path, slurm_cluster):
    work = tmp_path / "fail"
    work.mkdir()
    shutil.copy(ROOT / "tests/slurm/failing.smk", work / "Snakefile")
    profile = _test_profile(tmp_path)
    r = _snakemake(work, profile, timeout=240)
    assert r.returncode not in (0, 124, 137), "expected a reported failure, got " + str(r.returncode)
    assert re.search(r"SLURM.job.*failed|Error in rule fail", r.stdout + r.stderr), (r.stdout + r.stderr)[-3000:]

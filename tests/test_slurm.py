"""The SLURM profile on a real single-node SLURM (munge, MariaDB, slurmdbd, slurmctld, slurmd on loopback, one fake
GPU), started and stopped by tests/slurm/harness.sh. Every job must go through sbatch, the results must equal a local
run with the same seed, and a failing job must be reported rather than hang. Needs root and apt (Debian)."""
import os
import re
import shutil
import subprocess
import sys

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


# A slice of the smoke DAG with every kind of cluster job of the sweep (prepare, train, reference statistics,
# reference solution, sample, evaluate): the toy2d model's metrics for both smoke samplers.
SLURM_TARGETS = ["results/metrics/toy2d/ddim.json", "results/metrics/toy2d/ddpm.json"]


def _metric_rows(ws):
    import json

    rows = [r for t in SLURM_TARGETS for r in json.loads((ws / t).read_text())]
    return sorted(({k: v for k, v in r.items() if k != "wall_s"} for r in rows),
                  key=lambda r: tuple(str(r[k]) for k in DETERMINISTIC))


def test_smoke_slice_through_slurm_equals_local_run(tmp_path, slurm_cluster):
    ws = copy_worktree(ROOT, tmp_path / "repo")
    local = copy_worktree(ROOT, tmp_path / "local")
    profile = _test_profile(tmp_path)
    r = _snakemake(ws, profile, *SLURM_TARGETS, "--configfile", "params/smoke.yaml", timeout=600)
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
    # Every job of the slice went through sbatch: one SLURM job id per submission, none run on the submitting host.
    submitted = len(re.findall(r"has been submitted with SLURM jobid", log))
    assert submitted == len(job_ids)
    assert not re.findall(r"^localrule (\w+):", log, re.M), log[-4000:]
    for rule in ("prepare", "train", "reference_stats", "reference", "sample", "evaluate"):
        assert re.search(rf"^\s*rule {rule}:", log, re.M), f"no {rule} job in the SLURM run"  # indented: grouped
    # The same slice on the local profile gives the same numbers (same seeds, one thread per job on both).
    r_local = subprocess.run([sys.executable, "-m", "snakemake", "--profile", str(ROOT / "workflow/profiles/local"),
                              "--cores", "2", *SLURM_TARGETS, "--configfile", "params/smoke.yaml"], cwd=local,
                             capture_output=True, text=True, env=run_env(), timeout=600)
    assert r_local.returncode == 0, (r_local.stdout + r_local.stderr)[-4000:]
    assert _metric_rows(ws) == _metric_rows(local), "SLURM run differs from the local run"


def test_failing_job_is_reported_not_hung(tmp_path, slurm_cluster):
    work = tmp_path / "fail"
    work.mkdir()
    shutil.copy(ROOT / "tests/slurm/failing.smk", work / "Snakefile")
    profile = _test_profile(tmp_path)
    r = _snakemake(work, profile, timeout=240)
    assert r.returncode not in (0, 124, 137), "expected a reported failure, got " + str(r.returncode)
    assert re.search(r"SLURM.job.*failed|Error in rule fail", r.stdout + r.stderr), (r.stdout + r.stderr)[-3000:]

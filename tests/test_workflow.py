"""Workflow-level checks: the schema rejects bad params (CLI and Snakemake alike), the DAG dry-runs, lint is clean."""
import subprocess
import sys

import pytest
import yaml

from conftest import run_env

PARAM_FILES = ["params/smoke.yaml", "params/default.yaml", "params/medium.yaml", "params/paper.yaml", "params/real.yaml",
               "params/real_smoke.yaml"]


def smk(repo_root, *args, timeout=300):
    return subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=repo_root, capture_output=True, text=True,
                          env=run_env(), timeout=timeout)


def cli(repo_root, *args):
    return subprocess.run([sys.executable, "-m", "diffrepro", *args], cwd=repo_root, capture_output=True, text=True,
                          env=run_env(), timeout=60)


@pytest.mark.parametrize("params", PARAM_FILES)
def test_params_files_validate(repo_root, params):
    if not (repo_root / params).exists():
        pytest.fail(f"{params} is missing")
    r = cli(repo_root, "validate", "--params", params, "--quiet")
    assert r.returncode == 0, r.stderr


BAD = [
    ({"sampling": {"nfe": "ten"}}, "sampling.nfe"),                  # wrong type
    ({"sampling": {"n_samples": 1}}, "sampling.n_samples"),          # out of range
    ({"sampling": {"bogus_key": 1}}, "bogus_key"),                   # unknown key
    ({"datasets": {"toy2d": {"kind": "imagenet"}}}, "datasets.toy2d.kind"),  # unknown dataset kind
    ({"seed": -3}, "seed"),
]


@pytest.mark.parametrize("override,needle", BAD)
def test_cli_rejects_bad_params(repo_root, tmp_path, override, needle):
    from diffrepro.config import deep_update

    cfg = deep_update(yaml.safe_load((repo_root / "params/smoke.yaml").read_text()), override)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = cli(repo_root, "validate", "--params", str(bad), "--quiet")
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_cli_rejects_dangling_model_reference(repo_root, tmp_path):
    cfg = yaml.safe_load((repo_root / "params/smoke.yaml").read_text())
    cfg["sampling"]["models"] = ["nonexistent"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = cli(repo_root, "validate", "--params", str(bad))
    assert r.returncode == 2 and "sampling.models[0]" in r.stderr and "nonexistent" in r.stderr


def test_snakemake_rejects_bad_params(repo_root, tmp_path):
    cfg = yaml.safe_load((repo_root / "params/smoke.yaml").read_text())
    cfg["sampling"]["nfe"] = ["ten"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = smk(repo_root, "-n", "--configfile", str(bad), "--cores", "1")
    assert r.returncode != 0
    assert "ten" in (r.stderr + r.stdout)


def test_unknown_command_is_an_error(repo_root):
    r = cli(repo_root, "frobnicate")
    assert r.returncode == 2 and "unknown command" in r.stderr


@pytest.mark.parametrize("params", PARAM_FILES)
def test_full_dag_dry_run(repo_root, params):
    r = smk(repo_root, "-n", "--forceall", "--configfile", params, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout + r.stderr
    for rule in ["prepare", "train", "sample", "evaluate", "aggregate", "report"]:
        assert f"rule {rule}:" in out or f"\n{rule} " in out or f" {rule}\n" in out, f"rule {rule} not in DAG"


def test_lint_clean(repo_root):
    r = smk(repo_root, "--lint", "--configfile", "params/smoke.yaml")
    # Snakemake exits 1 when it has lints; conda/container suggestions are not applicable (pip-only project).
    text = r.stdout + r.stderr
    lints = [line for line in text.splitlines() if line.strip().startswith("*")]
    significant = [l for l in lints if "conda" not in l.lower() and "container" not in l.lower()
                   and "software environment" not in l.lower()]
    assert not significant, text[-4000:]


@pytest.mark.parametrize("flag,gpu,gres", [("gpus", "gpu=1", "gres=,"), ("gres", "gpu=0", "gres=gpu:1")])
def test_slurm_profile_lists_full_scale_dag(repo_root, flag, gpu, gres):
    """The cluster profile dry-runs the full-scale DAG; GPU rules ask for --gpus or --gres (never both), per setting."""
    import re

    env = run_env() | {"DIFFREPRO_GPU_FLAG": flag, "SLURM_ACCOUNT": "acct", "SLURM_PARTITION": "gpu"}
    r = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "workflow/profiles/slurm", "--configfile",
                        "params/paper.yaml", "-n"], cwd=repo_root, capture_output=True, text=True, env=env, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    total = int(re.search(r"^total\s+(\d+)", out, re.M).group(1))
    assert total > 150, total
    train = re.search(r"^rule train:.*?resources: ([^\n]+)", out, re.M | re.S).group(1)
    assert gpu in train and gres in train + ",", train
    assert "slurm_account=acct" in train and "slurm_partition=gpu" in train and "runtime=1440" in train

"""Workflow-level checks: the schema rejects bad params (CLI and Snakemake alike), the DAG dry-runs, lint is clean."""
import subprocess
import sys
from pathlib import Path

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
    ({"models": {"x": {"dataset": "toy2d", "source": {"kind": "edm"}}}}, "models.x.source"),  # edm needs a path
    ({"ni": {"files": {"matrices": {"bad name!": "x.npz"}}}}, "ni.files.matrices"),        # not a file-name wildcard
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
        names = (rule, f"{rule}_model")  # sampling.jobs: per_model runs one sample / evaluate job per model
        assert any(f"rule {n}:" in out or f"\n{n} " in out or f" {n}\n" in out for n in names), \
            f"rule {rule} not in DAG"
    if params == "params/paper.yaml":
        check_published_networks_dag(repo_root / params, out)


def jobs(out: str, rule: str) -> list[dict]:
    """Wildcards of every `rule` job in a dry-run listing."""
    import re

    found = re.findall(rf"^rule {rule}:\n(?:    .*\n)*?    wildcards: (.*)$", out, re.M)
    return [dict(kv.split("=", 1) for kv in w.split(", ")) for w in found]


def check_published_networks_dag(params, out: str):
    """params/paper.yaml: the published CIFAR-10 networks are swept (GEO NFE 3-10, NI 5/10/15 + the stored NI
    matrices as ni_file variants) and scored like any sampler, and never trained."""

    cfg = yaml.safe_load(params.read_text())
    imported = {m for m, spec in cfg["models"].items() if spec.get("source", {}).get("kind") in ("edm", "diffusers")}
    assert {"edm_cifar10_vp", "baseline_cifar10_vp"} <= imported
    sampled = {(j["model"], j["sampler"]) for j in jobs(out, "sample")}
    assert {("edm_cifar10_vp", s) for s in ("euler", "ipndm", "dpmpp3m")} <= sampled
    assert {("baseline_cifar10_vp", s) for s in ("ddim", "dpmpp2m", "deis")} <= sampled
    files = cfg["ni"]["files"]["matrices"]
    assert {(j["model"], j["name"]) for j in jobs(out, "ni_file")} == {("baseline_cifar10_vp", n) for n in files}
    scored = {(j["model"], j["sampler"]) for j in jobs(out, "evaluate")}
    assert {("baseline_cifar10_vp", f"ni_file_{n}") for n in files} <= scored
    assert "cifar10" not in {j["model"] for j in jobs(out, "train")}  # the old trained CIFAR-10 UNet is gone
    # the cells each published network is swept on (sampling.per_model): GEO NFE 3-10 on the recommended grid and
    # GITS; NI 5/10/15 steps on the time-quadratic grid 1 -> 1e-3
    from diffrepro import config
    from diffrepro.samplers.sweep import model_sampling
    from diffrepro.samplers.plan import plan

    full = config.load(params)
    geo = {(c["grid"], c["nfe"]) for c in plan(model_sampling(full, "edm_cifar10_vp"), "ipndm")[0]}
    assert geo == {(g, n) for g in ("edm", "gits") for n in range(3, 11)}
    ni = {(c["grid"], c["nfe"]) for c in plan(model_sampling(full, "baseline_cifar10_vp"), "deis")[0]}
    assert {("quadratic_t", n) for n in (5, 10, 15)} <= ni
    assert imported <= {j["model"] for j in jobs(out, "import_model")}
    trained = {j["model"] for j in jobs(out, "train")}
    assert not trained & imported, f"published networks scheduled for training: {sorted(trained & imported)}"


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


def test_per_model_jobs_make_the_same_files(repo_root, tmp_path):
    """sampling.jobs: per_model (params/default.yaml) plans the same sample and metric files as per_sampler, in one
    sample and one evaluate job per model instead of one per (model, sampler)."""
    import csv
    import io

    cfg = yaml.safe_load((repo_root / "params/default.yaml").read_text())
    assert cfg["sampling"]["jobs"] == "per_model"
    outputs = {}
    for mode in ("per_model", "per_sampler"):
        cfg["sampling"]["jobs"] = mode
        path = tmp_path / f"{mode}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        r = smk(repo_root, "--detailed-summary", "--nolock", "--configfile", str(path), "--cores", "1")
        assert r.returncode == 0, r.stderr[-3000:]
        rows = list(csv.DictReader(io.StringIO(r.stdout), delimiter="\t"))
        outputs[mode] = {(row["output_file"], row["rule"].replace("_model", "")) for row in rows
                         if row["output_file"].startswith(("results/samples/", "results/metrics/"))}
        rules = {row["rule"] for row in rows}
        assert ({"sample_model", "evaluate_model"} <= rules) == (mode == "per_model")
        # per model, only the coefficient-matrix samplers (which wait for their fitted matrices) keep their own job
        own_jobs = {Path(row["output_file"]).stem for row in rows if row["rule"] == "sample"}
        assert (own_jobs == {"ni_tuned", "ni_sharp"}) == (mode == "per_model")
    assert outputs["per_model"] == outputs["per_sampler"] and len(outputs["per_model"]) > 70


def test_validate_refuses_an_afs_value_that_is_not_true_false_or_auto(repo_root, tmp_path):
    cfg = yaml.safe_load((repo_root / "params/smoke.yaml").read_text())
    cfg["sampling"]["sampler_options"] = {"ddim": {"afs": "sometimes"}}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    r = cli(repo_root, "validate", "--params", str(bad))
    assert r.returncode == 2 and "sampling.sampler_options.ddim.afs" in r.stderr and "sometimes" in r.stderr
    cfg["sampling"]["sampler_options"] = {"ddim": {"afs": "auto"}}
    bad.write_text(yaml.safe_dump(cfg))
    assert cli(repo_root, "validate", "--params", str(bad)).returncode == 0

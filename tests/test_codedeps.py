"""Code dependencies are derived, not hand-kept: each rule's params hold the hash of the code its CLI step can import
(diffrepro.codedeps), DVC stages depend on the whole library, and a change reruns exactly the jobs that run it."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_env
from diffrepro import codedeps


def test_closure_follows_imports_and_no_further():
    train = codedeps.module_closure("diffrepro.steps.train")
    assert {"diffrepro.training.loop", "diffrepro.models.unet", "diffrepro.config", "diffrepro.runtime"} <= set(train)
    assert not [m for m in train if m.startswith(("diffrepro.samplers", "diffrepro.reports", "diffrepro.metrics"))]
    evaluate = codedeps.module_closure("diffrepro.steps.evaluate")
    assert "diffrepro.metrics.fidelity" in evaluate and "diffrepro.samplers.solvers" not in evaluate
    # importing a.b.c runs a/__init__ and a/b/__init__ too: prepare imports diffrepro.data, and so its __init__
    assert "diffrepro.data" in codedeps.module_closure("diffrepro.steps.prepare")


def test_report_hash_covers_its_templates_and_paper_numbers():
    files = {p.name for p in codedeps._data_files(codedeps.module_closure("diffrepro.steps.report"))}
    assert {"report.html.j2", "report.md.j2", "paper_numbers.yaml"} <= files


def test_unknown_module_is_an_error():
    with pytest.raises(ValueError, match="not a module"):
        codedeps.module_closure("diffrepro.steps.no_such_step")


def _hash_in_copy(src: Path, step: str) -> str:
    env = {**run_env(), "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", f"from diffrepro.codedeps import code_hash; "
                           f"print(code_hash('diffrepro.steps.{step}'))"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_hash_ignores_comments_and_docstrings_but_not_code(repo_root, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(repo_root / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    grids = src / "diffrepro/samplers/grids.py"
    before = _hash_in_copy(src, "sample"), _hash_in_copy(src, "evaluate")
    text = grids.read_text()
    grids.write_text(text.replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
    assert (_hash_in_copy(src, "sample"), _hash_in_copy(src, "evaluate")) == before
    grids.write_text(text + "\n_PROBE = 1\n")
    assert _hash_in_copy(src, "sample") != before[0]
    assert _hash_in_copy(src, "evaluate") == before[1]  # evaluation never imports the samplers


# (file changed, jobs that must rerun, jobs that must not); a job downstream of a rerun job reruns too (new inputs)
CHANGES = [
    ("training/loop.py", {"train", "sample"}, {"prepare"}),
    ("config.py", {"prepare", "train", "sample", "evaluate", "report"}, set()),
    ("runtime.py", {"train", "sample", "evaluate"}, {"prepare"}),
    ("metrics/fidelity.py", {"evaluate", "reference_stats"}, {"prepare", "train", "sample"}),
]


@pytest.mark.slow
@pytest.mark.parametrize("rel,rerun,kept", CHANGES, ids=[c[0] for c in CHANGES])
def test_code_change_marks_stages_and_reruns_dependent_jobs(smoke_workspace, tmp_path, rel, rerun, kept):
    ws = tmp_path / "ws"
    shutil.copytree(smoke_workspace, ws, symlinks=True)
    env = {**run_env(), "PYTHONPATH": str(ws / "src")}  # the copy's code, not the checkout's
    with (ws / "src/diffrepro" / rel).open("a") as fh:
        fh.write("\n_CODE_PROBE = 1\n")
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=ws, env=env, capture_output=True, text=True,
                            timeout=300)
    assert status.returncode == 0, status.stderr
    for stage in ("train", "sweep", "studies", "report"):
        assert re.search(rf"^{stage}:\n\s+changed deps:\n(?:\s+.*\n)*?\s+modified:\s+src/diffrepro",
                         status.stdout, flags=re.M), (stage, status.stdout[-3000:])
    dry = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-n"], cwd=ws, env=env,
                         capture_output=True, text=True, timeout=600)
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = set(re.findall(r"^rule (\w+):", dry.stdout, flags=re.M))
    assert rerun <= jobs, (rel, sorted(jobs))
    assert not (kept & jobs), (rel, sorted(jobs & kept))


def test_every_rule_that_calls_the_cli_carries_its_steps_code_hash(repo_root):
    """No rule escapes: each `{params.cli} <command>` rule has `code=step_code("<that command's step module>")`."""
    from diffrepro.cli import COMMANDS

    checked = 0
    for path in sorted((repo_root / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", path.read_text()):
            call = re.search(r"\{params\.cli\} ([a-z-]+(?: [a-z-]+)?)", block)
            if not call:
                continue
            words = call.group(1)
            command = words if words in COMMANDS else words.split()[0]
            step = COMMANDS[command].rsplit(".", 1)[1]
            name = re.search(r"rule (\w+):", block).group(1)
            assert f'code=step_code("{step}")' in block, f"{path.name}: rule {name} lacks code=step_code(\"{step}\")"
            checked += 1
    assert checked >= 15

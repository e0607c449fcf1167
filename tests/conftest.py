import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# Files whose tests continue from the shared smoke workspace: one work unit, so one worker builds that workspace and
# runs them while the other worker takes other files.
SMOKE_CHAIN_FILES = {"tests/test_codedeps.py", "tests/test_e2e.py", "tests/test_versioning.py"}


# The longest files, started first so that neither worker is left with a long one at the end (collection order is the
# order in which xdist hands out work units; the order of the tests inside a file is kept).
LONGEST_FIRST = ["tests/test_codedeps.py", "tests/test_realdata.py", "tests/test_slurm.py", "tests/test_fid_protocol.py",
                 "tests/test_training.py", "tests/test_reliability.py", "tests/test_compare.py"]


def pytest_collection_modifyitems(config, items):
    rank = {f: i for i, f in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_xdist_make_scheduler(config, log):
    """`make test` runs `pytest -n 2 --dist loadfile`: the tests of a file stay on one worker (module fixtures are
    built once) and the smoke-chain files form one unit."""
    from xdist.scheduler import LoadFileScheduling

    class SmokeChainAsOneUnit(LoadFileScheduling):
        def _split_scope(self, nodeid):
            scope = super()._split_scope(nodeid)
            return "smoke-chain" if scope in SMOKE_CHAIN_FILES else scope

    return SmokeChainAsOneUnit(config, log)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """In-process tests use small problems: one torch/BLAS thread avoids oversubscription stalls on a 2-core box
    (subprocesses choose their own threads)."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


def run_env() -> dict:
    """Environment for subprocesses: the venv's bin first on PATH, no inherited Snakemake profile."""
    env = dict(os.environ)
    env["PATH"] = str(Path(PY).parent) + os.pathsep + env.get("PATH", "")
    env.pop("SNAKEMAKE_PROFILE", None)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def copy_worktree(src: Path, dest: Path) -> Path:
    """Copy the checkout's tracked + untracked-but-not-ignored files (what a fresh clone would hold) to `dest`."""
    import shutil
    import subprocess

    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        s = src / rel
        if s.is_file():
            d = dest / rel
            d.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(s, d)
    return dest


def git_init_commit(path: Path, message: str = "snapshot") -> None:
    import subprocess

    def git(*a):
        subprocess.run(["git", *a], cwd=path, check=True, capture_output=True)
    git("init", "-q", "-b", "main")
    git("config", "user.email", "tests@diffrepro.invalid")
    git("config", "user.name", "diffrepro tests")
    git("add", "-A")
    git("commit", "-qm", message)


def run_snakemake(workdir: Path, *args, timeout: int = 900):
    import subprocess

    return subprocess.run([PY, "-m", "snakemake", "--cores", "2", *args], cwd=workdir, capture_output=True, text=True,
                          env=run_env(), timeout=timeout)


def select_params(repo: Path, params_file: str) -> None:
    """Point params/run.yaml (what dvc repro runs and versions) at `params_file`, as `make reproduce PARAMS=` does."""
    import re

    path = repo / "params/run.yaml"
    path.write_text(re.sub(r"(?m)^params_file: .*$", f"params_file: {params_file}", path.read_text()))


def _run_shared_dir(tmp_path_factory) -> Path:
    """A folder shared by every worker of this pytest run (`make test` runs `pytest -n 2 --dist loadfile`: the tests
    of one file stay on one worker, files are spread over the workers); the run's own base folder without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def smoke_read_traces(ws: Path) -> Path:
    """The folder where the smoke build's jobs record their reads (beside the workspace, not in it)."""
    return ws.parent / "read-trace"


@pytest.fixture(scope="session")
def smoke_workspace(tmp_path_factory) -> Path:
    """The whole chain on params/smoke.yaml, once per test run, the way `make reproduce` runs it: `dvc repro`
    (DVC stages calling real Snakemake) in a git copy of the checkout whose params/run.yaml selects params/smoke.yaml.
    Committed and tagged `v1`, so the versioning tests continue from it (in copies: it is read-only for tests).
    Built by whichever worker asks first, under a file lock; the others wait for it and reuse it."""
    import fcntl
    import subprocess

    shared = _run_shared_dir(tmp_path_factory) / "smoke-shared"
    shared.mkdir(exist_ok=True)
    ws, done, failed = shared / "repo", shared / "built", shared / "failed.txt"
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(failed.read_text())
        if not done.exists():
            try:
                copy_worktree(ROOT, ws)
                select_params(ws, "params/smoke.yaml")
                git_init_commit(ws, "v1 params (smoke)")
                # every job records what it reads (diffrepro.readtrace): test_e2e checks it against the rules
                env = {**run_env(), "DIFFREPRO_READ_TRACE": str(smoke_read_traces(ws))}
                r = subprocess.run([PY, "-m", "dvc", "repro"], cwd=ws, capture_output=True, text=True, env=env,
                                   timeout=1200)
                if r.returncode != 0:
                    raise RuntimeError("smoke pipeline (dvc repro) failed:\n" + r.stdout[-6000:] + r.stderr[-6000:])
                (ws / "dvc-repro-v1.log").write_text(r.stdout)
                for args in (["add", "-A"], ["commit", "-qm", "v1 results"], ["tag", "v1"]):
                    subprocess.run(["git", *args], cwd=ws, check=True, capture_output=True)
            except Exception as exc:  # the other worker must not rebuild over a half-built workspace
                failed.write_text(f"smoke workspace not built: {exc}")
                pytest.fail(failed.read_text())
            done.touch()
    return ws

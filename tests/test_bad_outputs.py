"""An unwritable output folder is a clear error naming it (exit 2), for the steps that create folders."""
import subprocess
import sys

import pytest

from conftest import run_env

# /proc refuses new entries even for root; a path below a regular file is not a folder at all.
@pytest.mark.parametrize("make_target", [lambda tmp: "/proc/diffrepro-out", lambda tmp: str(tmp / "afile" / "sub")])
def test_prepare_into_unwritable_folder(repo_root, tmp_path, make_target):
    (tmp_path / "afile").write_text("not a folder")
    target = make_target(tmp_path)
    r = subprocess.run([sys.executable, "-m", "diffrepro", "prepare", "--params", "params/smoke.yaml",
                        "--dataset", "toy2d", "--out-dir", target], cwd=repo_root, capture_output=True, text=True,
                       env=run_env(), timeout=120)
    assert r.returncode == 2, r.stderr
    assert target in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from diffrepro import io

    def boom(path):
        path.write_text("partial")
        raise RuntimeError("writer failed")

    with pytest.raises(RuntimeError):
        io.write_with(tmp_path / "out.npz", boom)
    assert list(tmp_path.iterdir()) == []

"""pyproject.toml is the single source of dependencies; environment.yml must stay a thin shim that installs it."""
import tomllib

import yaml


def test_environment_yml_agrees_with_pyproject(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((repo_root / "environment.yml").read_text())
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert python == ["python=3.11"], python
    assert project["requires-python"] == ">=3.11"
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    extras = sorted(project["optional-dependencies"])
    assert f"-e .[{','.join(extras)}]" in pip, (pip, extras)
    # The only pins beside the project itself are the torch pair the Makefile installs.
    others = [p for p in pip if not p.startswith("-e ")]
    assert others == ["torch==2.14.1", "torchvision==0.29.1"], others
    names = {d.split("=")[0].split(">")[0].split("<")[0] for d in project["dependencies"]}
    assert {"torch", "torchvision"} <= names


def test_makefile_installs_the_same_torch_pin(repo_root):
    make = (repo_root / "Makefile").read_text()
    assert "torch==2.14.1 torchvision==0.29.1" in make


def test_snakemake_pin(repo_root):
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    assert "snakemake>=9.19,<10" in project["dependencies"]

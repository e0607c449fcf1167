"""`ni_file`: stored NI matrices in the paper repository's `.npz` layout replayed on a model (NI §5.4, spec claim 12).

Fixtures have the keys and shapes of NaturalDiffusion's tuned CIFAR-10 files (`step_5_weight_00.npz`,
`step_10_weight_42.npz`, `step_15_weight_173.npz`: C n×n, B n×n with only column 0 non-zero, nodes (n+1)×3 on the
time-quadratic grid 1 → 1e-3 of the continuous linear VP), built from our own traced DDIM / DPM-Solver++ matrices.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from diffrepro.diffusion.schedules import make_schedule
from diffrepro.errors import UserError
from diffrepro.natural_inference.study import load_for_model, sample
from diffrepro.natural_inference.tracer import trace_sampler
from diffrepro.samplers.sweep import model_grid, run_cell
from test_ni import DATA, VP, optimal_denoiser  # the same exact bed as the NI replay tests

# (paper file name, our sampler traced into it, steps = NFE)
FILES = [("step_5_weight_00", "ddim", 5), ("step_10_weight_42", "dpmpp2m", 10), ("step_15_weight_173", "dpmpp3m", 15)]


def paper_layout(path, m, **replace):
    """Save `m` as the paper's tuned files are stored: B cut to n×n (its noise is column 0 only)."""
    arrays = {"past_xstart_coeff": m.C, "past_epsilon_coeff": m.B[:, :m.n], "node_coeff": m.nodes}
    arrays.update(replace)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("fname,sampler,n", FILES)
def test_replay_of_paper_layout_equals_the_sampler(tmp_path, fname, sampler, n):
    m = trace_sampler(sampler, VP, n, grid="quadratic_t")
    path = paper_layout(tmp_path / f"{fname}.npz", m)
    with np.load(path) as z:
        assert {k: z[k].shape for k in z.files} == {"past_xstart_coeff": (n, n), "past_epsilon_coeff": (n, n),
                                                     "node_coeff": (n + 1, 3)}
    loaded, facts = load_for_model(path, VP)
    assert facts["grid"] == "quadratic_t" and facts["node_err"] <= 1e-12 and facts["deterministic"]
    D = optimal_denoiser(VP)
    eps0 = torch.randn(6, DATA.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    native, _ = run_cell(D, VP, sampler, model_grid("quadratic_t", VP, n), eps0)
    replay = sample(loaded, D, eps0)
    assert float((native.double() - replay).abs().max()) <= 1e-10


def test_nodes_of_another_schedule_are_refused(tmp_path):
    # same grid and sampler, traced on a linear VP with β1 = 10 instead of 20 (EDM's VP precond, β_d = 19.9 and
    # β_min = 0.1, is β1 = 20 and matches)
    other = make_schedule("vp_linear", beta1=10.0)
    path = paper_layout(tmp_path / "step_5_weight_00.npz", trace_sampler("ddim", other, 5, grid="quadratic_t"))
    with pytest.raises(UserError) as e:
        load_for_model(path, VP)
    msg = str(e.value)
    assert "step_5_weight_00.npz" in msg and "node 0 (t = 1)" in msg and "file α" in msg and "model α(t)" in msg
    # a non-VP node (α² + σ² ≠ 1) and a non-VP model are refused too
    m = trace_sampler("ddim", VP, 5, grid="quadratic_t")
    nodes = m.nodes.copy()
    nodes[2, 2] *= 1.01
    with pytest.raises(UserError, match="node 2 .*not a variance-preserving"):
        load_for_model(paper_layout(tmp_path / "nonvp.npz", m, node_coeff=nodes), VP)
    with pytest.raises(UserError, match="not variance preserving"):
        load_for_model(paper_layout(tmp_path / "ok.npz", m), make_schedule("flow"))


@pytest.mark.parametrize("replace,needle", [
    ({"past_xstart_coeff": np.ones((5, 4))}, "C must be square"),
    ({"node_coeff": np.ones((5, 3))}, "nodes must be"),
    ({"past_epsilon_coeff": np.ones((4, 6))}, "B must be"),
    ({"past_xstart_coeff": np.triu(np.ones((5, 5)))}, "lower-triangular"),
    ({"node_coeff": np.full((6, 3), np.nan)}, "node_coeff holds non-finite"),
])
def test_bad_layouts_are_refused_naming_the_file(tmp_path, replace, needle):
    m = trace_sampler("ddim", VP, 5, grid="quadratic_t")
    path = paper_layout(tmp_path / "bad.npz", m, **replace)
    with pytest.raises(UserError, match=needle) as e:
        load_for_model(path, VP)
    assert "bad.npz" in str(e.value)
    np.savez(tmp_path / "keys.npz", C=m.C, B=m.B, nodes=m.nodes)
    with pytest.raises(UserError, match="keys.npz: not an NI matrix file, missing keys"):
        load_for_model(tmp_path / "keys.npz", VP)


def test_a_stored_matrix_is_a_sampler_of_the_sweep(tmp_path, repo_root):
    """`ni study --part file` checks the stored DDIM file; `sample --sampler ni_file_step_5 --matrix ...` runs it like
    any sampler and gives the sweep's own DDIM cells; a missing file stops the job naming it, with no output."""
    from diffrepro.cli import main
    from diffrepro.models import build_model

    cfg = yaml.safe_load((repo_root / "params/smoke.yaml").read_text())
    cfg["sampling"].update({"models": ["toy2d"], "samplers": ["ddim"], "grids": ["quadratic_t"], "nfe": [5],
                            "seeds": [0, 2], "n_samples": 16, "batch_size": 16})
    matrix = paper_layout(tmp_path / "step_5_weight_00.npz", trace_sampler("ddim", VP, 5, grid="quadratic_t"))
    cfg["ni"] = {"files": {"models": ["toy2d"], "matrices": {"step_5": str(matrix), "missing": "nope/x.npz"}}}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(cfg))
    spec = cfg["models"]["toy2d"]
    ckpt = tmp_path / "results" / "models" / "toy2d" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"spec": spec, "state_dict": build_model(spec, [2]).state_dict(), "data_shape": [2],
                "num_classes": 0}, ckpt)
    study = ["ni", "study", "--params", str(params), "--part", "file", "--model", "toy2d", "--checkpoint", str(ckpt)]
    assert main(study + ["--name", "step_5", "--out-dir", str(tmp_path / "f")]) == 0
    sec = json.loads((tmp_path / "f" / "section.json").read_text())
    assert sec["tables"][0]["rows"][0][:3] == ["step_5", 5, "quadratic_t"]
    samples = tmp_path / "results" / "samples" / "toy2d"
    sample = ["sample", "--params", str(params), "--model", "toy2d", "--checkpoint", str(ckpt), "--no-progress"]
    out = samples / "ni_file_step_5.npz"
    assert main(sample + ["--sampler", "ni_file_step_5", "--matrix", f"ni_file_step_5={matrix}", "--out",
                          str(out)]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    assert manifest["sampler"] == "ni_file_step_5"
    assert [c["key"] for c in manifest["cells"]] == ["quadratic_t/nfe5/seed0", "quadratic_t/nfe5/seed2"]
    assert {c["nfe_measured"] for c in manifest["cells"]} == {5} and manifest["cells"][0]["matrix"] == str(matrix)
    ddim = tmp_path / "ddim.npz"
    assert main(sample + ["--sampler", "ddim", "--out", str(ddim)]) == 0
    with np.load(out) as a, np.load(ddim) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            # float32 samples of an untrained net reach |x| ~ 300: compare relative to the scale
            assert np.abs(a[key] - b[key]).max() <= 1e-6 * np.abs(b[key]).max(), key
    # a configured file that is absent: exit 2, the message names the file; a matrix sampler without --matrix too
    missing = samples / "ni_file_missing.npz"
    assert main(sample + ["--sampler", "ni_file_missing", "--matrix", "ni_file_missing=nope/x.npz",
                          "--out", str(missing)]) == 2
    assert main(sample + ["--sampler", "ni_file_missing", "--out", str(missing)]) == 2
    assert not missing.exists() and not missing.with_suffix(".json").exists()
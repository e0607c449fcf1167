"""AMED-Solver / AMED-Plugin (GEO §3.3): fixed-decision identities (float64), NI tracing of a learned solver with its
decisions fixed, distillation on the Gaussian-mixture bed with the exact denoiser, and the predictor artifact."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from diffrepro.amed import decisions_for, load_predictor
from diffrepro.amed.distill import distill, teacher_grid
from diffrepro.diffusion.gaussian import GaussianMixtureDenoiser
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.errors import UserError
from diffrepro.natural_inference.executor import execute
from diffrepro.natural_inference.tracer import trace
from diffrepro.samplers import SAMPLERS, get_sampler, make_grid
from diffrepro.samplers import amed as A
from diffrepro.samplers import solvers as S
from diffrepro.samplers.reference import reference_solution
from diffrepro.samplers.registry import AMED_PLUGIN_BASES

F64 = torch.float64
EDM = make_schedule("edm", sigma_min=0.002, sigma_max=80.0)
DIM, COMPONENTS = 16, 8
MEANS = torch.randn(COMPONENTS, DIM, generator=torch.Generator().manual_seed(3), dtype=F64)
GMM = GaussianMixtureDenoiser(torch.ones(COMPONENTS), MEANS, stds=torch.full((COMPONENTS,), 0.3), schedule=EDM)


def noise(n, seed):
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed), dtype=F64) * 80.0


@pytest.mark.parametrize("grid_name,steps,afs", [("logsnr", 4, False), ("edm", 3, True), ("time_uniform", 5, False)])
def test_half_r_is_dpm_solver_2(grid_name, steps, afs):
    """r = ½, c = g = 1: an AMED-Solver step is a DPM-Solver-2 step (GEO §2.3), to 1e-12 in float64."""
    grid = make_grid(grid_name, EDM, steps).tolist()
    x = noise(8, 0)
    amed = A.amed_solver(GMM, x, grid, EDM, r=0.5, scale_dir=1.0, scale_time=1.0, afs=afs)
    dpm2 = S.dpm_singlestep(GMM, x, grid, EDM, order=2, predict_x0=False, afs=afs)
    assert float((amed - dpm2).abs().max()) <= 1e-12
    # r ≠ ½ is a different method: the generic DPM-Solver-2 form with r1 = r puts the intermediate point at the same
    # level but combines the two directions differently, so the identity is not vacuous
    other = A.amed_solver(GMM, x, grid, EDM, r=0.3)
    assert float((other - dpm2).abs().max()) > 1e-3


@pytest.mark.parametrize("base", AMED_PLUGIN_BASES)
def test_plugin_is_base_on_the_split_grid(base):
    """An AMED-Plugin step with fixed r is the base solver on the grid split at s_i = σ_{i+1}^r σ_i^{1−r}."""
    spec = get_sampler(base)
    grid = make_grid(spec.default_grid, EDM, 3).tolist()
    r = [0.3, 0.55, 0.7]
    x = noise(8, 1)
    plugin = get_sampler(f"amed_plugin_{base}").bind({"r": r})(GMM, x, grid, EDM)
    split = [grid[0], grid[1] ** 0.3 * grid[0] ** 0.7, grid[1], grid[2] ** 0.55 * grid[1] ** 0.45, grid[2],
             grid[3] ** 0.7 * grid[2] ** 0.3, grid[3]]
    assert np.allclose(A.split_grid(grid, r), split, rtol=1e-14)
    direct = spec.bind()(GMM, x, split, EDM)
    assert float((plugin - direct).abs().max()) <= 1e-12


def test_bad_decisions_are_refused():
    grid = make_grid("edm", EDM, 3).tolist()
    with pytest.raises(ValueError, match="0 < r < 1"):
        A.amed_solver(GMM, noise(2, 0), grid, EDM, r=1.0)
    with pytest.raises(ValueError, match="3 steps"):
        A.amed_solver(GMM, noise(2, 0), grid, EDM, r=[0.5, 0.5])
    with pytest.raises(ValueError, match="EDM coordinates"):
        A.amed_solver(GMM, noise(2, 0), make_grid("logsnr", make_schedule("vp_linear"), 3).tolist(),
                      make_schedule("vp_linear"))


def test_learned_decisions_trace_and_replay():
    """With its decisions fixed, an AMED step is linear in the denoiser outputs: the traced (C, B) replays it."""
    vp = make_schedule("vp_linear")
    from diffrepro.samplers import convert_grid
    from diffrepro.samplers.sweep import native_schedule
    from diffrepro.diffusion.denoisers import reschedule

    edm = native_schedule("edm", vp)
    grid = convert_grid(make_grid("logsnr", vp, 3), vp, edm).tolist()
    den_vp = GaussianMixtureDenoiser(torch.ones(COMPONENTS), MEANS[:, :4], stds=torch.full((COMPONENTS,), 0.3),
                                     schedule=vp)
    opts = {"r": [0.2, 0.6, 0.4], "scale_dir": [1.01, 0.99, 1.0], "scale_time": [1.0, 1.02, 0.98]}
    m = trace(get_sampler("amed").bind(opts), vp, grid, "edm")
    assert m.n == 6
    e = torch.randn(5, 4, generator=torch.Generator().manual_seed(4), dtype=F64)
    native = get_sampler("amed").bind(opts)(reschedule(den_vp, vp, edm), e * grid[0], grid, edm)
    original = native * float(vp.alpha(float(vp.t_from_lambda(edm.lambda_(grid[-1])))))
    assert float((execute(m, den_vp, e) - original).abs().max()) <= 1e-10


@functools.lru_cache(maxsize=1)
def gmm_test_set() -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out initial states and their reference PF-ODE end points (400 Heun steps, EDM ρ = 7)."""
    test = noise(128, 2)
    return test, reference_solution(GMM, EDM, test / 80.0, steps=400)


def gmm_errors(nfe: int, iterations: int = 25) -> dict[str, float]:
    """Mean per-sample RMSE against the reference PF-ODE solution (400 Heun steps) on held-out noises, for a trained
    AMED-Solver and for DPM-Solver-2 and Heun on the same EDM ρ = 7 grid (AFS at odd NFE)."""
    opts = {"afs": nfe % 2 == 1}
    steps = get_sampler("amed").steps_for_nfe(nfe, options=opts)
    grid = make_grid("edm", EDM, steps).tolist()
    pred, summary = distill("amed", opts, GMM, EDM, grid, noise(32, 1), iterations=iterations, lr=0.05)
    test, ref = gmm_test_set()
    err = lambda name, o: float((get_sampler(name).bind(o)(GMM, test, grid, EDM) - ref).pow(2).mean(1).sqrt().mean())  # noqa: E731
    assert summary["loss_final"] < summary["loss_initial"]
    return {"amed": err("amed", {**opts, **decisions_for(pred, grid)}), "dpm2": err("dpm2", opts),
            "heun": err("heun", opts)}


@pytest.mark.parametrize("nfe", [3, 4, 5, 6, 7])
def test_trained_amed_beats_dpm2_and_heun_on_the_mixture(nfe):
    e = gmm_errors(nfe)
    print(f"GMM NFE {nfe}: trajectory RMSE amed {e['amed']:.4f}, dpm2 {e['dpm2']:.4f}, heun {e['heun']:.4f}")
    assert e["amed"] < e["dpm2"] and e["amed"] < e["heun"], e


def test_teacher_grid_inserts_points_uniformly_in_log_sigma():
    g = teacher_grid(80.0, 0.5, 3)
    assert len(g) == 5 and g[0] == 80.0 and g[-1] == 0.5
    assert np.allclose(np.diff(np.log(g)), np.log(0.5 / 80.0) / 4)


def test_plugin_training_and_artifact_roundtrip(tmp_path):
    from diffrepro.amed import predictor_payload

    opts = {"afs": True}
    spec = get_sampler("amed_plugin_ipndm")
    steps = spec.steps_for_nfe(5, options=opts)
    assert steps == 3
    grid = make_grid("edm", EDM, steps).tolist()
    pred, summary = distill("amed_plugin_ipndm", opts, GMM, EDM, grid, noise(16, 5), iterations=8)
    assert summary["loss_final"] <= summary["loss_initial"]
    path = tmp_path / "p.pt"
    torch.save(predictor_payload(pred, summary, model="gmm", nfe=5), path)
    loaded, payload = load_predictor(path)
    assert payload["nfe"] == 5 and payload["sampler"] == "amed_plugin_ipndm"
    assert decisions_for(loaded, grid) == decisions_for(pred, grid)
    torch.save({"format": "other"}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="not an AMED predictor"):
        load_predictor(tmp_path / "bad.pt")


def test_ni_matrix_dpmpp3s_24_rows(tmp_path):
    """`ni matrix --sampler dpmpp3s --nfe 24`: 8 steps × 3 nodes = a 24-row matrix (NaturalDiffusion's
    dpmsolverpp3s_024 layout: C 24×24, B 24×25, nodes 25×3)."""
    from diffrepro.cli import main

    out = tmp_path / "dpmpp3s_024.npz"
    assert main(["ni", "matrix", "--sampler", "dpmpp3s", "--nfe", "24", "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["past_xstart_coeff"].shape == (24, 24)
        assert z["past_epsilon_coeff"].shape == (24, 25)
        assert z["node_coeff"].shape == (25, 3)
    assert main(["ni", "matrix", "--sampler", "dpmpp2s", "--nfe", "24", "--option", "order=3",
                 "--out", str(tmp_path / "b.npz")]) == 0
    with np.load(tmp_path / "b.npz") as z:
        assert z["past_xstart_coeff"].shape == (24, 24)
    assert main(["ni", "matrix", "--sampler", "dpmpp3s", "--nfe", "25", "--out", str(tmp_path / "c.npz")]) == 2


def test_registry_has_every_amed_sampler():
    assert {"amed", "dpmpp3s"} | {f"amed_plugin_{b}" for b in AMED_PLUGIN_BASES} <= set(SAMPLERS)


@pytest.fixture(scope="module")
def toy_work(tmp_path_factory, repo_root):
    """A smoke-size toy2d model and a params file with the AMED sweep cells (NFE 4 trained, 8 not)."""
    import yaml

    from diffrepro.cli import main

    w = tmp_path_factory.mktemp("amed")
    cfg = yaml.safe_load((repo_root / "params" / "smoke.yaml").read_text())
    cfg["sampling"].update(models=["toy2d"], samplers=["amed", "amed_plugin_ipndm"], grids=["default"], nfe=[4, 8],
                           n_samples=16, batch_size=16,
                           amed={"nfe": [4], "n_train": 8, "iterations": 2, "teacher_points": 1})
    cfg["models"] = {"toy2d": {**cfg["models"]["toy2d"], "train": {"steps": 4, "batch_size": 32, "lr": 2.0e-3,
                                                                    "checkpoint_every": 4}}}
    for key in ("ni", "mdm", "studies"):
        cfg.pop(key, None)
    params = w / "params.yaml"
    params.write_text(yaml.safe_dump(cfg))
    assert main(["prepare", "--params", str(params), "--dataset", "toy2d", "--out-dir", str(w / "data")]) == 0
    assert main(["train", "--params", str(params), "--model", "toy2d", "--data", str(w / "data" / "data.npz"),
                 "--out-dir", str(w / "model"), "--threads", "1"]) == 0
    return w, params


def test_amed_train_sample_and_section_cli(toy_work):
    import json

    from diffrepro.cli import main

    w, params = toy_work
    ckpt, pred = w / "model" / "model.pt", w / "amed" / "amed_nfe4.pt"
    base = ["--params", str(params), "--model", "toy2d", "--checkpoint", str(ckpt)]
    assert main(["amed", "train", *base, "--solver", "amed", "--nfe", "4", "--out", str(pred)]) == 0
    summary = json.loads(pred.with_suffix(".json").read_text())
    assert len(summary["decisions"]["r"]) == 2 and summary["loss_final"] <= summary["loss_initial"]
    assert main(["amed", "train", *base, "--solver", "amed", "--nfe", "5", "--out", str(w / "x.pt")]) == 2
    assert main(["amed", "train", *base, "--solver", "heun", "--nfe", "4", "--out", str(w / "x.pt")]) == 2
    assert not (w / "x.pt").exists()
    out = w / "samples" / "amed.npz"
    assert main(["sample", *base, "--sampler", "amed", "--out", str(out), "--amed-predictor", str(pred),
                 "--no-progress"]) == 0
    manifest = json.loads(out.with_suffix(".json").read_text())
    (cell,) = manifest["cells"]
    assert cell["nfe"] == cell["nfe_measured"] == 4 and cell["amed"]["r"] == pytest.approx(summary["decisions"]["r"])
    assert [s["nfe"] for s in manifest["skipped"]] == [8]
    assert main(["sample", *base, "--sampler", "amed_plugin_ipndm", "--out", str(w / "samples" / "p.npz"),
                 "--amed-predictor", str(pred), "--no-progress"]) == 2   # a predictor of another sampler
    assert main(["amed", "section", "--params", str(params), "--predictors", str(pred), "--manifests",
                 str(out.with_suffix(".json")), "--out-dir", str(w / "section")]) == 0
    section = json.loads((w / "section" / "section.json").read_text())
    assert section["tables"][0]["rows"][0][:3] == ["toy2d", "amed", 4]
    assert (w / "section" / "amed_r.png").stat().st_size > 0

"""Natural Inference: tracer, closed forms (NI spec §4), exact replay of every sampler, storage, executor memory,
search constraints, sharpness family. Float64, small problems: the whole file runs in seconds."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from diffrepro.diffusion.denoisers import reschedule
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.natural_inference.executor import execute, peak_kept
from diffrepro.natural_inference.linear_form import LinearForm
from diffrepro.natural_inference.matrix import NIMatrix
from diffrepro.natural_inference.search import (Parameterisation, marginal_exact, per_sample_rmse,
                                                projection_gap, search)
from diffrepro.natural_inference.sharpness import delta_sigma_matrix, sharpen
from diffrepro.natural_inference.tracer import native_schedule, trace_sampler
from diffrepro.samplers import SAMPLERS, TorchNoise, convert_grid, make_grid

VP = make_schedule("vp_linear")
DATA = torch.randn(24, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))


def optimal_denoiser(schedule, data=DATA):
    """Exact posterior mean over `data` (NI §2.1), float64: a nonlinear denoiser with a closed form."""
    def D(x, t):
        a, s = float(schedule.alpha(t)), float(schedule.sigma(t))
        logits = -((x[:, None, :] - a * data[None]) ** 2).sum(-1) / (2 * s * s)
        return torch.softmax(logits, 1) @ data
    return D


def eps(seed, n=6):
    return torch.randn(n, DATA.shape[1], dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def native_run(name, schedule, nfe, eps0, noise_seed, denoiser):
    """The original sampler, run as the sweep runs it (grid in the model schedule, converted by equal λ)."""
    spec = SAMPLERS[name]
    steps = spec.steps_for_nfe(nfe)
    grid = make_grid(spec.default_grid, schedule, steps)
    native = native_schedule(spec.coords, schedule)
    ns = native or schedule
    g = convert_grid(grid, schedule, ns) if native else grid
    D = reschedule(denoiser, schedule, ns) if native else denoiser
    x = spec.bind()(D, eps0 * float(ns.sigma(float(g[0]))), g, ns, TorchNoise(torch.Generator().manual_seed(noise_seed)))
    t_final = float(grid[-1])
    return x * (float(schedule.alpha(t_final)) / float(ns.alpha(float(g[-1]))))


# --- linear forms ---------------------------------------------------------------------------------------------------
def test_linear_form_algebra_and_refusals():
    y0, e0 = LinearForm.unit("y", 0), LinearForm.unit("eps", 0)
    f = 2.0 * y0 - e0 / 4 + sum([y0, e0]) - (-y0)
    assert np.allclose(f.y, [4.0]) and np.allclose(f.eps, [0.75])
    assert np.allclose((np.float64(3.0) * e0).eps, [3.0])
    with pytest.raises(TypeError):
        y0 * e0
    with pytest.raises(TypeError):
        y0 + 1.0
    with pytest.raises(TypeError):
        bool(y0)
    with pytest.raises(TypeError):
        torch.clamp(y0, -1, 1)


# --- item 4: replay ≡ original sampler for every sampler of the library -----------------------------------------------
@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_replay_equals_sampler(name):
    spec = SAMPLERS[name]
    nfe = spec.nfe_per_step * 4
    D = optimal_denoiser(VP)
    m = trace_sampler(name, VP, nfe)
    assert m.n == nfe
    eps0 = eps(1)
    original = native_run(name, VP, nfe, eps0, 7, D)
    replay = execute(m, D, eps0, TorchNoise(torch.Generator().manual_seed(7)))
    assert float((original - replay).abs().max()) <= 1e-10
    assert m.deterministic == (not spec.stochastic)


# --- a matrix is a sampler of the registry ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,base", [("ni_tuned", "dpmpp2m"), ("ni_sharp", "ddim"), ("ni_file_step", "ddpm")])
def test_a_matrix_sampler_is_its_matrix(name, base):
    """The registry's coefficient-matrix samplers (ni_tuned, ni_sharp, ni_file_<name>): traced, they give back their
    own (C, B) exactly; run as the sweep runs a cell (`run_cell`) they give the sampler the matrix was traced from,
    with n denoiser calls; off the matrix's nodes they refuse to run."""
    from diffrepro.errors import UserError
    from diffrepro.natural_inference.tracer import trace
    from diffrepro.samplers import get_sampler
    from diffrepro.samplers.sweep import run_cell

    m = trace_sampler(base, VP, 6, grid="quadratic_t")
    spec = get_sampler(name)
    again = trace(spec.bind({"matrix": m}), VP, torch.as_tensor(m.times), "model")
    assert np.abs(again.C - m.C).max() <= 1e-15 and np.abs(again.B[:, :m.B.shape[1]] - m.B).max() <= 1e-15
    D, eps0 = optimal_denoiser(VP), eps(4)
    out, rec = run_cell(D, VP, name, torch.as_tensor(m.times), eps0, options={"matrix": m}, sde_seed=3)
    native, _ = run_cell(D, VP, base, make_grid("quadratic_t", VP, 6), eps0, sde_seed=3)
    assert rec["nfe_measured"] == 6 and float((out - native).abs().max()) <= 1e-12
    with pytest.raises(ValueError, match="grid must be the matrix's"):
        run_cell(D, VP, name, make_grid("uniform_t", VP, 6), eps0, options={"matrix": m})
    with pytest.raises(UserError, match="unknown sampler 'ni_file_'"):
        get_sampler("ni_file_")


# --- closed forms (spec §4) ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("schedule,grid,steps", [(VP, "quadratic_t", 5), (make_schedule("vp_discrete"), "respaced", 18),
                                                 (make_schedule("vp_discrete"), "respaced", 24)])
def test_ddim_closed_form(schedule, grid, steps):
    m = trace_sampler("ddim", schedule, steps, grid=grid)
    a, s = m.alphas, m.sigmas
    rho = np.divide(a, s, out=np.full_like(a, np.inf), where=s > 0)
    C = np.zeros((steps, steps))
    B = np.zeros((steps, steps + 1))
    for k in range(steps):
        for j in range(k + 1):
            # C[k,j] = σ_{k+1}(ρ_{j+1} − ρ_j); at σ_{k+1} = 0 the last row is e_k (limit)
            C[k, j] = s[k + 1] * (rho[j + 1] - rho[j]) if s[k + 1] > 0 else float(j == k)
        B[k, 0] = s[k + 1]  # spec: σ_{k+1}/σ_0 for x_0 = ε_0; here x_0 = σ_0·ε_0
    assert np.abs(m.C - C).max() <= 1e-12 and np.abs(m.B - B).max() <= 1e-12
    # claim 4: the constant signal deficit α_{k+1} − ΣC = σ_{k+1}·α_0/σ_0
    deficit = m.alphas[1:] - m.C.sum(1)
    assert np.abs(deficit - s[1:] * a[0] / s[0]).max() <= 1e-12


def test_ddpm_closed_form():
    schedule = make_schedule("vp_discrete")
    n = 10
    m = trace_sampler("ddpm", schedule, n, grid="respaced")
    abar = m.alphas ** 2
    a_, b_, s_ = [], [], []
    for k in range(n):  # posterior q(x_{τ_{k+1}} | x_{τ_k}, x0) of the respaced chain (spec §4.2)
        ab, ab_prev = abar[k], abar[k + 1]
        alpha_step = ab / ab_prev
        beta_step = 1 - alpha_step
        b_.append(np.sqrt(ab_prev) * beta_step / (1 - ab))
        a_.append(np.sqrt(alpha_step) * (1 - ab_prev) / (1 - ab))
        s_.append(np.sqrt(beta_step * (1 - ab_prev) / (1 - ab)))
    C, B = np.zeros((n, n)), np.zeros((n, n + 1))
    for k in range(n):
        for j in range(k + 1):
            C[k, j] = b_[j] * np.prod(a_[j + 1:k + 1])
        B[k, 0] = m.sigmas[0] * np.prod(a_[:k + 1])
        for j in range(1, k + 2):
            B[k, j] = s_[j - 1] * np.prod(a_[j:k + 1])
    assert np.abs(m.C - C).max() <= 1e-12 and np.abs(m.B - B).max() <= 1e-12
    assert np.count_nonzero(m.B[:-1], axis=1).tolist() == [k + 2 for k in range(n - 1)]  # claim 6: dense B


def test_flow_euler_closed_form_and_exact_marginals():
    flow = make_schedule("flow")
    n = 12
    m = trace_sampler("flow_euler", flow, n)
    t = m.times
    C = np.tril(t[1:, None] * (1 / t[None, 1:] - 1 / t[None, :-1]))
    assert np.abs(m.C - C).max() <= 1e-12
    assert np.abs(m.B[:, 0] - t[1:]).max() <= 1e-12 and not np.any(m.B[:, 1:])
    mg = m.marginals()
    assert np.abs(mg["signal_err"]).max() <= 1e-12 and np.abs(mg["noise_err"]).max() <= 1e-12


def test_euler_marginal_error_shrinks_with_nfe():
    errs = [np.abs(trace_sampler("ode_euler", VP, n).marginals()["signal_err"]).max() for n in (10, 20, 40, 80)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs


def test_sign_patterns():
    # claim 9: DDIM/DDPM/Euler and DPM-Solver++(2S) have C ≥ 0; DPM-Solver-2/3 and DEIS have negative entries
    for name in ("ddim", "ddpm", "ode_euler", "dpmpp2s"):
        assert trace_sampler(name, VP, 2 * SAMPLERS[name].nfe_per_step * 3).C.min() >= -1e-15, name
    for name in ("dpm2", "dpm3", "deis"):
        assert trace_sampler(name, VP, SAMPLERS[name].nfe_per_step * 4).C.min() < 0, name


# --- storage ---------------------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    m = trace_sampler("ddpm", VP, 6)
    path = m.save(tmp_path / "m.npz")
    with np.load(path) as z:
        assert sorted(z.files) == sorted(["past_xstart_coeff", "past_epsilon_coeff", "node_coeff"])
        assert z["past_epsilon_coeff"].shape == (6, 7) and z["node_coeff"].shape == (7, 3)
    back = NIMatrix.load(path)
    assert np.array_equal(back.C, m.C) and np.array_equal(back.B, m.B) and np.array_equal(back.nodes, m.nodes)
    csv = m.to_csv(tmp_path / "m.csv").read_text().splitlines()
    assert csv[0].endswith(",sum") and len(csv) == 7 and len(csv[1].split(",")) == 6 + 2
    # the paper's tuned files store B as n×n: padded to n×(n+1) on load
    np.savez(tmp_path / "paper.npz", past_xstart_coeff=m.C, past_epsilon_coeff=m.B[:, :6] * 0, node_coeff=m.nodes)
    assert NIMatrix.load(tmp_path / "paper.npz").B.shape == (6, 7)


# --- executor memory -------------------------------------------------------------------------------------------------
def test_banded_matrix_keeps_only_its_window():
    m = marginal_exact(trace_sampler("dpmpp2m", VP, 12))
    banded = sharpen(m, window=2)
    assert banded.bandwidth() == 1 and peak_kept(banded) == 2 and peak_kept(m) == 12
    # dense one-step recursions are replayed as recursions: DDIM/DDPM hold one prediction, DPM-Solver++ 2M two
    assert [peak_kept(trace_sampler(s, VP, 12)) for s in ("ddim", "ddpm", "dpmpp2m")] == [1, 1, 2]
    held = []

    def D(x, t):
        held.append(x)
        return optimal_denoiser(VP)(x, t)
    eps0 = eps(3)
    stats = {}
    x = execute(banded, D, eps0, stats=stats)
    assert stats["max_kept"] == 2
    # reference: the recursion with every prediction kept
    ys, xk = [], eps0 * banded.sigmas[0]
    for k in range(banded.n):
        ys.append(optimal_denoiser(VP)(xk, banded.times[k]))
        xk = sum(banded.C[k, j] * ys[j] for j in range(k + 1)) + banded.B[k, 0] * eps0
    assert float((x - xk).abs().max()) <= 1e-12


# --- search keeps its constraints ------------------------------------------------------------------------------------
def test_search_keeps_constraints_and_improves():
    D = optimal_denoiser(VP)
    base = trace_sampler("ddim", VP, 4, grid="quadratic_t")
    fine = trace_sampler("ddim", VP, 200, grid="quadratic_t")
    e_train = eps(5, 32)
    reference = execute(fine, D, e_train)
    par = Parameterisation(base)
    theta = torch.randn(par.size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    C = par.C(theta).detach().numpy()
    assert np.abs(C.sum(1) - base.alphas[1:]).max() <= 1e-14 and np.all(np.triu(C, 1) == 0)
    result = search(base, D, e_train, reference, iterations=12, lr=0.05)
    tuned = result.matrix
    assert np.abs(tuned.C.sum(1) - base.alphas[1:]).max() <= 1e-14
    assert np.array_equal(tuned.B[:, 0], base.sigmas[1:]) and not np.any(tuned.B[:, 1:])
    # the returned matrix is the best evaluated one, and L-BFGS gets well below the start and the raw baseline
    tuned_loss = float(per_sample_rmse(execute(tuned, D, e_train), reference))
    assert abs(tuned_loss - min(result.losses)) <= 1e-12 and min(result.losses) < 0.5 * result.losses[0]
    assert tuned_loss < 0.5 * float(per_sample_rmse(execute(base, D, e_train), reference))


def test_search_chunked_gradient_is_the_full_batch_objective():
    D = optimal_denoiser(VP)
    base = trace_sampler("dpmpp2m", VP, 4, grid="quadratic_t")
    e_train = eps(6, 12)
    reference = execute(trace_sampler("ddim", VP, 100, grid="quadratic_t"), D, e_train)
    full = search(base, D, e_train, reference, iterations=4)
    chunked = search(base, D, e_train, reference, iterations=4, batch_size=5)
    assert np.allclose(full.losses, chunked.losses, rtol=0, atol=1e-12)
    assert np.abs(full.matrix.C - chunked.matrix.C).max() <= 1e-10
    with pytest.raises(ValueError, match="trim"):
        search(base, D, e_train, reference, iterations=1, batch_size=5, trim=0.1)


def test_projection_gap_is_the_ddim_row_sum_deficit():
    # traced deterministic baselines already have B = σ·e_0; what the projection changes is the row sums
    for name in ("ddim", "dpmpp2m", "deis", "ipndm"):
        gap = projection_gap(trace_sampler(name, VP, 6))
        assert gap["b0_rel"].max() <= 1e-10 and not np.any(gap["b_fresh"])
    m = trace_sampler("ddim", VP, 6)
    expected = m.sigmas[1:] * m.alphas[0] / m.sigmas[0] / m.alphas[1:]
    assert np.abs(projection_gap(m)["deficit_rel"] - expected).max() <= 1e-12


# --- sharpness family ------------------------------------------------------------------------------------------------
def test_sharpen_keeps_marginals_and_identity():
    base = delta_sigma_matrix(trace_sampler("ddim", VP, 8).nodes)
    assert np.abs(base.C.sum(1) - base.alphas[1:]).max() <= 1e-14
    assert np.abs(sharpen(base).C - base.C).max() <= 1e-15
    sharp = sharpen(base, window=3, last_weight=10.0)
    assert np.abs(sharp.C.sum(1) - base.C.sum(1)).max() <= 1e-14
    assert sharp.bandwidth() == 2
    w = sharp.C[-1] / sharp.C[-1].sum()
    w0 = base.C[-1] / base.C[-1].sum()
    assert w[-1] > w0[-1]


# --- study pieces ------------------------------------------------------------------------------------------------------
def test_guided_and_overshoot():
    from diffrepro.natural_inference.study import guided, overshoot

    def D(x, t, y=None):
        return x * 0 + y.double()[:, None]
    x = torch.zeros(3, 2, dtype=torch.float64)
    labels = torch.tensor([1, 2, 3])
    out = guided(D, labels, null_label=0, scale=4.0)(x, 0.5)  # y_u = 0: guidance multiplies the conditional answer
    assert torch.allclose(out, 4.0 * labels.double()[:, None].expand(3, 2))
    frac, excess = overshoot(torch.tensor([[-2.0, 0.5], [1.5, 1.01]]))
    assert frac == 0.5 and abs(excess - 0.3775) < 1e-6


def test_ni_study_matrices_cli(tmp_path):
    import json

    import yaml

    from diffrepro.cli import main

    cfg = yaml.safe_load(open("params/smoke.yaml"))
    cfg["ni"] = {"matrices": {"samplers": ["ddim", "ddpm", "dpmpp2m", "heun", "ode_euler"], "nfe": [4, 8],
                              "heatmap_samplers": ["ddim", "heun"], "heatmap_nfe": [4]},
                 "equivalence": {"steps": 2, "n_points": 16, "dim": 3, "batch": 4}}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(cfg))
    assert main(["ni", "study", "--params", str(params), "--part", "matrices", "--out-dir", str(tmp_path / "m")]) == 0
    sec = json.loads((tmp_path / "m" / "section.json").read_text())
    eq = next(t for t in sec["tables"] if t["id"] == "ni_equivalence")
    assert [r[0] for r in eq["rows"]] == ["ddim", "ddpm", "dpmpp2m", "heun", "ode_euler"]
    assert all(float(r[2]) <= 1e-10 for r in eq["rows"])
    assert len(sec["figures"]) == 2 and all(os.path.exists(f["path"]) for f in sec["figures"])
    assert (tmp_path / "m" / "matrices" / "heun_nfe008.npz").exists()

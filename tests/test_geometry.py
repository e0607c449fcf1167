"""Geometry study (GEO spec §4, §7): trajectory statistics, annealed mean shift, density monotonicity,
optimal-denoiser limits at the study level, memorisation."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from diffrepro.analysis import geometry as geo
from diffrepro.analysis import mean_shift as ms
from diffrepro.analysis import memorisation as memo
from diffrepro.diffusion.optimal import OptimalDenoiser
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.samplers.grids import make_grid
from diffrepro.samplers.solvers import euler

F64 = torch.float64
EDM = make_schedule("edm")


def toy_data(n=60, d=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.tanh(torch.randn(n, d, generator=gen, dtype=F64) * 1.5), gen


def optimal_trajectory(data, gen, batch=16, steps=25):
    grid = make_grid("edm", EDM, steps, rho=7.0)
    x0 = float(grid[0]) * torch.randn(batch, data.shape[1], generator=gen, dtype=F64)
    trajectory = []
    x_end = euler(OptimalDenoiser(data, EDM), x0, grid, EDM, trajectory=trajectory)
    xs = torch.stack([x for _, x, _ in trajectory] + [x_end])
    return xs, torch.stack([d for _, _, d in trajectory]), [float(s) for s in grid]


def test_euler_step_with_optimal_denoiser_is_annealed_mean_shift():
    """GEO §4.3: x_{i+1} = x_i + (1 − σ_{i+1}/σ_i)(m(x_i) − x_i), m from the KDE gradient (no denoiser call)."""
    data, gen = toy_data()
    xs, _, sigmas = optimal_trajectory(data, gen)
    for i in range(len(sigmas) - 1):
        shifted = ms.annealed_mean_shift_step(xs[i], data, sigmas[i], sigmas[i + 1])
        assert (shifted - xs[i + 1]).abs().max() <= 1e-12 * max(1.0, float(xs[i].abs().max())), i


def test_mean_shift_target_is_the_kernel_weighted_mean():
    data, gen = toy_data(n=20, d=3)
    x = torch.randn(5, 3, generator=gen, dtype=F64)
    for h in (0.1, 1.0, 10.0):
        w = torch.softmax(-torch.cdist(x, data) ** 2 / (2 * h * h), dim=1)
        assert torch.allclose(ms.mean_shift_target(x, data, h), w @ data, atol=1e-12)


def test_kde_density_never_decreases_along_optimal_euler_steps():
    data, gen = toy_data(n=80, d=8, seed=1)
    xs, _, sigmas = optimal_trajectory(data, gen, batch=32, steps=30)
    gains = torch.stack([ms.density_gain(xs[i], xs[i + 1], data, sigmas[i]) for i in range(len(sigmas) - 1)])
    assert gains.min() >= -1e-10
    # the bound is specific to steps toward m(x): overshooting past the mean-shift target can lose density
    x, h = xs[-6], sigmas[-6]
    overshoot = x + 3.0 * (ms.mean_shift_target(x, data, h) - x)
    assert ms.density_gain(x, overshoot, data, h).min() < 0


def test_kde_log_density_normalisation():
    data = torch.tensor([[0.0, 0.0]], dtype=F64)
    x = torch.tensor([[1.0, -2.0]], dtype=F64)
    expected = -5.0 / (2 * 0.25) - math.log(2 * math.pi * 0.25)
    assert float(ms.kde_log_density(x, data, 0.5)) == pytest.approx(expected, abs=1e-12)


def test_optimal_denoiser_limits_at_study_level():
    """σ → ∞: data mean; σ → 0: the nearest training sample; always inside the data's convex hull (GEO §4.3)."""
    from scipy.spatial import Delaunay

    data, gen = toy_data(n=40, d=2, seed=2)
    optimal = OptimalDenoiser(data, EDM)
    x = 3.0 * torch.randn(200, 2, generator=gen, dtype=F64)
    assert torch.allclose(optimal(x, 1e5), data.mean(0).expand(200, 2), atol=1e-6)
    nn_dist, nn_idx = memo.nearest_neighbour(x, data)
    assert torch.allclose(optimal(x, 1e-3), data[nn_idx], atol=1e-9)
    hull = Delaunay(data.numpy())
    for sigma in (0.05, 0.3, 1.0, 5.0):
        assert (hull.find_simplex(optimal(x, sigma).numpy(), tol=1e-9) >= 0).all(), sigma


def test_optimal_samples_memorise_and_a_smooth_denoiser_does_not():
    """GEO §7 claims 4 and 22: D* ends on training samples; a generalising (here: Gaussian-fit) denoiser does not."""
    from diffrepro.diffusion.gaussian import GaussianMixtureDenoiser

    data, gen = toy_data(n=100, d=4, seed=3)
    grid = make_grid("edm", EDM, 60, rho=7.0)
    x0 = float(grid[0]) * torch.randn(40, 4, generator=gen, dtype=F64)
    optimal_samples = euler(OptimalDenoiser(data, EDM), x0, grid, EDM)
    smooth = GaussianMixtureDenoiser(torch.ones(1), data.mean(0, keepdim=True), covs=torch.cov(data.T)[None],
                                     schedule=EDM)
    smooth_samples = euler(smooth, x0, grid, EDM)
    copied, fresh = memo.memorisation_summary(optimal_samples, data), memo.memorisation_summary(smooth_samples, data)
    assert copied["frac_copies"] == 1.0 and copied["ratio_median"] < 0.01
    assert fresh["frac_copies"] < 0.5 and fresh["ratio_median"] > 0.1


def test_nearest_neighbour_and_training_spacing():
    data = torch.tensor([[0.0], [1.0], [3.0]], dtype=F64)
    d, i = memo.nearest_neighbour(torch.tensor([[0.4], [2.9]], dtype=F64), data)
    assert torch.allclose(d, torch.tensor([0.4, 0.1], dtype=F64)) and i.tolist() == [0, 2]
    assert memo.training_spacing(data).tolist() == pytest.approx([1.0, 1.0, 2.0])


def test_chord_deviation_of_straight_and_bent_paths():
    line = torch.linspace(0, 1, 5, dtype=F64)[:, None, None] * torch.tensor([[3.0, 4.0]], dtype=F64)
    dev, chord = geo.chord_deviation(line)
    assert dev.abs().max() < 1e-12 and float(chord) == pytest.approx(5.0)
    bent = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]], [[2.0, 0.0]]], dtype=F64)
    dev, chord = geo.chord_deviation(bent)
    assert dev[:, 0].tolist() == pytest.approx([0.0, 1.0, 0.0]) and float(chord) == pytest.approx(2.0)


def test_chord_pca_projection_recovers_a_planar_bend():
    gen = torch.Generator().manual_seed(4)
    basis, _ = torch.linalg.qr(torch.randn(10, 2, generator=gen, dtype=F64))
    s = torch.linspace(0, 1, 21, dtype=F64)
    planar = torch.stack([1 - s, -0.3 * torch.sin(math.pi * s)], 1)        # chord along e1, bend along −e2
    path = (planar @ basis.T)[:, None, :]
    coords, ratio = geo.chord_pca_projection(path, n_components=2)
    assert float(ratio[0]) == pytest.approx(1.0)
    assert torch.allclose(coords[:, 0, 0], 1 - s, atol=1e-12)                # chord coordinate, relative to the end
    assert torch.allclose(coords[:, 0, 1], 0.3 * torch.sin(math.pi * s), atol=1e-12)  # sign: largest excursion > 0
    assert coords[:, 0, 2].abs().max() < 1e-12


def test_single_training_point_gives_straight_trajectories():
    """With one training sample D* ≡ y, the PF-ODE is linear and Euler exact: zero deviation, cosine 1 (GEO §4.3)."""
    gen = torch.Generator().manual_seed(5)
    data = torch.randn(1, 16, generator=gen, dtype=F64)
    xs, den, sigmas = optimal_trajectory(data, gen, batch=4, steps=12)
    st = geo.trajectory_statistics(xs, den, sigmas)
    assert st["dev_sampling_rel"].max() < 1e-12
    assert torch.allclose(st["cos_direction_end"], torch.ones_like(st["cos_direction_end"]), atol=1e-12)
    # x_σ − y = (σ/σ_0)(x_0 − y): the denoiser output is y from the start, the state approaches it linearly in σ
    sig = torch.as_tensor(sigmas, dtype=F64)[:, None]
    assert torch.allclose(st["dist_denoised_end"], st["dist_x_end"][0] * sig[-1] / (sig[0] - sig[-1]), atol=1e-9)
    assert torch.allclose(st["dist_x_end"], st["dist_x_end"][0] * (sig - sig[-1]) / (sig[0] - sig[-1]), atol=1e-9)


def test_norms_follow_sigma_sqrt_d_in_high_dimension():
    """GEO §7 claim 8: ‖x_0‖ ≈ σ_max√d and ‖d_i‖ ≈ √d along optimal-denoiser trajectories."""
    data, gen = toy_data(n=50, d=256, seed=6)
    xs, den, sigmas = optimal_trajectory(data, gen, batch=16, steps=20)
    st = geo.trajectory_statistics(xs, den, sigmas)
    assert float(st["norm_x"][0].mean()) == pytest.approx(sigmas[0] * 16.0, rel=0.05)
    assert float(st["norm_direction"].mean()) == pytest.approx(16.0, rel=0.1)
    assert float(st["dev_sampling_rel"].max(0).values.median()) < 0.05


def test_denoiser_gap_is_zero_for_its_own_outputs_and_positive_otherwise():
    data, gen = toy_data(n=30, d=3, seed=7)
    optimal = OptimalDenoiser(data, EDM)
    states = torch.randn(4, 5, 3, generator=gen, dtype=F64)
    ts = [10.0, 3.0, 1.0, 0.1]
    own = torch.stack([optimal(x, t) for x, t in zip(states, ts)])
    assert memo.denoiser_gap(optimal, own, states, ts).abs().max() == 0
    gap = memo.denoiser_gap(optimal, torch.zeros_like(own), states, ts)
    assert torch.allclose(gap[0], torch.linalg.vector_norm(optimal(states[0], 10.0), dim=1))


def test_study_geometry_step_writes_section(tmp_path):
    """The CLI step end to end on a tiny untrained MLP and 2-D data (format of training.load_model)."""
    import json

    import numpy as np
    import yaml

    from diffrepro.cli import main
    from diffrepro.models import build_model

    cfg = yaml.safe_load(open("params/smoke.yaml"))
    cfg["studies"] = {"geometry": {"model": "toy2d", "n_trajectories": 6, "steps": 25, "n_plot": 3}}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(cfg))
    spec = cfg["models"]["toy2d"]
    torch.manual_seed(0)
    net = build_model(spec, [2], 0)
    torch.save({"spec": spec, "state_dict": net.state_dict(), "data_shape": [2], "num_classes": 0},
               tmp_path / "model.pt")
    data, _ = toy_data(n=40, d=2, seed=8)
    np.savez(tmp_path / "data.npz", x_train=data.float().numpy())
    out = tmp_path / "geo"
    argv = ["study", "geometry", "--params", str(params), "--model", "toy2d", "--checkpoint",
            str(tmp_path / "model.pt"), "--data", str(tmp_path / "data.npz"), "--out-dir", str(out), "--threads", "1"]
    assert main(argv) == 0
    doc = json.loads((out / "section.json").read_text())
    assert doc["id"] == "geo_trajectories" and doc["paper"] == "GEO"
    summary = {r[0]: r for r in next(t for t in doc["tables"] if t["id"] == "geometry_summary")["rows"]}
    assert summary["optimal"][-1] == 1.0  # every optimal-denoiser sample is a training copy
    checks = json.loads((out / "mean_shift_checks.json").read_text())
    assert checks["max_rel_diff_euler_vs_mean_shift"] < 1e-12 and checks["min_log_density_gain"] >= -1e-10
    assert all(Path(f["path"]).exists() for f in doc["figures"])
    assert main(argv[:5] + ["nope"] + argv[6:]) == 2  # unknown model name: user error

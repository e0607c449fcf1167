"""Time grids: the GEO §3.1 reference values, improved-diffusion respacing (NI §1.1), conversions and errors."""
from __future__ import annotations

import math

import pytest
import torch

from diffrepro.diffusion.schedules import make_schedule
from diffrepro.errors import UserError
from diffrepro.samplers import convert_grid, make_grid
from diffrepro.samplers.grids import space_timesteps
from diffrepro.samplers.solvers import _fit_vp_linear

EDM = make_schedule("edm", sigma_min=0.002, sigma_max=80.0)
VP = make_schedule("vp_linear")


def rounded(grid, digits=4):
    return [round(float(v), digits) for v in grid]


@pytest.mark.parametrize("name,options,expected", [
    ("edm", {"rho": 7}, [80, 30.1833, 9.7232, 2.5152, 0.4700, 0.0515, 0.002]),
    ("logsnr", {}, [80, 13.6798, 2.3392, 0.4000, 0.0684, 0.0117, 0.002]),
    ("time_uniform", {"rho": 2}, [80, 8.6725, 2.3043, 0.9263, 0.3843, 0.1098, 0.002]),
    ("time_uniform", {"rho": 1}, [80, 20.9655, 6.9502, 2.8237, 1.2867, 0.5272, 0.002]),
])
def test_reference_values_geo_3_1(name, options, expected):
    assert rounded(make_grid(name, EDM, 6, **options)) == expected


def test_edm_21_points_and_gits_example_indices():
    assert rounded(make_grid("edm", EDM, 20)) == [80, 60.5571, 45.3137, 33.4851, 24.4083, 17.5278, 12.3816, 8.5888,
                                                  5.8389, 3.8811, 2.5152, 1.584, 0.9654, 0.5666, 0.3183, 0.1698,
                                                  0.0851, 0.0395, 0.0167, 0.0063, 0.002]
    teacher = make_grid("edm", EDM, 60)  # the launch.sh GITS schedule is [0, 19, 27, 33, 39, 45, 60] of this grid
    assert rounded(teacher[[0, 19, 27, 33, 39, 45, 60]]) == [80, 10.9836, 3.8811, 1.584, 0.5666, 0.1698, 0.002]


def test_deis_fitted_vp_constants():
    beta_d, beta_min = _fit_vp_linear(80.0, 0.002)
    assert round(beta_d, 3) == 17.538 and round(beta_min, 5) == -0.00477


def test_space_timesteps_examples():
    assert space_timesteps(1000, 18) == [0, 59, 118, 176, 235, 294, 353, 411, 470, 529, 588, 646, 705, 764, 823, 881,
                                         940, 999]
    assert space_timesteps(1000, 5) == [0, 250, 500, 749, 999]


def test_respaced_grid_on_discrete_schedule():
    disc = make_schedule("vp_discrete")
    grid = make_grid("respaced", disc, 5)
    assert len(grid) == 6 and float(grid[-1]) == 0.0
    assert [round(float(disc.index(t))) for t in grid[:-1]] == [999, 749, 500, 250, 0]
    # ᾱ at the nodes are the table values (NI §1.1: α at i = 999 is 0.006353)
    assert abs(float(disc.alpha(float(grid[0]))) - 0.006353) < 5e-7
    with pytest.raises(UserError, match="respaced"):
        make_grid("respaced", VP, 5)


def test_simple_grids_endpoints_and_shapes():
    for name in ("uniform_t", "quadratic_t", "logsnr", "edm", "time_uniform"):
        g = make_grid(name, VP, 9)
        assert len(g) == 10 and float(g[0]) == VP.t_max and float(g[-1]) == VP.t_min
        assert bool((g[1:] < g[:-1]).all())
    lam = VP.lambda_(make_grid("logsnr", VP, 9))
    assert torch.allclose(lam[1:] - lam[:-1], (lam[1] - lam[0]).expand(9), atol=1e-10)
    q = make_grid("quadratic_t", VP, 9)
    assert torch.allclose(q.sqrt()[1:] - q.sqrt()[:-1], (q.sqrt()[1] - q.sqrt()[0]).expand(9), atol=1e-12)


def test_explicit_grid_and_errors():
    g = make_grid("explicit", EDM, 3, sigma=[80.0, 5.0, 0.5, 0.002])
    assert rounded(g) == [80.0, 5.0, 0.5, 0.002]
    with pytest.raises(UserError, match="explicit"):
        make_grid("explicit", EDM, 2, sigma=[80.0, 5.0, 0.5, 0.002])
    with pytest.raises(UserError, match="explicit"):
        make_grid("explicit", EDM, 2)
    with pytest.raises(UserError, match="wiggly"):
        make_grid("wiggly", EDM, 2)
    with pytest.raises(UserError, match="rhoo"):
        make_grid("edm", EDM, 2, rhoo=3)


def test_convert_grid_keeps_noise_levels():
    g = make_grid("edm", VP, 8)
    edm = make_schedule("edm", sigma_min=float(VP.sigma_ve(VP.t_min)), sigma_max=float(VP.sigma_ve(VP.t_max)))
    moved = convert_grid(g, VP, edm)
    assert torch.allclose(moved, VP.sigma_ve(g), rtol=1e-12)
    assert torch.allclose(convert_grid(moved, edm, VP), g, rtol=1e-10)
    assert math.isclose(float(moved[0]), 152.17, rel_tol=1e-4)  # GEO §1.1: VP-linear range σ ∈ [0.01049, 152.17]

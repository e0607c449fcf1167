"""Weighted-sum degradation study (NI spec §2): the statistic, its fast grid path, the spec's table, the CLI step."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from diffrepro.analysis import degradation as dg
from diffrepro.diffusion.optimal import OptimalDenoiser
from diffrepro.diffusion.schedules import make_schedule

F64 = torch.float64


def gaussian_cell(dim: int, n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    data = dg.gaussian_data(n, dim, gen)
    return data, torch.arange(n), torch.randn(n, dim, generator=gen, dtype=F64)


@pytest.mark.parametrize("dim, step, expected", [(3072, 700, 0.898), (512, 500, 0.998)])
def test_spec_table_iid_gaussian_exact_posterior(dim, step, expected):
    """NI §2.3 table: N = 1000 iid N(0, I), VP discrete, exact posterior, one noise draw (±0.05)."""
    vp = make_schedule("vp_discrete")
    data, sources, noise = gaussian_cell(dim, 1000, seed=dim)
    posterior = dg.DenoiserPosterior(OptimalDenoiser(data, vp).log_weights, data, sources, noise)
    (row,) = dg.degradation_curve(posterior, vp, [step], sources)
    assert abs(row["mean_max_weight"] - expected) <= 0.05
    assert row["noise_ratio"] == pytest.approx({700: 12.0, 500: 3.44}[step], rel=0.01)


def test_degradation_rises_with_dimension_and_falls_with_t():
    """NI §8 claim 11 at N = 300: more dimensions → more weight on one sample; more noise → less."""
    vp = make_schedule("vp_discrete")
    curves = {}
    for dim in (8, 128, 1024):
        data, sources, noise = gaussian_cell(dim, 300, seed=1)
        rows = dg.degradation_curve(dg.SourcePosterior(data, sources, noise), vp, [300, 500, 700], sources)
        curves[dim] = [r["mean_max_weight"] for r in rows]
    for t_index in range(3):
        assert curves[8][t_index] <= curves[128][t_index] + 1e-12 <= curves[1024][t_index] + 2e-12
    for dim, vals in curves.items():
        assert vals[0] >= vals[1] >= vals[2], dim
    assert curves[8][1] < 0.1 and curves[1024][1] > 0.99


@pytest.mark.parametrize("schedule_name", ["vp_discrete", "flow"])
@pytest.mark.parametrize("variant", ["exact", "unscaled"])
def test_gram_factorisation_equals_optimal_denoiser(schedule_name, variant):
    schedule = make_schedule(schedule_name)
    gen = torch.Generator().manual_seed(3)
    data = torch.randn(40, 12, generator=gen, dtype=F64)
    sources = torch.tensor([0, 5, 5, 39])
    noise = torch.randn(4, 12, generator=gen, dtype=F64)
    fast = dg.SourcePosterior(data, sources, noise)
    ref = dg.DenoiserPosterior(OptimalDenoiser(data, schedule).log_weights, data, sources, noise)
    for step in (50, 300, 600, 950):
        t = dg.timestep_to_t(schedule, step)
        args = (t, schedule.alpha(t), schedule.sigma(t), variant)
        fast_w, ref_w = torch.softmax(fast.logits(*args), 1), torch.softmax(ref.logits(*args), 1)
        assert torch.allclose(fast_w, ref_w, atol=1e-12, rtol=0)


def test_unscaled_variant_is_the_paper_code_query():
    """NI §2.2: the code compares the raw x_t (not x_t/α) with x_j at width σ/α."""
    vp = make_schedule("vp_discrete")
    gen = torch.Generator().manual_seed(4)
    data = torch.randn(30, 5, generator=gen, dtype=F64)
    sources, noise = torch.arange(30), torch.randn(30, 5, generator=gen, dtype=F64)
    t = dg.timestep_to_t(vp, 400)
    a, s = vp.alpha(t), vp.sigma(t)
    x_t = a * data + s * noise
    by_hand = torch.log_softmax(-torch.cdist(x_t, data) ** 2 / (2 * (s / a) ** 2), dim=1)
    got = torch.log_softmax(dg.SourcePosterior(data, sources, noise).logits(t, a, s, "unscaled"), 1)
    assert torch.allclose(got, by_hand, atol=1e-9)
    exact = torch.log_softmax(dg.SourcePosterior(data, sources, noise).logits(t, a, s, "exact"), 1)
    assert not torch.allclose(got, exact, atol=1e-3)


def test_weight_statistics_by_hand():
    w = torch.tensor([[0.95, 0.05, 0.0], [0.2, 0.35, 0.45], [1 / 3, 1 / 3, 1 / 3]], dtype=F64)
    stats = dg.weight_statistics(w.log(), torch.tensor([0, 1, 2]), bins=10)
    assert stats["mean_max_weight"] == pytest.approx((0.95 + 0.45 + 1 / 3) / 3)
    assert stats["frac_own_gt_0_9"] == pytest.approx(1 / 3)
    assert stats["mean_own_weight"] == pytest.approx((0.95 + 0.35 + 1 / 3) / 3)
    assert stats["frac_argmax_source"] == pytest.approx(1 / 3)  # row 3: argmax is index 0 on a tie
    entropy = [-(0.95 * math.log(0.95) + 0.05 * math.log(0.05)), -sum(p * math.log(p) for p in (0.2, 0.35, 0.45)),
               math.log(3)]
    assert stats["mean_entropy"] == pytest.approx(sum(entropy) / 3)
    assert sum(stats["hist_max"]) == pytest.approx(1.0)
    assert stats["hist_max"][9] == pytest.approx(1 / 3) and stats["hist_own"][3] == pytest.approx(2 / 3)


def test_critical_timestep_interpolates_and_flags_no_crossing():
    assert dg.critical_timestep([100, 200, 300], [1.0, 0.95, 0.85], 0.9) == pytest.approx(250.0)
    assert dg.critical_timestep([300, 100, 200], [0.85, 1.0, 0.95], 0.9) == pytest.approx(250.0)
    assert math.isnan(dg.critical_timestep([100, 200], [0.5, 0.1], 0.9))   # degraded nowhere on the grid
    assert math.isnan(dg.critical_timestep([100, 200], [1.0, 0.99], 0.9))  # degraded everywhere


def test_rule_of_thumb_solves_its_equation_and_grows_with_dimension():
    n = 1000
    for dim in (8, 512, 3072):
        s = dg.rule_of_thumb_ratio(dim, n)
        lhs = dim / s**2
        rhs = math.log(n) + math.sqrt(2 * dim) / s * math.sqrt(2 * math.log(n))
        assert lhs == pytest.approx(rhs, rel=1e-12)
    vp = make_schedule("vp_discrete")
    steps = [dg.rule_of_thumb_timestep(vp, d, n) for d in (8, 32, 128, 512, 3072)]
    assert steps == sorted(steps)
    # it lands between the spec table's grid points around the measured crossing: D = 512 crosses 0.9 in (500, 600)
    assert 450 < dg.rule_of_thumb_timestep(vp, 512, n) < 600


def test_timestep_mapping_matches_spec_noise_ratios():
    """NI §1.4: σ/α at t = 200..900 of the discrete VP chain; flow data scale linspace(1, 1e-5, 1000)."""
    vp, flow = make_schedule("vp_discrete"), make_schedule("flow")
    spec = [0.724, 1.24, 2.04, 3.44, 6.17, 12.0, 25.7, 60.8]
    for step, ratio in zip(range(200, 1000, 100), spec):
        assert vp.sigma_ve(dg.timestep_to_t(vp, step)) == pytest.approx(ratio, rel=0.01)
        assert dg.t_to_timestep(vp, dg.timestep_to_t(vp, step)) == pytest.approx(step, abs=1e-9)
    scale = torch.linspace(1, 1e-5, 1000, dtype=F64)
    for step in (0, 500, 999):
        t = dg.timestep_to_t(flow, step)
        assert flow.alpha(t) == pytest.approx(float(scale[step]), abs=1e-12)
        assert dg.t_to_timestep(flow, t) == pytest.approx(step, abs=1e-9)


def test_subspace_and_upsampled_data():
    gen = torch.Generator().manual_seed(5)
    x = dg.subspace_data(2000, 64, 4, gen)
    assert torch.linalg.matrix_rank(x) == 4
    assert x.var(0).mean() == pytest.approx(1.0, abs=0.1)
    img = torch.randn(3, 1, 8, 8, generator=gen, dtype=F64)
    up = dg.upsample_images(img, 4)
    assert up.shape == (3, 1, 32, 32) and torch.equal(up[:, :, ::4, ::4], img)
    d_small, d_big = torch.cdist(img.flatten(1), img.flatten(1)), torch.cdist(up.flatten(1), up.flatten(1))
    assert torch.allclose(d_big, 4 * d_small)  # D × 16, squared gaps × 16: same information, larger margins


def test_trained_vs_target_with_the_optimal_denoiser_itself():
    """A "model" equal to D* sits at distance 0 from the weighted mean; the source gap is D*'s own."""
    vp = make_schedule("vp_linear")
    gen = torch.Generator().manual_seed(6)
    data = torch.randn(50, 1, 2, 2, generator=gen, dtype=F64)
    optimal = OptimalDenoiser(data, vp)
    noise = torch.randn(10, 1, 2, 2, generator=gen, dtype=F64)
    rows = dg.trained_vs_target(optimal, optimal, optimal.log_weights, data[:10], vp, [0.05, 0.5, 0.95], noise)
    for r in rows:
        assert r["model_to_mean"] == pytest.approx(0.0, abs=1e-12)
        assert r["model_to_source"] == pytest.approx(r["mean_to_source"], abs=1e-12)
    assert rows[0]["mean_to_source"] < rows[-1]["mean_to_source"]
    assert rows[0]["mean_max_weight"] > rows[-1]["mean_max_weight"]


def test_study_degradation_step_writes_section(tmp_path):
    from diffrepro.cli import main

    cfg = yaml.safe_load(open("params/smoke.yaml"))
    cfg["studies"] = {"degradation": {"schedules": ["vp_discrete"], "timesteps": [200, 500, 800],
                                      "variants": ["exact", "unscaled"],
                                      "sets": [{"kind": "gaussian", "dims": [4, 256], "n": 60},
                                               {"kind": "subspace", "rank": 2, "dims": [64], "n": 60}]}}
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "deg"
    assert main(["study", "degradation", "--params", str(params), "--out-dir", str(out)]) == 0
    doc = json.loads((out / "section.json").read_text())
    assert doc["id"] == "ni_degradation" and doc["paper"] == "NI"
    table = next(t for t in doc["tables"] if t["id"] == "degradation_mean_max_weight_vp_discrete")
    assert table["columns"] == ["data", "D", "N", "t=200", "t=500", "t=800"] and len(table["rows"]) == 3
    assert all((out / f).exists() for f in ("cells.parquet", "cells.csv", "critical_t.csv", "critical_t.png"))
    assert all(Path(f["path"]).exists() for f in doc["figures"])
    # a set naming a dataset without --data is a user error naming the key
    cfg["studies"]["degradation"]["sets"] = [{"kind": "dataset", "dataset": "digits"}]
    params.write_text(yaml.safe_dump(cfg))
    assert main(["study", "degradation", "--params", str(params), "--out-dir", str(out)]) == 2

"""GPU readiness check and the adapter path's per-time tables (issue: published checkpoints, item 5)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from diffrepro.bench.edm_format import EDMDenoiser, edm_denoiser, vp_schedule
from diffrepro.cli import main
from diffrepro.diffusion.denoisers import Rescheduled, network_denoiser, reschedule
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.samplers import get_sampler, make_grid
from diffrepro.samplers.sweep import native_schedule, run_cell

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def test_bench_gpu_without_cuda_says_why_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "gpu"]) == 0
    out = capsys.readouterr().out
    assert "no CUDA here" in out and "nothing measured" in out


def test_make_gpu_check_runs_bench_gpu():
    dry = subprocess.run(["make", "-n", "gpu-check"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "diffrepro bench gpu" in dry
    with_model = subprocess.run(["make", "-n", "gpu-check", "MODEL=results/models/m/model.pt"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout
    assert "diffrepro bench gpu --model results/models/m/model.pt" in with_model


def test_bench_gpu_code_path_on_cpu(capsys):
    """The CUDA path's code walked on CPU at toy size: one row per sampler with the counted NFE. (Samplers outside
    the diffusers row keep diffusers' import out of the fast suite; `bench samplers` runs that row.)"""
    assert main(["bench", "gpu", "--device", "cpu", "--batch", "2", "--channels", "4", "--image-size", "4",
                 "--nfe", "4", "--repeats", "1", "--samplers", "ddim", "ipndm", "dpm3"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["ddim"], ["ipndm"])}
    assert rows["ddim"][1] == "4" and rows["ipndm"][1] == "4"  # NFE measured by the counter
    assert float(rows["ddim"][5]) == 0.0  # autocast is a no-op on CPU: fp32 and "bf16" samples agree exactly
    assert "dpm3       skipped: no step count gives exactly NFE 4" in out


def _tiny_net(scale=0.3):
    w = torch.randn(6, 6, generator=torch.Generator().manual_seed(3), dtype=F64) * scale
    return lambda x, t: torch.tanh(x @ w) * (1 + t[:, None])


@pytest.mark.parametrize("schedule_name,param,sampler", [
    ("vp_linear", "eps", "dpm3"), ("cosine", "v", "heun"), ("vp_discrete", "edm", "dpmpp2m"), ("vp_linear", "x0", "ddpm")])
def test_prepared_tables_give_the_per_call_result(schedule_name, param, sampler):
    """run_cell fills the adapter's per-time tables for every call at once; the samples equal a run that computes
    every coefficient at its call (fresh denoiser, no prepare) to float64 rounding."""
    sched = make_schedule(schedule_name)
    spec = get_sampler(sampler)
    grid = make_grid(spec.default_grid, sched, 5)
    eps0 = torch.randn(8, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    fast, _ = run_cell(network_denoiser(_tiny_net(), sched, param), sched, sampler, grid, eps0, sde_seed=1)
    native = native_schedule(spec.coords, sched)
    from diffrepro.samplers import convert_grid
    from diffrepro.samplers.solvers import TorchNoise

    g = convert_grid(grid, sched, native).tolist()
    den = reschedule(network_denoiser(_tiny_net(), sched, param), sched, native)
    slow = spec.bind()(den, eps0 * float(native.sigma(g[0])), g, native,
                       TorchNoise(torch.Generator().manual_seed(1)))
    slow = slow / float(native.alpha(g[-1]))
    assert float((fast - slow).abs().max()) <= 1e-12


def test_edm_format_denoiser_expresses_itself_in_edm_coordinates():
    """reschedule asks an EDM-format denoiser for its own EDM form (x_ve, σ: no rescaling); it equals the generic
    equal-λ rescaling of the VP form."""
    w = torch.randn(6, 6, generator=torch.Generator().manual_seed(5), dtype=F64) * 0.2
    net = lambda x, sigma, class_labels=None: x / (1 + sigma[:, None] ** 2) + torch.tanh(x @ w)  # noqa: E731
    vp = vp_schedule()
    edm = native_schedule("edm", vp)
    direct = reschedule(edm_denoiser(net, vp), vp, edm)
    assert isinstance(direct, EDMDenoiser) and direct.schedule is edm
    generic = Rescheduled(edm_denoiser(net, vp), vp, edm)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(6), dtype=F64) * 3.0
    for t in (0.01, 0.7, 5.0, 60.0):
        assert torch.allclose(direct(x, t), generic(x, t), rtol=0, atol=1e-12)

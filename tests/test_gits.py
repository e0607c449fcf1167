"""GITS (GEO §3.2): the dynamic program equals brute force; on a Gaussian-mixture bed the GITS grid lowers the
trajectory error of Euler and iPNDM at NFE 4–10 versus the EDM ρ = 7 grid."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from diffrepro.diffusion.gaussian import GaussianMixtureDenoiser
from diffrepro.diffusion.schedules import make_schedule
from diffrepro.metrics import trajectory_error
from diffrepro.samplers import make_grid
from diffrepro.samplers import solvers as S
from diffrepro.samplers.gits import GITS, brute_force_schedule, dp_schedule

F64 = torch.float64
EDM = make_schedule("edm", sigma_min=0.002, sigma_max=80.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("coeff", [0.8, 1.0, 1.15])
def test_dp_equals_brute_force(seed, coeff):
    rng = np.random.default_rng(seed)
    n = 10
    cost = np.triu(rng.normal(size=(n, n)) + 0.5, k=1)  # signed costs, like the `dev` metric
    cost[np.tril_indices(n)] = np.inf
    for steps in range(1, n):
        dp = dp_schedule(cost, steps, coeff)
        bf = brute_force_schedule(cost, steps, coeff)
        value = lambda p: sum(coeff**k * cost[a, b] for k, (a, b) in enumerate(zip(p[:-1], p[1:])))  # noqa: E731
        assert len(dp) == steps + 1 and dp[0] == 0 and dp[-1] == n - 1
        assert dp == bf or abs(value(dp) - value(bf)) < 1e-12


def gmm_bed(d=16, components=8, seed=0):
    """GEO Appendix A.2-style mixture: means U(−0.6, 0.6), 4 covariance eigenvalues in [0.02, 0.1], the rest 1e-4."""
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(components, d, generator=g, dtype=F64) * 1.2 - 0.6
    covs = []
    for _ in range(components):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
        ev = torch.full((d,), 1e-4, dtype=F64)
        ev[:4] = torch.rand(4, generator=g, dtype=F64) * 0.08 + 0.02
        covs.append(q @ torch.diag(ev) @ q.T)
    return GaussianMixtureDenoiser(torch.ones(components), means, torch.stack(covs), EDM)


def test_gits_beats_edm_grid_for_euler_and_ipndm():
    den = gmm_bed()
    warm = torch.randn(128, 16, generator=torch.Generator().manual_seed(1), dtype=F64) * 80.0
    gits = GITS(den, EDM, make_grid("edm", EDM, 60), warm, coeff=1.15, metric="dev", teacher="ipndm")
    x = torch.randn(96, 16, generator=torch.Generator().manual_seed(2), dtype=F64) * 80.0  # not the warm-up noise
    ref = S.heun(den, x, make_grid("edm", EDM, 300).tolist(), EDM)
    half = S.heun(den, x, make_grid("edm", EDM, 150).tolist(), EDM)
    assert trajectory_error(half, ref) < 1e-3  # the reference is converged far below the errors compared
    rows = []
    for nfe in (4, 6, 8, 10):
        grid = gits(nfe)
        assert gits.indices[nfe][0] == 0 and gits.indices[nfe][-1] == 60
        assert float(grid[1]) < 30.1833 * 0.7  # GITS takes a big first step from σ_max (GEO §7 claim 17)
        for name in ("euler", "ipndm"):
            fn = getattr(S, name)
            e_gits = trajectory_error(fn(den, x, grid.tolist(), EDM), ref)
            e_edm = trajectory_error(fn(den, x, make_grid("edm", EDM, nfe).tolist(), EDM), ref)
            rows.append((nfe, name, e_gits, e_edm))
    print("\nNFE sampler GITS EDM-rho7\n" + "\n".join(f"{n} {s} {a:.4f} {b:.4f}" for n, s, a, b in rows))
    assert all(a < b for _, _, a, b in rows), rows


def test_dev_and_l2_costs_give_nearly_the_same_schedules():
    """GEO §7 claim 18 (toy: identical or ±1 index)."""
    from diffrepro.samplers.gits import cost_matrix, teacher_trajectories

    warm = torch.randn(64, 16, generator=torch.Generator().manual_seed(1), dtype=F64) * 80.0
    states, dirs, sig = teacher_trajectories(gmm_bed(), EDM, make_grid("edm", EDM, 60), warm)
    dev, l2 = cost_matrix(states, dirs, sig, "dev"), cost_matrix(states, dirs, sig, "l2")
    for steps in (4, 6, 8, 10):
        a, b = dp_schedule(dev, steps), dp_schedule(l2, steps)
        assert max(abs(i - j) for i, j in zip(a, b)) <= 2, (a, b)

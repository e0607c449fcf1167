"""Closed-form Gaussian / mixture denoisers vs Monte Carlo, and the closed-form PF-ODE map vs a fine ODE solve."""
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from diffrepro.diffusion.gaussian import GaussianDenoiser, GaussianMixtureDenoiser, gaussian_ode_solution
from diffrepro.diffusion.schedules import make_schedule

F64 = torch.float64


def _random_cov(d, gen):
    a = torch.randn(d, d, generator=gen, dtype=F64)
    return a @ a.T / d + 0.2 * torch.eye(d, dtype=F64)


def _mc_posterior_mean(x_t, prior_draws, alpha, sigma):
    """Self-normalised importance sampling: E[x0 | x_t] with x0 ~ prior, weights N(x_t; α x0, σ² I)."""
    logw = -((x_t[:, None, :] - alpha * prior_draws[None]) ** 2).sum(-1) / (2 * sigma**2)
    w = torch.softmax(logw, dim=1)
    mean = w @ prior_draws
    ess = 1.0 / (w**2).sum(1)
    return mean, ess


@pytest.mark.parametrize("name,t", [("vp_linear", 0.3), ("flow", 0.5), ("edm", 1.0), ("vp_discrete", 0.4)])
def test_gaussian_denoiser_matches_monte_carlo(name, t):
    gen = torch.Generator().manual_seed(0)
    d = 3
    mean = torch.tensor([0.5, -1.0, 2.0], dtype=F64)
    cov = _random_cov(d, gen)
    sched = make_schedule(name)
    den = GaussianDenoiser(mean, cov, sched)
    alpha, sigma = sched.alpha(t), sched.sigma(t)
    prior = mean + torch.randn(400_000, d, generator=gen, dtype=F64) @ torch.linalg.cholesky(cov).T
    x0, eps = torch.randn(2, 4, d, generator=gen, dtype=F64)
    x_t = alpha * (mean + x0) + sigma * eps
    mc, ess = _mc_posterior_mean(x_t, prior, alpha, sigma)
    assert float(ess.min()) > 2000
    # MC standard error ≈ posterior std / sqrt(ESS) ≤ sqrt(max eig Σ / ESS); allow 5 standard errors
    tol = 5 * float(torch.linalg.eigvalsh(cov).max().sqrt()) / float(ess.min()) ** 0.5
    assert torch.allclose(den(x_t, t), mc, atol=tol, rtol=0)


def test_mixture_denoiser_matches_monte_carlo_and_restricts_by_label():
    gen = torch.Generator().manual_seed(1)
    d = 2
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=F64)
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0], [0.0, -2.5]], dtype=F64)
    covs = torch.stack([_random_cov(d, gen) * s for s in (0.3, 0.5, 0.2)])
    sched = make_schedule("vp_linear")
    t = 0.35
    den = GaussianMixtureDenoiser(weights, means, covs, sched)
    k = torch.multinomial(weights, 600_000, replacement=True, generator=gen)
    chol = torch.linalg.cholesky(covs)
    prior = means[k] + torch.einsum("nij,nj->ni", chol[k], torch.randn(len(k), d, generator=gen, dtype=F64))
    x_t = torch.tensor([[-1.0, 0.3], [0.8, 0.4], [0.0, -1.0], [1.5, -1.5]], dtype=F64)
    alpha, sigma = sched.alpha(t), sched.sigma(t)
    mc, ess = _mc_posterior_mean(x_t, prior, alpha, sigma)
    assert float(ess.min()) > 2000
    assert torch.allclose(den(x_t, t), mc, atol=5 * 2.0 / float(ess.min()) ** 0.5, rtol=0)
    # component label y restricts the posterior to that Gaussian; y = K (null label) means unconditional
    single = GaussianDenoiser(means[1], covs[1], sched)
    assert torch.allclose(den(x_t, t, y=1), single(x_t, t), atol=1e-12)
    y = torch.tensor([1, 3, 1, 3])
    out = den(x_t, t, y=y)
    assert torch.allclose(out[0], single(x_t, t)[0], atol=1e-12) and torch.allclose(out[1], den(x_t, t)[1], atol=1e-12)
    # the component posterior and the marginal density are consistent with each other
    resp = den.posterior_component_weights(x_t, t)
    assert torch.allclose(resp.sum(1), torch.ones(4, dtype=F64))


def test_isotropic_stds_equal_diagonal_and_full_covariances():
    sched = make_schedule("cosine")
    means = torch.tensor([[0.0, 1.0, 2.0], [1.0, -1.0, 0.0]], dtype=F64)
    stds = torch.tensor([0.3, 0.7], dtype=F64)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    a = GaussianMixtureDenoiser([0.4, 0.6], means, stds=stds, schedule=sched)
    b = GaussianMixtureDenoiser([0.4, 0.6], means, (stds[:, None] ** 2).expand(2, 3), sched)
    c = GaussianMixtureDenoiser([0.4, 0.6], means, torch.diag_embed((stds[:, None] ** 2).expand(2, 3)), sched)
    for t in (0.1, 0.5, 0.9):
        assert torch.allclose(a(x, t), b(x, t), atol=1e-12) and torch.allclose(a(x, t), c(x, t), atol=1e-12)
        assert torch.allclose(a.marginal_log_prob(x, t), c.marginal_log_prob(x, t), atol=1e-10)


def test_denoiser_limits_and_dtype():
    sched = make_schedule("flow")
    mean, cov = torch.tensor([1.0, -1.0], dtype=F64), torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    den = GaussianDenoiser(mean, cov, sched)
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(den(x.double(), 1.0), mean.expand(3, 2))  # α = 0: pure noise → prior mean
    assert torch.allclose(den(x.double(), 1e-9), x.double() / sched.alpha(1e-9), atol=1e-6)  # σ → 0: identity
    assert den(x, 0.5).dtype == torch.float32 and den(x.reshape(3, 2, 1), 0.5).shape == (3, 2, 1)


def _pf_ode_numerical(x, t0, t1, den, sched):
    """GEO §1.1 PF-ODE in VE coordinates, dx_ve/dσ = (x_ve − D)/σ, integrated in u = ln σ (dx_ve/du = x_ve − D)
    by DOP853 to rtol 1e-10; the denoiser is evaluated in native coordinates at x = α·x_ve, t = t(σ)."""
    shape = x.shape

    def rhs(u, y):
        t = sched.t_from_sigma_ve(float(np.exp(u)))
        x_ve = torch.from_numpy(y).reshape(shape)
        return (x_ve - den(sched.alpha(t) * x_ve, t)).reshape(-1).numpy()

    u0, u1 = np.log(sched.sigma_ve(t0)), np.log(sched.sigma_ve(t1))
    sol = solve_ivp(rhs, (u0, u1), (x / sched.alpha(t0)).reshape(-1).numpy(), method="DOP853", rtol=1e-10, atol=1e-11)
    assert sol.success
    return sched.alpha(t1) * torch.from_numpy(sol.y[:, -1]).reshape(shape)


@pytest.mark.parametrize("name,t0,t1", [("vp_linear", 1.0, 0.01), ("flow", 0.999, 0.02), ("edm", 20.0, 0.05),
                                        ("cosine", 0.95, 0.05), ("vp_discrete", 0.05, 0.8)])
def test_ode_solution_matches_numerical_integration(name, t0, t1):
    gen = torch.Generator().manual_seed(4)
    d = 3
    mean = torch.tensor([0.3, -0.2, 1.0], dtype=F64)
    cov = _random_cov(d, gen)
    sched = make_schedule(name)
    x = sched.alpha(t0) * mean + torch.randn(5, d, generator=gen, dtype=F64) * sched.sigma(t0)
    exact = gaussian_ode_solution(x, t0, t1, mean, cov, sched)
    numeric = _pf_ode_numerical(x, t0, t1, GaussianDenoiser(mean, cov, sched), sched)
    assert torch.allclose(exact, numeric, atol=1e-7, rtol=1e-7)
    # diagonal covariance path equals the full path on a diagonal matrix
    diag = torch.diagonal(cov)
    assert torch.allclose(gaussian_ode_solution(x, t0, t1, mean, diag, sched),
                          gaussian_ode_solution(x, t0, t1, mean, torch.diag(diag), sched), atol=1e-12)


def test_ode_solution_from_pure_noise_and_round_trip():
    sched = make_schedule("flow")
    mean, cov = torch.tensor([2.0, -1.0], dtype=F64), torch.tensor([[0.5, 0.1], [0.1, 0.2]], dtype=F64)
    eps = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    x0 = gaussian_ode_solution(eps, 1.0, 0.0, mean, cov, sched)  # α(1) = 0: starts from N(0, I) exactly
    assert torch.allclose(x0.mean(0), mean, atol=0.03)
    assert torch.allclose(torch.cov(x0.T), cov, atol=0.03)
    mid = gaussian_ode_solution(eps, 1.0, 0.4, mean, cov, sched)
    assert torch.allclose(gaussian_ode_solution(mid, 0.4, 1.0, mean, cov, sched), eps, atol=1e-10)
    assert np.isfinite(x0.numpy()).all()

"""MDM core (spec research/mdm.md §6 Stage A): stationarity, exact kernels, Stage A ELBO values, estimator, boundary
term, importance time, reverse sampling. Small float64 problems; the whole file runs in well under a minute."""
import math

import pytest
import torch

from diffrepro.mdm.elbo import (ImportanceTime, aux_entropy, bits_per_dim, boundary_term, dequantise_logit, elbo,
                                prior_cross_entropy)
from diffrepro.mdm.linear import (F64, SERIES_TERMS, BetaSchedule, LinearDiffusion, drift_matrix, fixed_matrices,
                                  initial_covariance, num_variables, series_tables, van_loan)
from diffrepro.mdm.sampling import sample

FIXED = ["vp", "cld", "alda", "malda"]


def random_qd(k, gen):
    q = torch.randn(k, k, generator=gen, dtype=F64)
    d = torch.nn.functional.softplus(torch.randn(k, generator=gen, dtype=F64)) + 1e-3
    return q - q.T, torch.diag(d)


# --- A1 stationarity -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 4])
def test_stationarity_identity_and_invariant_kernel(k):
    gen = torch.Generator().manual_seed(k)
    for _ in range(200):
        q, d = random_qd(k, gen)
        var = torch.rand(k, generator=gen, dtype=F64) * 2 + 0.1       # general diagonal Σ∞
        sig_inf = torch.diag(var)
        a0 = drift_matrix(q, d, var)
        assert torch.allclose(a0 @ sig_inf + sig_inf @ a0.T + 2 * d, torch.zeros(k, k, dtype=F64), atol=1e-12)
    # the exact kernel started at N(0, Σ∞) stays there (a non-trivial consequence of the identity)
    phi, noise = van_loan(a0, d, torch.tensor([0.3, 2.0, 5.05], dtype=F64))
    assert torch.allclose(phi @ sig_inf @ phi.mT + noise, sig_inf.expand(3, k, k), atol=1e-12)


def test_fixed_drift_matrices_match_spec():
    expected = {"vp": [[-0.5]], "cld": [[0, 1], [-1, -2]], "alda": [[0, 1, 0], [-1, 0, 1], [0, -1, -1]],
                "malda": [[0, 1, 1], [-1, -2, 1], [-1, -1, -2]]}
    for name, a in expected.items():
        assert torch.equal(LinearDiffusion(name).drift(), torch.tensor(a, dtype=F64))
        assert num_variables(name) == len(a)
    assert num_variables("learned3") == 3


# --- A2 kernel algebra ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", FIXED + ["learned3"])
def test_kernel_matches_closed_form(name):
    dif = LinearDiffusion(name, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([1e-3, 0.1, 0.5, 1.0], dtype=F64)
    phi, sigma = dif.kernel(t)
    sigma0 = initial_covariance(dif.k, 0.01, hybrid=True)
    eye = torch.eye(dif.k, dtype=F64)
    closed = phi @ sigma0 @ phi.mT + eye - phi @ phi.mT
    assert (sigma - closed)[1:].abs().max() < 1e-12                      # spec: ≤ 1.3e-13 observed
    assert (sigma - closed)[0].abs().max() < 1e-12


def test_vp_kernel_is_closed_form():
    t = torch.linspace(1e-3, 1, 7, dtype=F64)
    b = BetaSchedule().integral(t)
    phi, sigma = LinearDiffusion("vp").kernel(t)
    assert torch.allclose(phi[:, 0, 0], torch.exp(-b / 2), rtol=1e-13)
    assert torch.allclose(sigma[:, 0, 0], -torch.expm1(-b), rtol=1e-12)


def mp_kernel(a0, d, b, dps=60):
    """Reference Φ and noise covariance from a 60-digit mpmath block exponential."""
    import mpmath

    mpmath.mp.dps = dps
    k = a0.shape[0]
    m = mpmath.zeros(2 * k, 2 * k)
    for i in range(k):
        for j in range(k):
            m[i, j] = mpmath.mpf(float(a0[i, j])) * b
            m[i, k + j] = 2 * mpmath.mpf(float(d[i, j])) * b
            m[k + i, k + j] = -mpmath.mpf(float(a0[j, i])) * b
    e = mpmath.expm(m)
    phi = e[:k, :k]
    noise = e[:k, k:] * phi.T
    as_t = lambda a: torch.tensor([[float(a[i, j]) for j in range(k)] for i in range(k)], dtype=F64)
    return as_t(phi), as_t(noise)


@pytest.mark.parametrize("name", FIXED)
def test_kernel_is_accurate_at_small_and_large_t_without_jitter(name):
    """Pitfall 1: at t = 1e-3 the x-variance of D00 = 0 processes is tiny (noise part ~B³, ~B⁵ for ALDA). Every
    entry must match a 60-digit reference to 1e-9 relative (t ≥ 0.3: 1e-12 of the largest entry); the hybrid Σ is
    PD in float64 without jitter."""
    dif = LinearDiffusion(name)
    q, d = fixed_matrices(name)
    a0 = drift_matrix(q, d)
    t = torch.tensor([1e-3, 0.02, 0.3, 1.0], dtype=F64)
    b = BetaSchedule().integral(t)
    assert float(b[0]) == pytest.approx(1.0495e-4, rel=1e-4)
    phi, noise = van_loan(a0, d, b)
    table_phi, table_noise = dif.kernel(t, hybrid=False)   # the Taylor table the fixed diffusions use (Σ₀ = 0)
    for i in range(len(t)):
        ref_phi, ref_noise = mp_kernel(a0, d, float(b[i]))
        for got, ref in ((phi[i], ref_phi), (noise[i], ref_noise), (table_phi[i], ref_phi), (table_noise[i], ref_noise)):
            err = (got - ref).abs()   # small t: entry-wise relative; t ≥ 0.3: relative to the largest entry
            tol = 1e-9 * ref.abs() + (1e-12 * ref.abs().max() if t[i] >= 0.3 else 0.0)
            assert bool((err <= tol).all()), (i, err / ref.abs())
    _, sigma = dif.kernel(t[:1])
    _, info = torch.linalg.cholesky_ex(sigma[0])
    assert int(info) == 0
    expected_xx = {"vp": 1.05e-4, "cld": 1.1e-10, "alda": 1.1e-10, "malda": 2.2e-10}[name]   # spec §3.2
    assert float(sigma[0, 0, 0]) == pytest.approx(expected_xx, rel=0.05)


@pytest.mark.parametrize("name", FIXED)
def test_taylor_table_matches_van_loan_everywhere(name):
    """The fixed-diffusion kernel table (nodes b_j = j·h plus a Taylor remainder) equals the direct Van Loan kernel at
    random times, exactly on nodes and just either side of them, for both conditionings: 1e-12 of the largest entry
    (the block exponential itself is good to ~1e-13 at b = 5; the 60-digit check above bounds both)."""
    dif = LinearDiffusion(name)
    q, d = fixed_matrices(name)
    a0 = drift_matrix(q, d)
    table = dif._tables[True]
    nodes = torch.arange(1, 40, dtype=F64) * table.step
    b = torch.cat([torch.rand(300, generator=torch.Generator().manual_seed(1), dtype=F64) * 5.05,
                   nodes, nodes * (1 - 1e-12), nodes * (1 + 1e-12), torch.tensor([5.05], dtype=F64)])
    t = dif.beta.time_of_integral(b)
    ref_phi, ref_noise = van_loan(a0, d, dif.beta.integral(t))
    for hybrid in (True, False):
        phi, sigma = dif.kernel(t, hybrid=hybrid)
        ref_sigma = ref_phi @ initial_covariance(dif.k, dif.aux_var, hybrid) @ ref_phi.mT + ref_noise
        for got, ref in ((phi, ref_phi), (sigma, ref_sigma)):
            scale = ref.abs().amax(dim=(1, 2))
            assert float(((got - ref).abs().amax(dim=(1, 2)) / scale).max()) < 1e-12
    with pytest.raises(ValueError, match="beyond the kernel table"):
        dif.kernel(torch.tensor([1.5], dtype=F64))


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_series_tables_equal_the_recursions(k):
    """Doubling powers and the binomial form of K_k equal A₀^{m+1} = A₀A₀^m and K_{m+1} = A₀K_m + K_mA₀ᵀ (float64)."""
    q, d = random_qd(k, torch.Generator().manual_seed(10 + k))
    a0 = drift_matrix(q, d)
    powers, moments = series_tables(a0, d)
    p, m = torch.eye(k, dtype=F64), 2.0 * d
    for j in range(SERIES_TERMS):
        scale = max(float(p.abs().max()), float(m.abs().max()), 1.0)
        assert float((powers[j].reshape(k, k) - p).abs().max()) <= 1e-13 * scale
        assert float((moments[j].reshape(k, k) - m).abs().max()) <= 1e-13 * scale
        p, m = a0 @ p, a0 @ m + m @ a0.mT


@pytest.mark.parametrize("name", ["learned2", "learned3"])
def test_learned_kernel_stationary_form_matches_block_exponential(name):
    """Learned processes take N = Σ∞ − ΦΣ∞Φᵀ from one K×K exponential away from b = 0; it equals the 2K×2K Van Loan
    block exponential to 1e-12 of the largest entry at every t, with the gradient flowing to (Q, D)."""
    dif = LinearDiffusion(name, generator=torch.Generator().manual_seed(3))
    t = torch.cat([torch.tensor([1e-3, 0.05, 1.0], dtype=F64),
                   torch.rand(200, generator=torch.Generator().manual_seed(4), dtype=F64)])
    q, d = (m.detach() for m in dif.matrices())
    ref_phi, ref_noise = van_loan(drift_matrix(q, d), d, dif.beta.integral(t))
    phi, sigma = dif.kernel(t, hybrid=False)
    for got, ref in ((phi, ref_phi), (sigma, ref_noise)):
        err = (got.detach() - ref).abs().amax(dim=(1, 2)) / ref.abs().amax(dim=(1, 2))
        assert float(err.max()) < 1e-12
    sigma.sum().backward()
    assert all(p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in dif.parameters())


# --- A3 Monte-Carlo validation of the kernel ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cld", "malda", "alda"])
def test_kernel_matches_sde_simulation(name):
    """Simulate du = βA₀u ds + √(2βD) dW on [0, 1] with the stochastic Heun scheme (additive noise: weak order 2, so
    the discretisation bias is ≪ the MC error at 400 steps; plain Euler–Maruyama needs ~4000), x₀ = 1.5,
    v₀ ~ N(0, 0.01), 20k particles. Tolerances: mean 0.03, covariance 0.045 (≈ 4σ at this N; spec A3 uses 1e5
    particles with 0.01 / 0.02). A wrong kernel (Φ of the transposed drift, a missing factor 2 in D) misses by ≫ 0.1."""
    dif = LinearDiffusion(name)
    q, d = dif.matrices()
    a0, k = drift_matrix(q, d), dif.k
    gen = torch.Generator().manual_seed(1)
    n, steps = 20_000, 400
    u = torch.zeros(n, k, dtype=F64)
    u[:, 0] = 1.5
    u[:, 1:] = 0.1 * torch.randn(n, k - 1, generator=gen, dtype=F64)
    g = torch.sqrt(2 * torch.diagonal(d))
    checkpoints = {40: 0.1, 200: 0.5, 400: 1.0}
    ds = 1.0 / steps
    beta = lambda s: float(dif.beta.beta(torch.tensor(s)))
    for j in range(steps):
        b0, b1, bm = beta(j * ds), beta((j + 1) * ds), beta((j + 0.5) * ds)
        noise = math.sqrt(bm * ds) * torch.randn(n, k, generator=gen, dtype=F64) * g
        pred = u + b0 * ds * u @ a0.T + noise
        u = u + 0.5 * ds * (b0 * u + b1 * pred) @ a0.T + noise
        if j + 1 in checkpoints:
            phi, sigma = dif.kernel(torch.tensor([checkpoints[j + 1]], dtype=F64))
            mean = phi[0, :, 0] * 1.5
            assert (u.mean(0) - mean).abs().max() < 0.03
            assert (torch.cov(u.T) - sigma[0]).abs().max() < 0.045


# --- A4 terminal KL ordering ----------------------------------------------------------------------------------------
def test_terminal_kl_ordering_and_values():
    x = torch.tensor([0.0, 1.0, 2.944], dtype=F64)
    kl = {n: LinearDiffusion(n).terminal_kl(x) for n in FIXED}
    assert kl["malda"][2] < kl["cld"][2] < kl["vp"][2] < kl["alda"][2]
    assert float(kl["vp"][2]) == pytest.approx(0.0278, abs=2e-4)      # spec §3.2 table
    assert float(kl["alda"][2]) == pytest.approx(0.3375, abs=2e-4)
    assert float(kl["alda"][0]) == pytest.approx(0.0115, abs=2e-4)


# --- A5 tight ELBO for the exact score ------------------------------------------------------------------------------
def gaussian_marginal(dif, mu, s, t):
    phi, sigma = dif.kernel(t)
    c = phi[:, :, 0]
    return c * mu, sigma + s * s * c[:, :, None] * c[:, None, :], sigma


def analytic_elbo(dif, mu, s, t0=0.0, n=4001):
    """E_x ELBO with the optimal score: E log π(u_1) + ∫ β[tr(D P⁻¹) + tr A₀] dt + H[q(v₀)] (Simpson in t)."""
    t = torch.linspace(t0, 1, n, dtype=F64)
    _, p, _ = gaussian_marginal(dif, mu, s, t)
    q, d = dif.matrices()
    f = dif.beta.beta(t) * (torch.einsum("ij,nji->n", d, torch.linalg.inv(p)) + torch.trace(drift_matrix(q, d)))
    w = torch.ones(n, dtype=F64); w[1:-1:2] = 4; w[2:-1:2] = 2
    integral = (f * w).sum() * (1 - t0) / (n - 1) / 3
    prior = prior_cross_entropy(dif, torch.tensor([[mu]], dtype=F64))[0] - 0.5 * s * s * dif.kernel(
        torch.ones(1, dtype=F64))[0][0, :, 0].pow(2).sum()
    return float(prior + integral + aux_entropy(dif, 1)), p[-1]


STAGE_A = {  # spec §6 A5: E_x ELBO with the optimal score
    (0.5, 1.0): {"vp": -1.41974, "cld": -1.41926, "malda": -1.41895, "alda": -1.43701},
    (0.0, 0.1): {"vp": 0.88364, "cld": 0.88364, "malda": 0.88365, "alda": 0.87220},
}


@pytest.mark.parametrize("data", list(STAGE_A))
@pytest.mark.parametrize("name", ["vp", "cld", "malda", "alda"])
def test_exact_score_elbo_matches_stage_a_and_entropy_minus_kl(name, data):
    mu, s = data
    dif = LinearDiffusion(name)
    value, p1 = analytic_elbo(dif, mu, s)
    mean1 = dif.kernel(torch.ones(1, dtype=F64))[0][0, :, 0] * mu
    kl = 0.5 * (torch.trace(p1) + mean1.pow(2).sum() - dif.k - torch.logdet(p1))
    truth = -0.5 * math.log(2 * math.pi * math.e * s * s)
    assert value == pytest.approx(truth - float(kl), abs=1e-6)
    assert value == pytest.approx(STAGE_A[data][name], abs=1e-5)


class ExactEps(torch.nn.Module):
    """ε*(u, t) = −L_tᵀ s*(u) = L_tᵀ P_t⁻¹(u − m_t) for 1-D Gaussian data N(μ, s²)."""

    def __init__(self, dif, mu, s):
        super().__init__()
        self.dif, self.mu, self.s = dif, mu, s

    def forward(self, u, t):
        m, p, sigma = gaussian_marginal(self.dif, self.mu, self.s, t.double())
        chol = torch.linalg.cholesky(sigma)
        z = torch.linalg.solve(p, u.double()[:, :, 0] - m)
        return (chol.mT @ z[:, :, None])


@pytest.mark.parametrize("name", ["vp", "cld", "malda"])
def test_elbo_estimator_is_unbiased_for_the_exact_score(name):
    """The §2.4 estimator (importance t, hybrid kernel, trace terms) averages to the analytic ELBO on [t_min, 1]."""
    mu, s, n = 0.5, 1.0, 60_000
    dif = LinearDiffusion(name)
    gen = torch.Generator().manual_seed(3)
    x = (mu + s * torch.randn(n, 1, generator=gen, dtype=F64))
    with torch.no_grad():
        est = elbo(ExactEps(dif, mu, s), dif, x, ImportanceTime(), generator=gen)
    target, _ = analytic_elbo(dif, mu, s, t0=1e-3)
    # the data term: the estimator sees sampled x; correct the prior's E x² to the sample's
    se = float(est.std()) / math.sqrt(n)
    assert abs(float(est.mean()) - target) < 3.5 * se + 2e-3, (float(est.mean()), target, se)


def test_aux_entropy_value():
    """Spec §2.4 step 6: E[−log q(v₀)] = −0.8836 nats per coordinate per auxiliary at σ₀² = 0.01."""
    assert aux_entropy(LinearDiffusion("cld"), 1) == pytest.approx(-0.8836, abs=1e-4)
    assert aux_entropy(LinearDiffusion("malda"), 64) == pytest.approx(2 * 64 * -0.8836, abs=1e-2)


# --- A6 boundary term ----------------------------------------------------------------------------------------------
def test_boundary_term_equals_tweedie_gaussian_densities():
    dif = LinearDiffusion("learned2", generator=torch.Generator().manual_seed(4))
    lin = torch.nn.Linear(2, 2).double()
    net = lambda u, t: lin(u.double().squeeze(-1)).unsqueeze(-1)
    x = torch.randn(5, 1, dtype=F64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = boundary_term(net, dif, x, 1e-3, generator=torch.Generator().manual_seed(6))
        gen = torch.Generator().manual_seed(6)                              # replay the draws
        v0 = torch.randn(5, 1, 1, generator=gen, dtype=F64) * 0.1
        eps = torch.randn(5, 2, 1, generator=gen, dtype=F64)
        t = torch.full((1,), 1e-3, dtype=F64)
        phi, s_nh = (m[0] for m in dif.kernel(t, hybrid=False))
        _, s_h = (m[0] for m in dif.kernel(t, hybrid=True))
        u0 = torch.cat([x[:, None], v0], 1)[..., 0]
        u_b = u0 @ phi.T + eps[..., 0] @ torch.linalg.cholesky(s_nh).T
        score = -(torch.linalg.inv(torch.linalg.cholesky(s_h)).T @ net(u_b[..., None].float(), None)[..., 0].T).T
        phi_inv = torch.linalg.inv(phi)
        dec = torch.distributions.MultivariateNormal((u_b + score @ s_nh.T) @ phi_inv.T, phi_inv @ s_nh @ phi_inv.T)
        enc = torch.distributions.MultivariateNormal(u0 @ phi.T, s_nh)
        want = dec.log_prob(u0) - enc.log_prob(u_b)
    assert torch.allclose(got, want, atol=1e-8)


# --- importance time, dequantisation -------------------------------------------------------------------------------
def test_importance_time_quantiles_and_density():
    times = ImportanceTime()
    assert times.normaliser == pytest.approx(14.2055, abs=1e-4)
    got = times.from_uniform(torch.tensor([0.0, 0.187, 0.448, 0.713, 1.0], dtype=F64))
    assert got.tolist() == pytest.approx([1e-3, 0.01, 0.1, 0.5, 1.0], rel=2e-2)
    t = torch.linspace(1e-3, 1, 20001, dtype=F64)
    assert float(torch.trapezoid(1 / times.weight(t), t)) == pytest.approx(1.0, abs=1e-4)


def test_dequantise_logit_jacobian_and_bpd():
    x = torch.tensor([[[-1.0, 0.0], [0.125, 1.0]]], dtype=F64)[:, None] * 1  # 17 levels: k = 0, 8, 9, 16
    y, ldj = dequantise_logit(x, 17, torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all()
    u = torch.rand(4, dtype=F64, generator=torch.Generator().manual_seed(0))
    k = torch.tensor([0.0, 8.0, 9.0, 16.0], dtype=F64)
    f = lambda z: torch.logit(0.05 + 0.9 * (k + z) / 17)
    jac = torch.autograd.functional.jacobian(f, u)
    assert float(ldj[0]) == pytest.approx(float(torch.log(torch.diagonal(jac) * 17).sum()), rel=1e-10)
    assert float(bits_per_dim(torch.tensor([0.0]), torch.tensor([0.0]), 64, 17)) == pytest.approx(math.log2(17))


# --- learning and sampling ------------------------------------------------------------------------------------------
def test_learned_diffusion_gets_gradients_and_stays_valid():
    dif = LinearDiffusion("learned3", generator=torch.Generator().manual_seed(0))
    net = torch.nn.Linear(3, 3).double()
    eps_net = lambda u, t: net(u.double().squeeze(-1)).unsqueeze(-1)
    x = torch.randn(16, 1, dtype=F64)
    (-elbo(eps_net, dif, x, ImportanceTime(), torch.Generator().manual_seed(0)).mean()).backward()
    assert dif.q_free.grad.abs().sum() > 0 and dif.d_free.grad.abs().sum() > 0
    q, d = (m.detach() for m in dif.matrices())
    assert torch.equal(q, -q.T) and bool((torch.diagonal(d) >= 1e-3).all())
    assert float(torch.diagonal(d).min()) > 0.44 and float(torch.diagonal(d).max()) < 1.03   # spec §1.3 init range


@pytest.mark.parametrize("name,method", [("vp", "sde"), ("cld", "sde"), ("malda", "sde"), ("malda", "ode")])
def test_reverse_sampler_recovers_gaussian_data(name, method):
    mu, s = 0.5, 1.0
    dif = LinearDiffusion(name)
    net = ExactEps(dif, mu, s)
    xs = sample(net, dif, 4000, (1,), 100, 1e-3, torch.Generator().manual_seed(2), method)
    assert float(xs.mean()) == pytest.approx(mu, abs=0.08)
    assert float(xs.std()) == pytest.approx(s, abs=0.08)

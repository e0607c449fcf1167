"""Linear multivariate diffusions (MDM spec §1.2–1.5, §3): drift β(s)·A₀ u, diffusion √(2β(s)D), exact kernels.

The state is u = [x; v¹; …; v^{K−1}], stored as a tensor [n, K, *data_shape]: one K-vector per data coordinate and
one shared K×K matrix acting on all of them (spec §0). All K×K algebra is float64; it never touches data dimensions.

    A₀ = −(Q + D)·Σ∞⁻¹          Q skew, D ⪰ 0  ⇒  N(0, Σ∞) is stationary (spec §1.2)
    Φ(s) = expm(B(s)·A₀),       B(s) = ∫₀ˢ β = β₀ s + (β₁ − β₀) s²/2
    Σ(s) = Φ Σ₀ Φᵀ + ∫₀ᴮ e^{rA₀} 2D e^{rA₀ᵀ} dr      (Van Loan block exponential, spec §1.4 and pitfall 1)

Fixed diffusions evaluate (Φ, Σ) from a Taylor table in b = B(s) (`TaylorTable`): both are entire functions of b,
so a few exact coefficients at nodes b_j = j·h give them at any b to float64 rounding, in a handful of batched ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import UserError

F64 = torch.float64
DIFFUSIONS = ("vp", "cld", "alda", "malda", "learned2", "learned3")
LEARNED_D_FLOOR = 1e-3  # spec §1.3: D = diag(softplus(δ) + 10⁻³)


@dataclass(frozen=True)
class BetaSchedule:
    """β(s) = β₀ + (β₁ − β₀)s on s ∈ [0, 1] (spec §1.2, 'inhom')."""

    beta0: float = 0.1
    beta1: float = 10.0

    def beta(self, s: torch.Tensor) -> torch.Tensor:
        return self.beta0 + (self.beta1 - self.beta0) * s

    def integral(self, s: torch.Tensor) -> torch.Tensor:
        return self.beta0 * s + 0.5 * (self.beta1 - self.beta0) * s * s

    def time_of_integral(self, b: torch.Tensor) -> torch.Tensor:
        """Inverse of B(s): the positive root of ½Δβ s² + β₀ s − b = 0, written without cancellation."""
        delta = self.beta1 - self.beta0
        return 2.0 * b / (self.beta0 + torch.sqrt(self.beta0 ** 2 + 2.0 * delta * b))


def fixed_matrices(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, D) of the fixed diffusions with Σ∞ = I (spec §3.1)."""
    if name == "vp":
        return torch.zeros(1, 1, dtype=F64), torch.full((1, 1), 0.5, dtype=F64)
    if name == "cld":  # critical damping Γ = 2 with M = σ_v² = 1
        return torch.tensor([[0.0, -1.0], [1.0, 0.0]], dtype=F64), torch.diag(torch.tensor([0.0, 2.0], dtype=F64))
    if name == "alda":  # Mou et al. third-order Langevin, L = γ = ψ = 1
        q = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=F64)
        return q, torch.diag(torch.tensor([0.0, 0.0, 1.0], dtype=F64))
    if name == "malda":  # Q_ij = −1 above the diagonal, +1 below; D = diag(0, 2, 2)
        ones = torch.ones(3, 3, dtype=F64)
        return torch.tril(ones, -1) - torch.triu(ones, 1), torch.diag(torch.tensor([0.0, 2.0, 2.0], dtype=F64))
    raise UserError(f"unknown fixed diffusion '{name}' (known: vp, cld, alda, malda)")


def num_variables(name: str) -> int:
    """K for a diffusion name: vp 1, cld 2, alda/malda 3, learnedK K."""
    if name not in DIFFUSIONS:
        raise UserError(f"unknown diffusion '{name}' (known: {', '.join(DIFFUSIONS)})")
    if name.startswith("learned"):
        return int(name[len("learned"):])
    return fixed_matrices(name)[0].shape[0]


def drift_matrix(q: torch.Tensor, d: torch.Tensor, stationary_var: torch.Tensor | None = None) -> torch.Tensor:
    """A₀ = −(Q + D)Σ∞⁻¹ with Σ∞ = diag(stationary_var) (identity when None)."""
    a = -(q + d)
    return a if stationary_var is None else a / stationary_var[None, :]


SERIES_RADIUS = 0.5  # use the Taylor series where b·‖A₀‖₁ ≤ this (pitfall 1), the block exponential elsewhere
SERIES_TERMS = 16   # truncation error ≤ 0.5¹⁶/16! ≈ 7·10⁻¹⁹ relative at the radius


_INV_FACTORIALS = torch.exp(-torch.lgamma(torch.arange(SERIES_TERMS + 1, dtype=F64) + 1))


def _binomial_weights(terms: int) -> torch.Tensor:
    """W[k, i, j] = C(k, i) where i + j = k, else 0: K_k = Σ_{i+j=k} C(k, i) A₀^i (2D) (A₀ᵀ)^j."""
    w = torch.zeros(terms, terms, terms, dtype=F64)
    for k in range(terms):
        for i in range(k + 1):
            w[k, i, k - i] = math.comb(k, i)
    return w


_BINOMIAL = _binomial_weights(SERIES_TERMS)


def series_tables(a0: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[A₀^k] and [K_k] (K₀ = 2D, K_{k+1} = A₀K_k + K_kA₀ᵀ), k < SERIES_TERMS, flattened to [terms, K²].

    Powers by doubling (P_{m..2m−1} = A₀^m·P_{0..m−1}) and K_k = Σ_{i+j=k} C(k, i) A₀^i 2D (A₀ᵀ)^j in two contractions:
    a dozen small ops instead of ~45 sequential ones, which matters for learned diffusions (once per training step,
    differentiated by autograd)."""
    powers, step = torch.stack([torch.eye(a0.shape[-1], dtype=a0.dtype), a0]), a0
    while powers.shape[0] < SERIES_TERMS:
        step = step @ step
        powers = torch.cat([powers, step @ powers])
    powers = powers[:SERIES_TERMS]
    left = powers @ (2.0 * d)                                            # A₀^i 2D
    pairs = torch.einsum("iab,jcb->ijac", left, powers)                  # A₀^i 2D (A₀^j)ᵀ
    moments = torch.einsum("kij,ijac->kac", _BINOMIAL, pairs)
    return powers.flatten(1), moments.flatten(1)


def _series(tables: tuple[torch.Tensor, torch.Tensor], b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ = Σ_k b^k A₀^k/k!,  N = Σ_k b^{k+1}/(k+1)!·K_k (spec pitfall 1).

    Exact structural zeros stay zero term by term, so the B³- and B⁵-small x-variances keep full relative precision.
    """
    scaled = torch.linalg.vander(b, N=SERIES_TERMS + 1) * _INV_FACTORIALS   # b^m/m!, m = 0..terms
    c_phi, c_noise = scaled[:, :-1], scaled[:, 1:]
    return (c_phi @ tables[0]).reshape(-1, k, k), (c_noise @ tables[1]).reshape(-1, k, k)


def _block_exponential(a0: torch.Tensor, d: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One 2K×2K exponential of [[bA₀, 2bD], [0, −bA₀ᵀ]] = [[Φ, F], [0, Φ⁻ᵀ]], N = FΦᵀ (spec §1.4, Van Loan)."""
    k = a0.shape[-1]
    b = b.reshape(-1, 1, 1)
    top = torch.cat([b * a0, 2.0 * b * d], dim=-1)
    bottom = torch.cat([torch.zeros_like(top[..., :k]).expand(-1, k, k), -b * a0.mT], dim=-1)
    e = torch.linalg.matrix_exp(torch.cat([top, bottom], dim=-2))
    phi = e[:, :k, :k]
    return phi, e[:, :k, k:] @ phi.mT


def _stationary_complement(a0: torch.Tensor, stationary: torch.Tensor, b: torch.Tensor,
                           tables: tuple[torch.Tensor, torch.Tensor]):
    """Φ = expm(bA₀) and N = Σ∞ − ΦΣ∞Φᵀ, exact for the Q/D family (A₀Σ∞ + Σ∞A₀ᵀ + 2D = 0, spec §1.4).

    Φ by scaling and squaring of the series in `tables` (one shared power of two for the batch): a few small batched
    products, which autograd differentiates far more cheaply than a batched matrix_exp. Used only away from b = 0,
    where Σ∞ − ΦΣ∞Φᵀ does not cancel."""
    norm = float(torch.linalg.matrix_norm(a0.detach(), ord=1))
    squarings = max(0, math.ceil(math.log2(max(float(b.max()) * norm, 1e-300) / SERIES_RADIUS)))
    scaled = torch.linalg.vander(b / 2.0 ** squarings, N=SERIES_TERMS) * _INV_FACTORIALS[:-1]
    phi = (scaled @ tables[0]).reshape(-1, *a0.shape)
    for _ in range(squarings):
        phi = phi @ phi
    return phi, stationary - phi @ stationary @ phi.mT


def van_loan(a0: torch.Tensor, d: torch.Tensor, b: torch.Tensor,
             stationary: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Φ = expm(bA₀) and the noise covariance N = ∫₀ᵇ e^{rA₀}2De^{rA₀ᵀ}dr for each b of a 1-D float64 tensor.

    Small b (b‖A₀‖₁ ≤ 0.5): Taylor series, full relative precision of the t³/t⁵-small x-variances at t = 10⁻³ (it
    never forms I − ΦΦᵀ, which cancels catastrophically there; pitfall 1). Larger b: the Van Loan block exponential,
    or, given `stationary` = Σ∞ of a (Q, D) pair, scaling and squaring of the series and N = Σ∞ − ΦΣ∞Φᵀ.
    """
    b = b.to(F64).reshape(-1)
    k = a0.shape[-1]
    small = b * torch.linalg.matrix_norm(a0.detach(), ord=1) <= SERIES_RADIUS
    tables = series_tables(a0, d) if bool(small.any()) or stationary is not None else None
    large = (lambda bl: _block_exponential(a0, d, bl)) if stationary is None else (
        lambda bl: _stationary_complement(a0, stationary, bl, tables))
    if bool(small.all()):
        phi, noise = _series(tables, b, k)
    elif not bool(small.any()):
        phi, noise = large(b)
    else:
        idx_s, idx_l = small.nonzero().squeeze(1), (~small).nonzero().squeeze(1)
        phi_s, noise_s = _series(tables, b[idx_s], k)
        phi_l, noise_l = large(b[idx_l])
        order = torch.argsort(torch.cat([idx_s, idx_l]))
        phi, noise = torch.cat([phi_s, phi_l])[order], torch.cat([noise_s, noise_l])[order]
    return phi, 0.5 * (noise + noise.mT)


TABLE_TERMS = 10       # Taylor terms per node: (h‖A₀‖₁)^10/10! ≤ 3·10⁻¹⁷ at the node spacing below
TABLE_STEP_NORM = 0.1  # node spacing h = TABLE_STEP_NORM / max(‖A₀‖₁, 1)


class TaylorTable:
    """Exact (Φ, Σ) of a fixed diffusion at any b ∈ [0, b_max] from Taylor coefficients at nodes b_j = j·h.

    Φ and Σ solve dΦ/db = A₀Φ and dΣ/db = A₀Σ + ΣA₀ᵀ + 2D, so around a node
        Φ(b_j + δ) = Σ_m δ^m Φ_{j,m},  Φ_{j,0} = Φ(b_j),  Φ_{j,m+1} = A₀Φ_{j,m}/(m+1)
        Σ(b_j + δ) = Σ_m δ^m Σ_{j,m},  Σ_{j,0} = Σ(b_j),  Σ_{j,m+1} = (A₀Σ_{j,m} + Σ_{j,m}A₀ᵀ + [m = 0]·2D)/(m+1).
    Node values come from `van_loan`; at node 0 (Φ = I, Σ = Σ₀) the recurrence keeps the exact structural zeros, so
    the t³/t⁵-small x-variances near t = 0 keep full relative precision (pitfall 1), as the plain series does.
    Per batch: one gather, one Vandermonde row per b and one contraction, independent of the data size.
    """

    def __init__(self, a0: torch.Tensor, d: torch.Tensor, sigma0: torch.Tensor, b_max: float):
        k = a0.shape[-1]
        self.k = k
        self.step = TABLE_STEP_NORM / max(float(torch.linalg.matrix_norm(a0, ord=1)), 1.0)
        nodes = torch.arange(math.ceil(b_max / self.step) + 2, dtype=F64) * self.step
        phi, noise = van_loan(a0, d, nodes)
        phi[0], noise[0] = torch.eye(k, dtype=F64), torch.zeros(k, k, dtype=F64)  # exact at b = 0
        sigma = phi @ sigma0 @ phi.mT + noise
        phis, sigmas = [phi], [sigma]
        for m in range(TABLE_TERMS - 1):
            phis.append(a0 @ phis[-1] / (m + 1))
            nxt = a0 @ sigmas[-1] + sigmas[-1] @ a0.mT + (2.0 * d if m == 0 else 0.0)
            sigmas.append(0.5 * (nxt + nxt.mT) / (m + 1))
        # [nodes, 2K², terms]: per node, row e holds the Taylor coefficients of entry e of (Φ, Σ) flattened
        coef = torch.cat([torch.stack(phis, 1).flatten(2), torch.stack(sigmas, 1).flatten(2)], dim=2)
        self.coef = coef.transpose(1, 2).contiguous()
        self.b_max = float(nodes[-1])

    def __call__(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Φ, Σ) at each b of a 1-D float64 tensor: shapes [n, K, K]."""
        k = self.k
        if b.numel() and float(b.max()) > self.b_max:
            raise ValueError(f"b = {float(b.max()):.4g} beyond the kernel table (b_max = {self.b_max:.4g})")
        scaled = b / self.step
        node = scaled.long()                     # b ≥ 0: truncation is the floor
        delta = (scaled - node) * self.step
        powers = torch.linalg.vander(delta, N=TABLE_TERMS)                 # [n, terms]
        # [n, 2K², terms] @ [n, terms, 1]: 1.1–1.6× faster than a broadcast product and sum over terms
        values = torch.bmm(self.coef.index_select(0, node), powers.unsqueeze(2)).view(-1, 2, k, k)
        return values[:, 0], values[:, 1]


def initial_covariance(k: int, aux_var: float, hybrid: bool) -> torch.Tensor:
    """Σ₀ of the start point: hybrid conditions on x only, so v₀ ~ N(0, aux_var·I) is integrated out (spec §1.4–1.5)."""
    diag = torch.full((k,), aux_var if hybrid else 0.0, dtype=F64)
    diag[0] = 0.0
    return torch.diag(diag)


def safe_cholesky(sigma: torch.Tensor, what: str) -> torch.Tensor:
    """Cholesky without jitter (pitfall 1): a failure is reported, never patched by adding εI."""
    chol, info = torch.linalg.cholesky_ex(sigma)
    if bool((info != 0).any()):
        raise FloatingPointError(f"{what}: covariance is not positive definite in float64")
    return chol


class LinearDiffusion(torch.nn.Module):
    """One MDM inference process: fixed (vp/cld/alda/malda) or learned (Q = q − qᵀ, D = diag(softplus δ + 10⁻³)).

    Learned parameters are float64 nn.Parameters, so they join the network's optimiser (spec §2.6).
    """

    def __init__(self, name: str, beta: BetaSchedule = BetaSchedule(), aux_var: float = 0.01,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.name, self.beta, self.aux_var = name, beta, float(aux_var)
        self.k = num_variables(name)
        if name.startswith("learned"):  # init like a bias-free linear layer: U(−1/√K, 1/√K) (spec §1.3)
            bound = 1.0 / math.sqrt(self.k)
            init = lambda *shape: (torch.rand(*shape, generator=generator, dtype=F64) * 2 - 1) * bound
            self.q_free = torch.nn.Parameter(init(self.k, self.k))
            self.d_free = torch.nn.Parameter(init(self.k))
        else:
            q, d = fixed_matrices(name)
            self.register_buffer("q_fixed", q)
            self.register_buffer("d_fixed", d)
            b_max = float(beta.integral(torch.tensor(1.0, dtype=F64)))
            self._tables = {hybrid: TaylorTable(drift_matrix(q, d), d, initial_covariance(self.k, aux_var, hybrid),
                                                b_max) for hybrid in (True, False)}

    @property
    def learned(self) -> bool:
        return hasattr(self, "q_free")

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, D) as float64 K×K tensors (differentiable for the learned process)."""
        if self.learned:
            d = torch.nn.functional.softplus(self.d_free) + LEARNED_D_FLOOR
            return self.q_free - self.q_free.mT, torch.diag(d)
        return self.q_fixed, self.d_fixed

    def drift(self) -> torch.Tensor:
        q, d = self.matrices()
        return drift_matrix(q, d)

    def kernel(self, t: torch.Tensor, hybrid: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(Φ, Σ) of q(u_t | x) (hybrid) or q(u_t | x, v₀) for each t: shapes [n, K, K]."""
        b = self.beta.integral(t.to(F64).reshape(-1))
        if not self.learned:
            return self._tables[hybrid](b)
        q, d = self.matrices()  # learned: (Q, D) change every step and carry the gradient, so no table
        phi, noise = van_loan(drift_matrix(q, d), d, b, stationary=torch.eye(self.k, dtype=F64))
        sigma0 = initial_covariance(self.k, self.aux_var, hybrid).to(phi.device)
        return phi, phi @ sigma0 @ phi.mT + noise

    def terminal_kl(self, x: torch.Tensor) -> torch.Tensor:
        """KL(q_hybrid(u_1 | x) ‖ N(0, I)) per data coordinate value x (spec §3.2)."""
        phi, sigma = self.kernel(torch.ones(1, dtype=F64))
        phi, sigma = phi[0], sigma[0]
        mean_sq = phi[:, 0].pow(2).sum() * x.to(F64).pow(2)
        return 0.5 * (torch.trace(sigma) + mean_sq - self.k - torch.logdet(sigma))


def apply(m: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(M ⊗ I_d)·u: a K×K matrix (or one per sample, [n, K, K]) acting on u = [n, K, *data_shape]."""
    flat = u.reshape(u.shape[0], u.shape[1], -1)
    out = torch.einsum("kj,njd->nkd" if m.dim() == 2 else "nkj,njd->nkd", m.to(flat.dtype), flat)
    return out.reshape(u.shape)

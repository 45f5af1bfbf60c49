"""DEIS (Zhang & Chen 2022, arXiv 2204.13902), 'tab' form: multistep Karras-slope updates with weights
integrated numerically in the time of a VP schedule, as ComfyUI's `deis` sampler runs it."""

from __future__ import annotations

import torch

from nodes.sampling.common import Denoiser, SamplerRun, ones_like_batch

# ComfyUI maps sigmas to the time of a linear-beta VP schedule fitted to EDM's sigma range (whatever the
# model's range is), with t(sigma_min) = EPS_S and t(sigma_max) = 1; the fit is done in float32.
EPS_S = 1e-3
EDM_SIGMA_MIN = 0.002
EDM_SIGMA_MAX = 80.0
QUADRATURE_POINTS = 10000


def vp_time(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t per sigma, beta_0, beta_1) of the VP schedule abar(t) = exp(-t^2 (beta_1 - beta_0) / 2 - t beta_0)."""
    log_lo = torch.log(torch.tensor(EDM_SIGMA_MIN) ** 2 + 1)
    log_hi = torch.log(torch.tensor(EDM_SIGMA_MAX) ** 2 + 1)
    beta_d = 2 * (log_lo / EPS_S - log_hi) / (EPS_S - 1)
    beta_0 = log_hi - 0.5 * beta_d
    # 1 + sigma^2 = 1 / abar(t): solve the quadratic in t.
    t = ((beta_0**2 + 2 * beta_d * (sigmas.detach().cpu() ** 2 + 1).log()).sqrt() - beta_0) / beta_d
    return t, beta_0, beta_d + beta_0


def _dsigma_dt(taus: torch.Tensor, beta_0: torch.Tensor, beta_1: torch.Tensor) -> torch.Tensor:
    """d sigma / d t of the VP schedule: -(d log abar / dt) / (2 sqrt(abar (1 - abar)))."""
    abar = torch.exp(-0.5 * taus**2 * (beta_1 - beta_0) - taus * beta_0)
    dlog_abar = -(taus * (beta_1 - beta_0) + beta_0)
    return -0.5 * dlog_abar / torch.sqrt(abar * (1 - abar))


def _lagrange_basis(nodes: torch.Tensor, j: int, taus: torch.Tensor) -> torch.Tensor:
    """The Lagrange polynomial that is 1 at nodes[j] and 0 at the other nodes, evaluated at taus."""
    poly = torch.ones_like(taus)
    for k in range(nodes.shape[0]):
        if k != j:
            poly = poly * (taus - nodes[k]) / (nodes[j] - nodes[k])
    return poly


def deis_coefficients(sigmas: torch.Tensor, max_order: int) -> list[list[torch.Tensor]]:
    """Per step, the weights of the current and previous slopes: integral of dsigma/dt times each basis.

    Integrated by a Riemann sum over QUADRATURE_POINTS float32 points (ComfyUI's quadrature); a step of
    order 1 (the first one, or one ending at sigma 0) is Euler and gets no weights.
    """
    t, beta_0, beta_1 = vp_time(sigmas)
    steps = [i for i in range(len(sigmas) - 1) if min(i + 1, max_order) > 1 and sigmas[i + 1] > 0]
    coeffs: list[list[torch.Tensor]] = [[] for _ in range(len(sigmas) - 1)]
    if not steps:
        return coeffs
    taus = torch.stack([torch.linspace(t[i], t[i + 1], QUADRATURE_POINTS) for i in steps])
    # One batched call for every step: small transcendental ops pay a large per-call threading cost.
    weights = _dsigma_dt(taus, beta_0, beta_1)
    for row, i in enumerate(steps):
        order = min(i + 1, max_order)
        dtau = (t[i + 1] - t[i]) / QUADRATURE_POINTS
        nodes = t[[i - k for k in range(order)]]
        basis = [_lagrange_basis(nodes, j, taus[row]) for j in range(order)]
        coeffs[i] = [torch.sum(weights[row] * poly) * dtau for poly in basis]
    return coeffs


def sample_deis(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int = 3
) -> torch.Tensor:
    """DEIS multistep of up to `max_order` slopes (Euler on the first step and on a step to sigma 0)."""
    coeffs = deis_coefficients(sigmas, max_order)
    s_in = ones_like_batch(x)
    slopes: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        d = (x - denoised) / sigmas[i]
        weights = [w.to(x.device) for w in coeffs[i]]
        if not weights:
            x = x + (sigmas[i + 1] - sigmas[i]) * d
        else:
            x = x + weights[0] * d
            for k in range(1, len(weights)):
                x = x + weights[k] * slopes[-k]
        slopes.append(d)
        if len(slopes) > max_order - 1:
            slopes.pop(0)
    return x

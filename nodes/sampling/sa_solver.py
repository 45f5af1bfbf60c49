"""SA-Solver (Xue et al. 2023, arXiv 2309.05019): stochastic Adams predictor-corrector in data-prediction
form, with ComfyUI's defaults (predictor order 3, corrector order 4, noise only in the middle 60 %)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from nodes.sampling.common import Denoiser, SamplerRun, ones_like_batch

# tau(sigma): the stochasticity of the step that ends at sigma (0 = ODE).
TauFn = Callable[[torch.Tensor], float]

# ComfyUI injects noise only while sigma is between the sigmas 20 % and 80 % of the way through sampling.
SDE_START_PERCENT = 0.2
SDE_END_PERCENT = 0.8


def tau_interval(start_sigma: float, end_sigma: float, eta: float = 1.0) -> TauFn:
    """tau = eta for start_sigma >= sigma >= end_sigma, else 0 (always 0 when eta <= 0)."""

    def tau(sigma: torch.Tensor) -> float:
        if eta <= 0:
            return 0.0
        return eta if start_sigma >= float(sigma) >= end_sigma else 0.0

    return tau


def exponential_moments(lam_s: torch.Tensor, lam_t: torch.Tensor, order: int, tau: float) -> torch.Tensor:
    """I_p = a * integral over [lam_s, lam_t] of e^(a (u - lam_t)) u^p du for p < order, a = 1 + tau^2.

    Integration by parts gives I_p = P_p - (p / a) I_(p-1) with P_p = lam_t^p - lam_s^p e^(-a h); unrolled,
    I_p = sum over q <= p of (-1)^(p-q) p! / (q! a^(p-q)) P_q, applied here as one lower-triangular matrix.
    """
    a = 1 + tau**2
    p = torch.arange(order, dtype=lam_s.dtype, device=lam_s.device)
    boundary = lam_t**p - lam_s**p * (-a * (lam_t - lam_s)).exp()
    unrolled = torch.zeros(order, order, dtype=torch.float64)
    for row in range(order):
        for q in range(row + 1):
            unrolled[row, q] = (-1) ** (row - q) * math.factorial(row) / (math.factorial(q) * a ** (row - q))
    return unrolled.to(boundary) @ boundary


def adams_weights(
    sigma_t: torch.Tensor, lambdas: torch.Tensor, lam_s: torch.Tensor, lam_t: torch.Tensor, tau: float
) -> torch.Tensor:
    """Weights b_k of the x0 predictions at `lambdas` for a step from lam_s to lam_t (SA-Solver eqs. 15/18).

    The Lagrange interpolant through the predictions is integrated exactly against the exponential
    kernel: the weights solve V^T b = I (V the Vandermonde matrix of `lambdas`), times alpha_t.
    """
    order = lambdas.shape[0]
    moments = exponential_moments(lam_s, lam_t, order, tau)
    vander_t = torch.vander(lambdas, order, increasing=True).T
    alpha_t = sigma_t * lam_t.exp()
    return alpha_t * torch.linalg.solve(vander_t, moments)


def _combine(preds: list[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """sum_k weights[k] * preds[k] over a list of [B, ...] tensors."""
    return torch.tensordot(torch.stack(preds, dim=1), weights.to(preds[0].dtype), dims=([1], [0]))


def _adams_step(
    x: torch.Tensor,
    preds: list[torch.Tensor],
    sigmas: torch.Tensor,
    lambdas: torch.Tensor,
    i: int,
    order: int,
    tau_t: float,
    corrector: bool,
) -> torch.Tensor:
    """One Adams update with the last `order` x0 predictions (the newest made at step i): the predictor
    goes from sigmas[i] to sigmas[i + 1], the corrector redoes sigmas[i - 1] to sigmas[i]."""
    src, dst = (i - 1, i) if corrector else (i, i + 1)
    b = adams_weights(sigmas[dst], lambdas[i - order + 1 : i + 1], lambdas[src], lambdas[dst], tau_t)
    h = lambdas[dst] - lambdas[src]
    return sigmas[dst] / sigmas[src] * (-(tau_t**2) * h).exp() * x + _combine(preds[-order:], b)


def _default_tau(run: SamplerRun) -> TauFn:
    """ComfyUI's default stochasticity: eta 1 between the sigmas at 20 % and 80 % of the schedule."""
    if run.model_sampling is None:
        raise ValueError("sa_solver needs the model's sigma table (SamplerRun.model_sampling)")
    ms = run.model_sampling
    return tau_interval(ms.percent_to_sigma(SDE_START_PERCENT), ms.percent_to_sigma(SDE_END_PERCENT))


def sample_sa_solver(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    predictor_order: int = 3,
    corrector_order: int = 4,
    use_pece: bool = False,
    s_noise: float = 1.0,
    tau: TauFn | None = None,
) -> torch.Tensor:
    """SA-Solver; `use_pece` re-evaluates the model after each correction (ComfyUI's sa_solver_pece).

    Without a `tau`, noise is on (eta 1) between the sigmas at 20 % and 80 % of the model's schedule,
    which needs `run.model_sampling`. Near a final sigma of 0 the orders drop for stability.
    """
    if len(sigmas) <= 1:
        return x
    tau = tau if tau is not None else _default_tau(run)
    noise_sampler = run.noise_for(x)
    s_in = ones_like_batch(x)
    sigmas = run.snr_sigmas(sigmas)
    lambdas = run.lambda_of(sigmas)
    keep = max(predictor_order, corrector_order)
    lower_order_to_end = float(sigmas[-1]) == 0
    x_pred, tau_t = x, 0.0
    noise: torch.Tensor | float = 0.0
    preds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x_pred, sigmas[i] * s_in)
        run.step(i, denoised, x_pred)
        preds = [*preds, denoised][-keep:]
        p_order = min(predictor_order, len(preds))
        last_ode_step = sigmas[i + 1] == 0 and not use_pece
        c_order = 0 if i == 0 or last_ode_step else min(corrector_order, len(preds))
        if lower_order_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            x = _adams_step(x, preds, sigmas, lambdas, i, c_order, tau_t, corrector=True)
            if tau_t > 0 and s_noise > 0:
                # The corrected state gets the same noise the predictor added.
                x = x + noise
            if use_pece:
                denoised = model(x, sigmas[i] * s_in)
                preds[-1] = denoised
        if sigmas[i + 1] == 0:
            x_pred = denoised
            continue
        tau_t = tau(sigmas[i + 1])
        x_pred = _adams_step(x, preds, sigmas, lambdas, i, p_order, tau_t, corrector=False)
        if tau_t > 0 and s_noise > 0:
            h = lambdas[i + 1] - lambdas[i]
            spread = (-2 * tau_t**2 * h).expm1().neg().sqrt()
            noise = noise_sampler(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * spread * s_noise
            x_pred = x_pred + noise
    return x_pred

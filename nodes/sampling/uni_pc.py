"""UniPC (Zhao et al. 2023, arXiv 2302.04867): multistep predictor-corrector in data-prediction form.

As ComfyUI runs it: x is moved to variance-preserving space (divided by sqrt(1 + sigma_0^2)), a final
sigma of 0 is replaced by 0.001, order 3 (fewer for very short schedules), lower order on the last
steps, no corrector after the last step, and the result is divided by alpha(0.001) at the end.
"""

from __future__ import annotations

from typing import Literal

import torch

from nodes.sampling.common import Denoiser, SamplerRun

FINAL_SIGMA = 0.001


def _alpha(sigma: torch.Tensor) -> torch.Tensor:
    """VP signal coefficient 1 / sqrt(1 + sigma^2)."""
    return torch.exp(0.5 * torch.log(1 / (sigma * sigma + 1)))


def _std(sigma: torch.Tensor) -> torch.Tensor:
    """VP noise coefficient sqrt(1 - alpha^2)."""
    return torch.sqrt(1.0 - torch.exp(2.0 * 0.5 * torch.log(1 / (sigma * sigma + 1))))


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    """Half log-SNR log(alpha / std)."""
    log_alpha = 0.5 * torch.log(1 / (sigma * sigma + 1))
    return log_alpha - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alpha))


class _DataModel:
    """x0 prediction for a VP-space x at VE sigma, through the Karras denoiser."""

    def __init__(self, model: Denoiser):
        self.model = model

    def __call__(self, x_vp: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = sigma.view(sigma.shape + (1,) * (x_vp.ndim - 1))
        x_ve = x_vp * (s**2 + 1.0) ** 0.5
        eps = (x_ve - self.model(x_ve, sigma)) / s
        return (x_vp - _std(s) * eps) / _alpha(s)


def _coefficients(rks: torch.Tensor, hh: torch.Tensor, order: int, variant: str):
    """The R matrix, b vector and B(h) of the UniPC update for the given order."""
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    b_h = hh if variant == "bh1" else torch.expm1(hh)
    rows, b, factorial = [], [], 1
    for i in range(1, order + 1):
        rows.append(torch.pow(rks, i - 1))
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    return torch.stack(rows), torch.stack(b), b_h, h_phi_1


def _update(model, x, models, sigmas_prev, sigma, order, use_corrector, variant):
    """One UniPC step to `sigma`: predictor, then (optionally) corrector with a fresh evaluation."""
    lambda_prev_0, lambda_t = _lambda(sigmas_prev[-1]), _lambda(sigma)
    h = lambda_t - lambda_prev_0
    rks: list[torch.Tensor | float] = []
    d1s = []
    for i in range(1, order):
        rk = (_lambda(sigmas_prev[-(i + 1)]) - lambda_prev_0) / h
        rks.append(rk)
        d1s.append((models[-(i + 1)] - models[-1]) / rk)
    rks.append(1.0)
    rks_t = torch.tensor([float(r) for r in rks], dtype=sigma.dtype, device=x.device)
    r_mat, b, b_h, h_phi_1 = _coefficients(rks_t, -h, order, variant)
    d1 = torch.stack(d1s, dim=1) if d1s else None
    alpha_t = _alpha(sigma)
    x_t_ = _std(sigma) / _std(sigmas_prev[-1]) * x - alpha_t * h_phi_1 * models[-1]
    pred_res: torch.Tensor | float = 0
    if d1 is not None:
        rhos_p = (
            torch.tensor([0.5], device=x.device)
            if order == 2
            else torch.linalg.solve(r_mat[:-1, :-1], b[:-1])
        )
        pred_res = torch.einsum("k,bk...->b...", rhos_p.to(x.dtype), d1)
    x_t = x_t_ - alpha_t * b_h * pred_res
    if not use_corrector:
        return x_t, None
    rhos_c = torch.tensor([0.5], device=x.device) if order == 1 else torch.linalg.solve(r_mat, b)
    model_t = model(x_t, sigma.expand(x.shape[0]))
    corr_res = torch.einsum("k,bk...->b...", rhos_c[:-1].to(x.dtype), d1) if d1 is not None else 0
    x_t = x_t_ - alpha_t * b_h * (corr_res + rhos_c[-1] * (model_t - models[-1]))
    return x_t, model_t


def _sigma_space(x_vp: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A VP-space x back in the sampler's (Karras) space: x * sqrt(1 + sigma^2)."""
    return x_vp * (sigma**2 + 1.0) ** 0.5


def sample_uni_pc(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    variant: Literal["bh1", "bh2"] = "bh1",
) -> torch.Tensor:
    """UniPC multistep (bh1 or bh2 variant) over the schedule.

    Steps are reported like every other sampler's: the x0 prediction and the latent it was made at,
    in sigma space (the solver itself runs on the VP-scaled latent).
    """
    sigmas = sigmas.clone()
    if sigmas[-1] == 0:
        sigmas[-1] = FINAL_SIGMA
    data = _DataModel(model)
    steps = len(sigmas) - 1
    # ComfyUI's order is min(3, steps - 1): one step does no update and returns the (VP-scaled) input
    # divided by alpha(final sigma). Kept so a one-step uni_pc workflow gives ComfyUI's latent.
    order = min(3, steps - 1)
    x = x / torch.sqrt(1.0 + sigmas[0] ** 2.0)
    models = [data(x, sigmas[0].expand(x.shape[0]))]
    run.step(0, models[0], _sigma_space(x, sigmas[0]))
    if order < 1:
        return x / _alpha(sigmas[-1])
    sigmas_prev = [sigmas[0]]
    for init_order in range(1, order):
        x, model_x = _update(data, x, models, sigmas_prev, sigmas[init_order], init_order, True, variant)
        models.append(model_x)
        sigmas_prev.append(sigmas[init_order])
        run.step(init_order, model_x, _sigma_space(x, sigmas[init_order]))
    for step in range(order, steps + 1):
        step_order = min(order, steps + 1 - step)
        x, model_x = _update(data, x, models, sigmas_prev, sigmas[step], step_order, step != steps, variant)
        models, sigmas_prev = models[1:] + models[-1:], sigmas_prev[1:] + [sigmas[step]]
        if step < steps:
            models[-1] = model_x
            run.step(step, model_x, _sigma_space(x, sigmas[step]))
    return x / _alpha(sigmas[-1])

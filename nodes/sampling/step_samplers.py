"""Samplers that re-noise or extrapolate per step: ddpm, lcm, ipndm and ipndm_v."""

from __future__ import annotations

import torch

from nodes.sampling.common import Denoiser, SamplerRun, ones_like_batch


def _ddpm_step(x_vp, sigma, sigma_prev, eps, noise):
    """Ancestral DDPM posterior step in variance-preserving space."""
    alpha_cumprod = 1 / ((sigma * sigma) + 1)
    alpha_cumprod_prev = 1 / ((sigma_prev * sigma_prev) + 1)
    alpha = alpha_cumprod / alpha_cumprod_prev
    mu = (1.0 / alpha).sqrt() * (x_vp - (1 - alpha) * eps / (1 - alpha_cumprod).sqrt())
    if sigma_prev > 0:
        mu = mu + ((1 - alpha) * (1.0 - alpha_cumprod_prev) / (1.0 - alpha_cumprod)).sqrt() * noise(
            sigma, sigma_prev
        )
    return mu


def sample_ddpm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020) on the sigma schedule, via VP space."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        eps = (x - denoised) / sigmas[i]
        x = _ddpm_step(x / torch.sqrt(1.0 + sigmas[i] ** 2.0), sigmas[i], sigmas[i + 1], eps, noise)
        if sigmas[i + 1] != 0:
            x = x * torch.sqrt(1.0 + sigmas[i + 1] ** 2.0)
    return x


def sample_lcm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Latent-consistency sampling: jump to x0, then re-noise to the next sigma with fresh noise."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1]
    return x


_IPNDM_COEFFS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def sample_ipndm(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int = 4
) -> torch.Tensor:
    """Improved PNDM (Zhang & Chen, DEIS paper): Adams-Bashforth on the slope with fixed coefficients.

    The step to sigma 0 returns the x0 prediction (ComfyUI's denoising step).
    """
    s_in = ones_like_batch(x)
    buffer: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, t_cur * s_in)
        run.step(i, denoised, x)
        d_cur = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x = denoised
        else:
            coeffs = _IPNDM_COEFFS[order]
            slope = coeffs[0] * d_cur
            for k in range(1, order):
                slope = slope + coeffs[k] * buffer[-k]
            x = x + (t_next - t_cur) * slope
        buffer = [*buffer, d_cur][-(max_order - 1) :]
    return x


def _ipndm_v_coeffs(order: int, h: list[torch.Tensor]) -> list[torch.Tensor]:
    """Variable-step Adams-Bashforth weights for slopes [now, prev, ...]; h = [h_n, h_n-1, ...]."""
    if order == 1:
        return [torch.ones_like(h[0])]
    h_n, h_1 = h[0], h[1]
    if order == 2:
        return [(2 + h_n / h_1) / 2, -(h_n / h_1) / 2]
    h_2 = h[2]
    temp1 = (1 - h_n / (3 * (h_n + h_1)) * (h_n * (h_n + h_1)) / (h_1 * (h_1 + h_2))) / 2
    if order == 3:
        return [
            (2 + h_n / h_1) / 2 + temp1,
            -(h_n / h_1) / 2 - (1 + h_1 / h_2) * temp1,
            temp1 * h_1 / h_2,
        ]
    h_3 = h[3]
    temp2 = (
        ((1 - h_n / (3 * (h_n + h_1))) / 2 + (1 - h_n / (2 * (h_n + h_1))) * h_n / (6 * (h_n + h_1 + h_2)))
        * (h_n * (h_n + h_1) * (h_n + h_1 + h_2))
        / (h_1 * (h_1 + h_2) * (h_1 + h_2 + h_3))
    )
    ratio = h_1 * (h_1 + h_2) / (h_2 * (h_2 + h_3))
    return [
        (2 + h_n / h_1) / 2 + temp1 + temp2,
        -(h_n / h_1) / 2 - (1 + h_1 / h_2) * temp1 - (1 + h_1 / h_2 + ratio) * temp2,
        temp1 * h_1 / h_2 + (h_1 / h_2 + ratio * (1 + h_2 / h_3)) * temp2,
        -temp2 * ratio * h_1 / h_2,
    ]


def sample_ipndm_v(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, max_order: int = 4
) -> torch.Tensor:
    """iPNDM with variable step sizes (coefficients from the actual sigma gaps); x0 on the step to 0."""
    s_in = ones_like_batch(x)
    buffer: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        denoised = model(x, t_cur * s_in)
        run.step(i, denoised, x)
        d_cur = (x - denoised) / t_cur
        order = min(max_order, i + 1)
        if t_next == 0:
            x = denoised
        else:
            gaps = [t_next - t_cur] + [sigmas[i - k] - sigmas[i - k - 1] for k in range(order - 1)]
            coeffs = _ipndm_v_coeffs(order, gaps)
            slope = coeffs[0] * d_cur
            for k in range(1, order):
                slope = slope + coeffs[k] * buffer[-k]
            x = x + (t_next - t_cur) * slope
        buffer = [*buffer, d_cur][-(max_order - 1) :]
    return x

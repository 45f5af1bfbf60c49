"""Euler-type samplers: euler, euler_ancestral, heun, heunpp2, dpm_2, dpm_2_ancestral, lms and CFG++ forms."""

from __future__ import annotations

import numpy as np
import torch

from nodes.sampling.common import Denoiser, SamplerRun, ancestral_step, ones_like_batch, to_d


def sample_euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Euler steps of the probability-flow ODE (Karras et al. 2022, Algorithm 2 without churn)."""
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        x = x + to_d(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
    return x


def sample_euler_ancestral(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Euler down to sigma_down, then fresh noise of size sigma_up."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        x = denoised if sigma_down == 0 else x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def sample_heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Heun's second-order method (Euler on the last step to sigma 0)."""
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = x + d * dt
        else:
            x_2 = x + d * dt
            d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
            x = x + (d + d_2) / 2 * dt
    return x


def _heunpp_weights(sigmas: torch.Tensor, idx: list[int]) -> list[torch.Tensor | float]:
    """Heun++ weights: later slopes weighted by their sigma over len * sigma_0."""
    w = len(idx) * sigmas[0]
    tail = [sigmas[j] / w for j in idx[1:]]
    return [1 - sum(tail), *tail]


def sample_heunpp2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """Heun++: up to three slope evaluations per step, weighted by sigma (Euler, Heun near the end)."""
    s_in = ones_like_batch(x)
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        d = to_d(x, sigmas[i], denoised)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == s_end:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = to_d(x_2, sigmas[i + 1], model(x_2, sigmas[i + 1] * s_in))
        if sigmas[i + 2] == s_end:
            w1, w2 = _heunpp_weights(sigmas, [i, i + 1])
            x = x + (d * w1 + d_2 * w2) * dt
        else:
            x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
            d_3 = to_d(x_3, sigmas[i + 2], model(x_3, sigmas[i + 2] * s_in))
            w1, w2, w3 = _heunpp_weights(sigmas, [i, i + 1, i + 2])
            x = x + (w1 * d + w2 * d_2 + w3 * d_3) * dt
    return x


def _log_midpoint(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geometric mean of two sigmas (midpoint in log-sigma)."""
    return a.log().lerp(b.log(), 0.5).exp()


def sample_dpm_2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """DPM-Solver-2 in Karras form: slope at the log-midpoint (Euler on the last step)."""
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigmas[i])
        else:
            sigma_mid = _log_midpoint(sigmas[i], sigmas[i + 1])
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigmas[i + 1] - sigmas[i])
    return x


def sample_dpm_2_ancestral(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, eta: float = 1.0
) -> torch.Tensor:
    """DPM-Solver-2 down to sigma_down, then fresh noise of size sigma_up."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = _log_midpoint(sigmas[i], sigma_down)
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigma_down - sigmas[i])
        x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
    return x


def lms_coefficient(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t_i, t_i+1] of the Lagrange basis polynomial for node t_{i-j}.

    Numerical quadrature over the float32 sigmas, as ComfyUI computes it (NumPy keeps float32 there),
    so coefficients agree to the last bit rather than only to float64 accuracy.
    """
    from scipy import integrate

    def basis(tau: float) -> float:
        prod = 1.0
        for k in range(order):
            if k != j:
                prod *= (tau - t[i - k]) / (t[i - j] - t[i - k])
        return prod

    return integrate.quad(basis, t[i], t[i + 1], epsrel=1e-4)[0]


def sample_lms(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun, order: int = 4
) -> torch.Tensor:
    """Linear multistep (Adams-Bashforth in sigma) of up to `order` past slopes.

    The step to sigma 0 returns the x0 prediction (ComfyUI's denoising step, since its PR 8780) where
    k-diffusion takes a multistep to 0.
    """
    t = sigmas.detach().cpu().numpy()
    s_in = ones_like_batch(x)
    ds: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        ds.append(to_d(x, sigmas[i], denoised))
        if len(ds) > order:
            ds.pop(0)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        cur_order = min(i + 1, order)
        coeffs = [lms_coefficient(cur_order, t, i, j) for j in range(cur_order)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=True))
    return x


def _uncond(model: Denoiser, x: torch.Tensor) -> torch.Tensor:
    """CFG's uncond x0 of the last call (zeros when cfg 1 skipped it, as ComfyUI hands on)."""
    return model.uncond_denoised if model.uncond_denoised is not None else torch.zeros_like(x)


def sample_euler_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun
) -> torch.Tensor:
    """CFG++ Euler (arXiv 2406.08070): renoise the guided x0 along the unconditional direction."""
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], _uncond(model, x))
        run.step(i, denoised, x)
        x = denoised + d * sigmas[i + 1]
    return x


def sample_euler_ancestral_cfg_pp(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """CFG++ ancestral Euler."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        x = denoised + to_d(x, sigmas[i], _uncond(model, x)) * sigma_down
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def sample_gradient_estimation(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    ge_gamma: float = 2.0,
    cfg_pp: bool = False,
) -> torch.Tensor:
    """Gradient-estimation sampler (arXiv 2306.04848): Euler with an extrapolated slope.

    The step to sigma 0 returns the x0 prediction without the extrapolation term, as ComfyUI does.
    """
    s_in = ones_like_batch(x)
    old_d = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        d = to_d(x, sigmas[i], _uncond(model, x) if cfg_pp else denoised)
        run.step(i, denoised, x)
        dt = sigmas[i + 1] - sigmas[i]
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = denoised + d * sigmas[i + 1] if cfg_pp else x + d * dt
            if old_d is not None:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x

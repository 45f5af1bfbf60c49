"""Rectified-flow forms of the samplers whose update depends on the model's parameterisation.

Facts followed (ComfyUI's k-diffusion samplers on a CONST model, reimplemented): the ancestral samplers
step down to sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta) by interpolating towards x0
and renoise with alpha_next / alpha_down scaling; the DPM-Solver++ SDE samplers and CFG++ Euler carry
alpha = sigma * e^lambda = 1 - sigma; LCM renoises with the flow noise scaling. The other samplers run
unchanged on flow models (those using half-log-SNR time read it from `SamplerRun`).
"""

from __future__ import annotations

import torch

from nodes.sampling.common import Denoiser, SamplerRun, ancestral_step, ones_like_batch, to_d
from nodes.sampling.euler_family import _log_midpoint, _uncond
from nodes.sampling.noise_samplers import brownian_noise_sampler


def _rf_down(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float):
    """(sigma_down, alpha_next / alpha_down, renoise coefficient) of a rectified-flow ancestral step."""
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
    renoise = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2) ** 0.5
    return sigma_down, alpha_next / alpha_down, renoise


def _towards(x: torch.Tensor, denoised: torch.Tensor, sigma_to: torch.Tensor, sigma: torch.Tensor):
    """The straight-line point between x (at sigma) and its x0 prediction at sigma_to."""
    ratio = sigma_to / sigma
    return ratio * x + (1 - ratio) * denoised


def sample_euler_ancestral_rf(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """Ancestral Euler for flow models: interpolate to sigma_down, rescale and renoise."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        sigma_down, scale, renoise = _rf_down(sigmas[i], sigmas[i + 1], eta)
        x = _towards(x, denoised, sigma_down, sigmas[i])
        if eta > 0:
            x = scale * x + noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


def sample_dpm_2_ancestral_rf(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver-2 to the rectified-flow sigma_down, then rescale and renoise."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, scale, renoise = _rf_down(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
        else:
            sigma_mid = _log_midpoint(sigmas[i], sigma_down)
            x_2 = x + d * (sigma_mid - sigmas[i])
            d_2 = to_d(x_2, sigma_mid, model(x_2, sigma_mid * s_in))
            x = x + d_2 * (sigma_down - sigmas[i])
            x = scale * x + noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


def sample_dpmpp_2s_ancestral_rf(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """DPM-Solver++(2S) ancestral for flow models (midpoint in flow log-SNR; 0.9999 from sigma 1)."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        sigma_down, scale, renoise = _rf_down(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
            continue
        if sigmas[i] == 1.0:
            sigma_s = torch.tensor(0.9999)
        else:
            lam_i = ((1 - sigmas[i]) / sigmas[i]).log()
            lam_down = ((1 - sigma_down) / sigma_down).log()
            sigma_s = ((lam_i + (lam_down - lam_i) / 2).exp() + 1) ** -1
        u = _towards(x, denoised, sigma_s, sigmas[i])
        denoised_2 = model(u, sigma_s * s_in)
        x = _towards(x, denoised_2, sigma_down, sigmas[i])
        if eta > 0:
            x = scale * x + noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


def sample_euler_ancestral_cfg_pp_alpha(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """CFG++ ancestral Euler with alpha = sigma e^lambda (DDIM-style step towards the guided x0)."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        alpha_s = sigmas[i] * run.lambda_of(sigmas[i]).exp()
        alpha_t = sigmas[i + 1] * run.lambda_of(sigmas[i + 1]).exp()
        d = to_d(x, sigmas[i], alpha_s * _uncond(model, x))
        sigma_down, sigma_up = ancestral_step(sigmas[i] / alpha_s, sigmas[i + 1] / alpha_t, eta)
        x = alpha_t * denoised + alpha_t * sigma_down * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def sample_euler_cfg_pp_alpha(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun
) -> torch.Tensor:
    """CFG++ Euler: the ancestral form without noise."""
    return sample_euler_ancestral_cfg_pp_alpha(model, x, sigmas, run, eta=0.0, s_noise=0.0)


def sample_lcm_flow(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """LCM for flow models: jump to x0, then mix in fresh noise as sigma * noise + (1 - sigma) * x0."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        x = denoised
        if sigmas[i + 1] > 0:
            s = sigmas[i + 1]
            x = s * noise(sigmas[i], sigmas[i + 1]) + (1.0 - s) * x
    return x


def sample_dpmpp_sde_alpha(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 0.5,
    cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++ SDE (singlestep at ratio r) in the model's own log-SNR, alpha carried."""
    noise = run.noise_sampler or brownian_noise_sampler(x, sigmas, run.seed, cpu_tree)
    s_in = ones_like_batch(x)
    sigmas = run.snr_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lam_s, lam_t = run.lambda_of(sigmas[i]), run.lambda_of(sigmas[i + 1])
        h = lam_t - lam_s
        lam_s1 = lam_s + r * h
        fac = 1 / (2 * r)
        sigma_s1 = run.sigma_of(lam_s1)
        alpha_s = sigmas[i] * lam_s.exp()
        alpha_s1 = sigma_s1 * lam_s1.exp()
        alpha_t = sigmas[i + 1] * lam_t.exp()
        sd, su = ancestral_step(lam_s.neg().exp(), lam_s1.neg().exp(), eta)
        h_ = sd.log().neg() - lam_s
        x_2 = (alpha_s1 / alpha_s) * (-h_).exp() * x - alpha_s1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + alpha_s1 * noise(sigmas[i], sigma_s1) * s_noise * su
        denoised_2 = model(x_2, sigma_s1 * s_in)
        sd, su = ancestral_step(lam_s.neg().exp(), lam_t.neg().exp(), eta)
        h_ = sd.log().neg() - lam_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


def sample_dpmpp_multistep_sde_alpha(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
    cpu_tree: bool = True,
    order: int = 2,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (`order` 2, midpoint or heun) or (3M) SDE (`order` 3), alpha carried."""
    noise = run.noise_sampler or brownian_noise_sampler(x, sigmas, run.seed, cpu_tree)
    s_in = ones_like_batch(x)
    sigmas = run.snr_sigmas(sigmas)
    olds: list[torch.Tensor] = []
    hs: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = run.lambda_of(sigmas[i]), run.lambda_of(sigmas[i + 1])
            h = lam_t - lam_s
            h_eta = h * (eta + 1)
            alpha_t = sigmas[i + 1] * lam_t.exp()
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + alpha_t * (-h_eta).expm1().neg() * denoised
            x = x + _multistep_correction(denoised, olds, hs, h, h_eta, alpha_t, solver_type, order)
            if eta > 0 and s_noise > 0:
                spread = (-2 * h * eta).expm1().neg().sqrt()
                x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * spread * s_noise
            hs = [h, *hs][:2]
        olds = [denoised, *olds][:2]
    return x


def _multistep_correction(denoised, olds, hs, h, h_eta, alpha_t, solver_type: str, order: int):
    """The higher-order term of a 2M/3M SDE step from the previous x0 predictions (0 on the first step)."""
    if order == 3 and len(hs) >= 2 and len(olds) >= 2:
        r0, r1 = hs[0] / h, hs[1] / h
        d1_0 = (denoised - olds[0]) / r0
        d1_1 = (olds[0] - olds[1]) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_2 = h_eta.neg().expm1() / h_eta + 1
        phi_3 = phi_2 / h_eta - 0.5
        return (alpha_t * phi_2) * d1 - (alpha_t * phi_3) * d2
    if not hs or not olds:
        return 0.0
    r = hs[0] / h
    if order == 3:
        phi_2 = h_eta.neg().expm1() / h_eta + 1
        return (alpha_t * phi_2) * ((denoised - olds[0]) / r)
    if solver_type == "heun":
        return alpha_t * ((-h_eta).expm1().neg() / (-h_eta) + 1) * (1 / r) * (denoised - olds[0])
    return 0.5 * alpha_t * (-h_eta).expm1().neg() * (1 / r) * (denoised - olds[0])

"""DPM-Solver++ samplers (2S ancestral, SDE, 2M, 2M SDE, 3M SDE), their CFG++ forms and res_multistep."""

from __future__ import annotations

import torch

from nodes.sampling.common import (
    Denoiser,
    SamplerRun,
    ancestral_step,
    ones_like_batch,
    sigma_fn,
    t_fn,
    to_d,
)
from nodes.sampling.euler_family import _uncond
from nodes.sampling.noise_samplers import brownian_noise_sampler


def sample_dpmpp_2s_ancestral(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    cfg_pp: bool = False,
) -> torch.Tensor:
    """Ancestral DPM-Solver++(2S): a second-order singlestep update to sigma_down, then noise."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        uncond = _uncond(model, x) if cfg_pp else denoised
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        if sigma_down == 0:
            x = (
                denoised + to_d(x, sigmas[i], uncond) * sigma_down
                if cfg_pp
                else denoised_euler(x, sigmas[i], denoised, sigma_down)
            )
        else:
            t, t_next = t_fn(sigmas[i]), t_fn(sigma_down)
            h = t_next - t
            s = t + h / 2
            base = x + (denoised - uncond) if cfg_pp else x
            x_2 = (sigma_fn(s) / sigma_fn(t)) * base - (-h / 2).expm1() * denoised
            denoised_2 = model(x_2, sigma_fn(s) * s_in)
            if cfg_pp:
                # ComfyUI reads the uncond of the latest model call here, i.e. the midpoint's.
                base = x + (denoised - _uncond(model, x))
            x = (sigma_fn(t_next) / sigma_fn(t)) * base - (-h).expm1() * denoised_2
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def denoised_euler(
    x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor, sigma_next: torch.Tensor
) -> torch.Tensor:
    """One Euler step from sigma to sigma_next."""
    return x + to_d(x, sigma, denoised) * (sigma_next - sigma)


def sample_dpmpp_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 0.5,
    cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++ (stochastic, singlestep at ratio r) with Brownian-tree noise."""
    noise = run.noise_sampler or brownian_noise_sampler(x, sigmas, run.seed, cpu_tree)
    s_in = ones_like_batch(x)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised_euler(x, sigmas[i], denoised, sigmas[i + 1])
            continue
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        s = t + h * r
        fac = 1 / (2 * r)
        sd, su = ancestral_step(sigma_fn(t), sigma_fn(s), eta)
        s_ = t_fn(sd)
        x_2 = (sigma_fn(s_) / sigma_fn(t)) * x - (t - s_).expm1() * denoised
        x_2 = x_2 + noise(sigma_fn(t), sigma_fn(s)) * s_noise * su
        denoised_2 = model(x_2, sigma_fn(s) * s_in)
        sd, su = ancestral_step(sigma_fn(t), sigma_fn(t_next), eta)
        t_next_ = t_fn(sd)
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (sigma_fn(t_next_) / sigma_fn(t)) * x - (t - t_next_).expm1() * denoised_d
        x = x + noise(sigma_fn(t), sigma_fn(t_next)) * s_noise * su
    return x


def sample_dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun) -> torch.Tensor:
    """DPM-Solver++(2M): second-order multistep in log-SNR time (first order on the first/last step)."""
    s_in = ones_like_batch(x)
    old_denoised = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_denoised is None or sigmas[i + 1] == 0:
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_fn(t_next) / sigma_fn(t)) * x - (-h).expm1() * denoised_d
        old_denoised = denoised
    return x


def sample_dpmpp_2m_cfg_pp(
    model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, run: SamplerRun
) -> torch.Tensor:
    """CFG++ DPM-Solver++(2M)."""
    s_in = ones_like_batch(x)
    old_uncond = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        uncond = _uncond(model, x)
        run.step(i, denoised, x)
        t, t_next = t_fn(sigmas[i]), t_fn(sigmas[i + 1])
        h = t_next - t
        if old_uncond is None or sigmas[i + 1] == 0:
            mix = -torch.exp(-h) * uncond
        else:
            r = (t - t_fn(sigmas[i - 1])) / h
            mix = -torch.exp(-h) * uncond - torch.expm1(-h) * (1 / (2 * r)) * (denoised - old_uncond)
        x = denoised + mix + torch.exp(-h) * x
        old_uncond = uncond
    return x


def sample_dpmpp_2m_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
    cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(2M) SDE with Brownian-tree noise; `solver_type` midpoint or heun correction."""
    noise = run.noise_sampler or brownian_noise_sampler(x, sigmas, run.seed, cpu_tree)
    s_in = ones_like_batch(x)
    old_denoised: torch.Tensor | None = None
    h_last: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = t_fn(sigmas[i + 1]) - t_fn(sigmas[i])
            h_eta = h * (eta + 1)
            x = sigmas[i + 1] / sigmas[i] * (-h * eta).exp() * x + (-h_eta).expm1().neg() * denoised
            if old_denoised is not None and h_last is not None:
                r = h_last / h
                if solver_type == "heun":
                    coef = (-h_eta).expm1().neg() / (-h_eta) + 1
                else:
                    coef = 0.5 * (-h_eta).expm1().neg()
                x = x + coef * (1 / r) * (denoised - old_denoised)
            if eta:
                x = (
                    x
                    + noise(sigmas[i], sigmas[i + 1])
                    * sigmas[i + 1]
                    * (-2 * h * eta).expm1().neg().sqrt()
                    * s_noise
                )
            h_last = h
        old_denoised = denoised
    return x


def sample_dpmpp_3m_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    cpu_tree: bool = True,
) -> torch.Tensor:
    """DPM-Solver++(3M) SDE with Brownian-tree noise."""
    noise = run.noise_sampler or brownian_noise_sampler(x, sigmas, run.seed, cpu_tree)
    s_in = ones_like_batch(x)
    denoised_1: torch.Tensor | None = None
    denoised_2: torch.Tensor | None = None
    h_1: torch.Tensor | None = None
    h_2: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = t_fn(sigmas[i + 1]) - t_fn(sigmas[i])
            h_eta = h * (eta + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            if h_2 is not None and h_1 is not None and denoised_1 is not None and denoised_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                phi_3 = phi_2 / h_eta - 0.5
                x = x + phi_2 * d1 - phi_3 * d2
            elif h_1 is not None and denoised_1 is not None:
                phi_2 = h_eta.neg().expm1() / h_eta + 1
                x = x + phi_2 * ((denoised - denoised_1) / (h_1 / h))
            if eta:
                x = (
                    x
                    + noise(sigmas[i], sigmas[i + 1])
                    * sigmas[i + 1]
                    * (-2 * h * eta).expm1().neg().sqrt()
                    * s_noise
                )
            h_1, h_2 = h, h_1
        denoised_1, denoised_2 = denoised, denoised_1
    return x


def sample_res_multistep(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 0.0,
    cfg_pp: bool = False,
) -> torch.Tensor:
    """RES second-order multistep (arXiv 2308.02157), optionally ancestral (eta) and CFG++."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    old_sigma_down: torch.Tensor | None = None
    old_denoised: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        uncond = _uncond(model, x) if cfg_pp else denoised
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.step(i, denoised, x)
        if sigma_down == 0 or old_denoised is None or old_sigma_down is None:
            x = (
                denoised + to_d(x, sigmas[i], uncond) * sigma_down
                if cfg_pp
                else denoised_euler(x, sigmas[i], denoised, sigma_down)
            )
        else:
            t, t_old = t_fn(sigmas[i]), t_fn(old_sigma_down)
            t_next, t_prev = t_fn(sigma_down), t_fn(sigmas[i - 1])
            h = t_next - t
            c2 = (t_prev - t_old) / h
            phi1 = torch.expm1(-h) / -h
            phi2 = (phi1 - 1.0) / -h
            b1 = torch.nan_to_num(phi1 - phi2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi2 / c2, nan=0.0)
            if cfg_pp:
                x = x + (denoised - uncond)
            x = sigma_fn(h) * x + h * (b1 * uncond + b2 * old_denoised)
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigma_up
        old_denoised = uncond
        old_sigma_down = sigma_down
    return x

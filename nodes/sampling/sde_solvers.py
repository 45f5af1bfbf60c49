"""Exponential-integrator SDE solvers in data-prediction form: ER-SDE, SEEDS-2/3 and exponential Heun.

All work in half-log-SNR time lambda = log(alpha / sigma) of the model's parameterisation (-log sigma for
eps/v models, log((1 - sigma) / sigma) for flow models, whose sigma 1 start is nudged down first); the
last step to sigma 0 returns the x0 prediction, as ComfyUI does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch

from nodes.sampling.common import Denoiser, SamplerRun, ones_like_batch

ER_SDE_INTEGRATION_POINTS = 200


def _h_phi_1(h: torch.Tensor) -> torch.Tensor:
    """h * phi_1(h) = e^h - 1."""
    return torch.expm1(h)


def _h_phi_2(h: torch.Tensor) -> torch.Tensor:
    """h * phi_2(h) = (e^h - 1 - h) / h."""
    return (torch.expm1(h) - h) / h


def er_sde_noise_scaler(lam: torch.Tensor) -> torch.Tensor:
    """ER-SDE's default noise-scale function (the paper's eq. for ER-SDE-Solver-3): x (e^(x^0.3) + 10)."""
    return lam * ((lam**0.3).exp() + 10.0)


def sample_er_sde(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    s_noise: float = 1.0,
    max_stage: int = 3,
    noise_scaler: Callable[[torch.Tensor], torch.Tensor] = er_sde_noise_scaler,
) -> torch.Tensor:
    """ER-SDE-Solver (Cui et al. 2023, arXiv 2309.06169), VP form, up to three stages.

    The stage-2/3 integrals of 1/scaler over [lambda_t, lambda_s] use a 200-point left Riemann sum,
    as ComfyUI computes them (the error of that quadrature is part of the sampler's output).
    """
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    points = torch.arange(0, ER_SDE_INTEGRATION_POINTS, dtype=torch.float32, device=x.device)
    sigmas = run.snr_sigmas(sigmas)
    # lambda_er = sigma / alpha, kept as exp(-half_log_snr) like ComfyUI.
    er_lambdas = run.lambda_of(sigmas).neg().exp()
    # Stage 2 needs one earlier step, stage 3 two: both are set before they are read.
    old_denoised: torch.Tensor | None = None
    old_denoised_d: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        stage = min(max_stage, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            lam_s, lam_t = er_lambdas[i], er_lambdas[i + 1]
            alpha_s, alpha_t = sigmas[i] / lam_s, sigmas[i + 1] / lam_t
            r = noise_scaler(lam_t) / noise_scaler(lam_s)
            x = alpha_t / alpha_s * r * x + alpha_t * (1 - r) * denoised
            if stage >= 2 and old_denoised is not None:
                dt = lam_t - lam_s
                step = -dt / ER_SDE_INTEGRATION_POINTS
                lam_pos = lam_t + points * step
                scaled = noise_scaler(lam_pos)
                s = torch.sum(1 / scaled) * step
                denoised_d = (denoised - old_denoised) / (lam_s - er_lambdas[i - 1])
                x = x + alpha_t * (dt + s * noise_scaler(lam_t)) * denoised_d
                if stage >= 3 and old_denoised_d is not None:
                    s_u = torch.sum((lam_pos - lam_s) / scaled) * step
                    denoised_u = (denoised_d - old_denoised_d) / ((lam_s - er_lambdas[i - 2]) / 2)
                    x = x + alpha_t * ((dt**2) / 2 + s_u * noise_scaler(lam_t)) * denoised_u
                old_denoised_d = denoised_d
            if s_noise > 0:
                spread = (lam_t**2 - lam_s**2 * r**2).sqrt().nan_to_num(nan=0.0)
                x = x + alpha_t * noise(sigmas[i], sigmas[i + 1]) * s_noise * spread
        old_denoised = denoised
    return x


class _Segment:
    """One step's geometry in lambda time: h, h*(1 + eta), and the sigma/alpha at a fraction r of it."""

    def __init__(self, sigma_s: torch.Tensor, sigma_t: torch.Tensor, eta: float, run: SamplerRun):
        self.sigma_s, self.sigma_t, self.eta, self.run = sigma_s, sigma_t, eta, run
        self.lam_s, self.lam_t = run.lambda_of(sigma_s), run.lambda_of(sigma_t)
        self.h = self.lam_t - self.lam_s
        self.h_eta = self.h * (eta + 1)

    def at(self, r: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigma, alpha) at lambda_s + r h (alpha = sigma e^lambda: 1 up to rounding for eps/v models)."""
        lam = torch.lerp(self.lam_s, self.lam_t, r)
        sigma = self.run.sigma_of(lam)
        return sigma, sigma * lam.exp()

    def decay(self, sigma_r: torch.Tensor, r: float) -> torch.Tensor:
        """The coefficient of x when stepping to the fraction r: sigma_r / sigma_s * e^(-r h eta)."""
        return sigma_r / self.sigma_s * (-r * self.h * self.eta).exp()


def _sde_noise_start(seg: _Segment, r: float, draw: torch.Tensor) -> torch.Tensor:
    """Unit-variance-scaled noise for the first sub-step of a SEEDS step."""
    return (-2 * r * seg.h * seg.eta).expm1().neg().sqrt() * draw


def _sde_noise_extend(
    seg: _Segment, sde_noise: torch.Tensor, r_from: float, r_to: float, draw
) -> torch.Tensor:
    """Carry the noise of the earlier sub-step forward (decayed) and add the fresh part for [r_from, r_to]."""
    factor = (r_from - r_to) * seg.h * seg.eta
    return sde_noise * factor.exp() + factor.mul(2).expm1().neg().sqrt() * draw


def sample_seeds_2(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 0.5,
    solver_type: Literal["phi_1", "phi_2"] = "phi_1",
) -> torch.Tensor:
    """SEEDS-2 (Gonzalez et al. 2023, arXiv 2305.14267): two-stage stochastic exponential solver.

    With r = 1, solver phi_2 it is exponential Heun in x0 form (`exp_heun_2_x0`, eta 0; `_sde`, eta 1).
    """
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    inject = eta > 0 and s_noise > 0
    sigmas = run.snr_sigmas(sigmas)
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        seg = _Segment(sigmas[i], sigmas[i + 1], eta, run)
        sigma_1, alpha_1 = seg.at(r)
        alpha_t = sigmas[i + 1] * seg.lam_t.exp()
        x_2 = seg.decay(sigma_1, r) * x - alpha_1 * _h_phi_1(-r * seg.h_eta) * denoised
        if inject:
            sde_noise = _sde_noise_start(seg, r, noise(sigmas[i], sigma_1))
            x_2 = x_2 + sde_noise * sigma_1 * s_noise
        denoised_2 = model(x_2, sigma_1 * s_in)
        if solver_type == "phi_1":
            denoised_d = torch.lerp(denoised, denoised_2, fac)
            x = seg.decay(sigmas[i + 1], 1.0) * x - alpha_t * _h_phi_1(-seg.h_eta) * denoised_d
        else:
            b2 = _h_phi_2(-seg.h_eta) / r
            b1 = _h_phi_1(-seg.h_eta) - b2
            x = seg.decay(sigmas[i + 1], 1.0) * x - alpha_t * (b1 * denoised + b2 * denoised_2)
        if inject:
            # With r = 1 the fresh part has zero variance, but the draw still advances the generator.
            sde_noise = _sde_noise_extend(seg, sde_noise, r, 1.0, noise(sigma_1, sigmas[i + 1]))
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x


def sample_seeds_3(
    model: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    run: SamplerRun,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r_1: float = 1.0 / 3,
    r_2: float = 2.0 / 3,
) -> torch.Tensor:
    """SEEDS-3: three-stage stochastic exponential solver (stages at fractions r_1, r_2 of each step)."""
    noise = run.noise_for(x)
    s_in = ones_like_batch(x)
    inject = eta > 0 and s_noise > 0
    sigmas = run.snr_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in)
        run.step(i, denoised, x)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        seg = _Segment(sigmas[i], sigmas[i + 1], eta, run)
        (sigma_1, alpha_1), (sigma_2, alpha_2) = seg.at(r_1), seg.at(r_2)
        alpha_t = sigmas[i + 1] * seg.lam_t.exp()
        x_2 = seg.decay(sigma_1, r_1) * x - alpha_1 * _h_phi_1(-r_1 * seg.h_eta) * denoised
        if inject:
            sde_noise = _sde_noise_start(seg, r_1, noise(sigmas[i], sigma_1))
            x_2 = x_2 + sde_noise * sigma_1 * s_noise
        denoised_2 = model(x_2, sigma_1 * s_in)
        a3_2 = r_2 / r_1 * _h_phi_2(-r_2 * seg.h_eta)
        a3_1 = _h_phi_1(-r_2 * seg.h_eta) - a3_2
        x_3 = seg.decay(sigma_2, r_2) * x - alpha_2 * (a3_1 * denoised + a3_2 * denoised_2)
        if inject:
            sde_noise = _sde_noise_extend(seg, sde_noise, r_1, r_2, noise(sigma_1, sigma_2))
            x_3 = x_3 + sde_noise * sigma_2 * s_noise
        denoised_3 = model(x_3, sigma_2 * s_in)
        b3 = _h_phi_2(-seg.h_eta) / r_2
        b1 = _h_phi_1(-seg.h_eta) - b3
        x = seg.decay(sigmas[i + 1], 1.0) * x - alpha_t * (b1 * denoised + b3 * denoised_3)
        if inject:
            sde_noise = _sde_noise_extend(seg, sde_noise, r_2, 1.0, noise(sigma_2, sigmas[i + 1]))
            x = x + sde_noise * sigmas[i + 1] * s_noise
    return x

"""Shared pieces of the sampler loops: the denoiser protocol, step callbacks, ODE helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from nodes.sampling.flow import (
    ModelSampling,
    half_log_snr,
    is_flow,
    offset_first_sigma,
    sigma_from_half_log_snr,
)
from nodes.sampling.noise_samplers import NoiseSampler, gaussian_noise_sampler

# callback(step_index, x0_prediction, x) after each model evaluation that finishes a step.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], None]


class Denoiser(Protocol):
    """D(x, sigma[B]) -> x0 prediction. After a call, `uncond_denoised` holds CFG's uncond x0 (CFG++)."""

    uncond_denoised: torch.Tensor | None

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor: ...


@dataclass
class SamplerRun:
    """What every sampler needs besides x and sigmas: the seed for in-loop noise and the step callback.

    `model_sampling` is the model's sigma table, for samplers whose defaults depend on it (sa_solver).
    """

    seed: int | None = None
    callback: StepCallback | None = None
    noise_sampler: NoiseSampler | None = None
    model_sampling: ModelSampling | None = None

    def noise_for(self, x: torch.Tensor) -> NoiseSampler:
        """The given noise sampler, or seeded gaussian draws on x's device."""
        return self.noise_sampler if self.noise_sampler is not None else gaussian_noise_sampler(x, self.seed)

    @property
    def flow(self) -> bool:
        """Whether the model is flow matching (then several samplers take their rectified-flow form)."""
        return is_flow(self.model_sampling)

    def lambda_of(self, sigma: torch.Tensor) -> torch.Tensor:
        """Half-log-SNR log(alpha / sigma) of the model's parameterisation (-log sigma for eps/v)."""
        return half_log_snr(sigma, self.model_sampling)

    def sigma_of(self, lam: torch.Tensor) -> torch.Tensor:
        """Sigma at a half-log-SNR (the inverse of `lambda_of`)."""
        return sigma_from_half_log_snr(lam, self.model_sampling)

    def snr_sigmas(self, sigmas: torch.Tensor) -> torch.Tensor:
        """The schedule with a flow model's sigma 1 start nudged down to where the log-SNR is finite."""
        return offset_first_sigma(sigmas, self.model_sampling)

    def step(self, i: int, denoised: torch.Tensor, x: torch.Tensor) -> None:
        """Report a finished step."""
        if self.callback is not None:
            self.callback(i, denoised, x)


def to_d(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """Karras ODE derivative dx/dsigma = (x - D(x)) / sigma."""
    return (x - denoised) / sigma


def ancestral_step(
    sigma_from: torch.Tensor, sigma_to: torch.Tensor, eta: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | float]:
    """Split a step into a deterministic part down to sigma_down and fresh noise of size sigma_up."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def sigma_fn(t: torch.Tensor) -> torch.Tensor:
    """Half-log-SNR time t = -log(sigma) back to sigma (eps/v discrete models)."""
    return t.neg().exp()


def t_fn(sigma: torch.Tensor) -> torch.Tensor:
    """Sigma to half-log-SNR time t = -log(sigma)."""
    return sigma.log().neg()


def ones_like_batch(x: torch.Tensor) -> torch.Tensor:
    """A [B] vector of ones to broadcast a scalar sigma over the batch."""
    return x.new_ones([x.shape[0]])

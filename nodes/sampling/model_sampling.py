"""Discrete eps / v-prediction model sampling: the sigma table, sigma <-> timestep, input/output scaling."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from nodes.types import Prediction

NUM_TIMESTEPS = 1000
LINEAR_START = 0.00085
LINEAR_END = 0.012


def scaled_linear_sigmas(
    steps: int = NUM_TIMESTEPS, start: float = LINEAR_START, end: float = LINEAR_END
) -> torch.Tensor:
    """SD's "scaled linear" beta schedule as float64 sigmas sqrt((1 - abar) / abar), length `steps`."""
    betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5


def _per_item(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a [B] sigma over a [B, ...] tensor."""
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.ndim - 1))


@dataclass(frozen=True, eq=False)
class DiscreteModelSampling:
    """A 1000-step discrete-time model (SD1.x/SD2.x/SDXL) seen as a Karras denoiser D(x, sigma).

    `sigmas` and `log_sigmas` are float32 (the log taken in float64 first), as ComfyUI stores them;
    the UNet is fed the integer timestep whose log-sigma is nearest.
    """

    prediction: Prediction = "eps"
    sigmas: torch.Tensor = None  # type: ignore[assignment]
    log_sigmas: torch.Tensor = None  # type: ignore[assignment]
    sigma_data: float = 1.0

    @classmethod
    def create(cls, prediction: Prediction = "eps") -> DiscreteModelSampling:
        """The standard SD schedule (betas 0.00085..0.012 scaled linear) for this prediction type."""
        sigmas = scaled_linear_sigmas()
        return cls(prediction=prediction, sigmas=sigmas.float(), log_sigmas=sigmas.log().float())

    @property
    def sigma_min(self) -> float:
        """Smallest sigma of the table (timestep 0)."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """Largest sigma of the table (timestep 999)."""
        return float(self.sigmas[-1])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Integer timestep (as an int64 tensor) whose log-sigma is nearest to each sigma."""
        dists = sigma.float().log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (fractional) timestep, interpolated linearly in log-sigma."""
        t = torch.clamp(timestep.float().to(self.log_sigmas.device), 0, len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the way through sampling (0 = start, 1 = end)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * 999.0)))

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """c_in scaling: x / sqrt(sigma^2 + sigma_data^2) (what the UNet sees)."""
        return x / (_per_item(sigma, x) ** 2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The x0 prediction from the raw UNet output (eps or v) at noisy input x."""
        s = _per_item(sigma, output)
        if self.prediction == "eps":
            return x - output * s
        sd2 = self.sigma_data**2
        return x * sd2 / (s**2 + sd2) - output * s * self.sigma_data / (s**2 + sd2) ** 0.5

    def is_max_denoise(self, first_sigma: float) -> bool:
        """Whether sampling starts at (or above) the table's top: then noise gets sqrt(1 + sigma^2)."""
        return math.isclose(self.sigma_max, first_sigma, rel_tol=1e-05) or first_sigma > self.sigma_max

    def noise_scaling(
        self, sigma: torch.Tensor, noise: torch.Tensor, latents: torch.Tensor, max_denoise: bool
    ) -> torch.Tensor:
        """The starting x: latents + noise * sigma (or * sqrt(1 + sigma^2) at max denoise)."""
        scale = torch.sqrt(1.0 + sigma**2) if max_denoise else sigma
        return latents + noise * scale

    def inverse_noise_scaling(self, sigma: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Identity for eps/v models (flow models would rescale here)."""
        return latents

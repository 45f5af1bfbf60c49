"""Discrete-time model sampling: the sigma table, sigma <-> timestep, input/output scaling.

Predictions (ComfyUI's ModelSamplingDiscrete choices): eps, v, x0 (the model outputs the clean latent),
img_to_img (x0 with the input unscaled), lcm (a consistency model distilled to 50 of the 1000 steps,
whose output is blended with the input by LCM's boundary conditions). `zsnr` rescales the table to a
zero terminal SNR (the last step pure noise), as ComfyUI does for models trained that way.
"""

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


# Zero-terminal-SNR tables cannot end at alpha_bar = 0 (infinite sigma): ComfyUI pins the last value here.
ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08
# LCM: steps of the distilled schedule, its boundary-condition sigma_data and timestep scaling.
LCM_STEPS = 50
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


def zero_terminal_snr_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """A sigma table rescaled so sqrt(alpha_bar) falls linearly to zero at the end (float64 in and out)."""
    root = (1 / (sigmas * sigmas + 1)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root**2
    alpha_bar[-1] = ZSNR_LAST_ALPHA_BAR
    return ((1 - alpha_bar) / alpha_bar) ** 0.5


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
    # Model timesteps per table entry (20 for LCM's 50-entry table over 1000 steps, else 1).
    skip_steps: int = 1

    @classmethod
    def create(cls, prediction: Prediction = "eps", zsnr: bool = False) -> DiscreteModelSampling:
        """The standard SD schedule (betas 0.00085..0.012 scaled linear) for this prediction type."""
        sigmas = scaled_linear_sigmas()
        if zsnr:
            sigmas = zero_terminal_snr_sigmas(sigmas)
        if prediction == "lcm":
            skip = NUM_TIMESTEPS // LCM_STEPS
            # Entries skip-1, 2*skip-1, ..., 999 (every skip-th counted down from the last); the log
            # is taken of the float32 values, as ComfyUI's distilled table does.
            kept = sigmas.float()[skip - 1 :: skip].contiguous()
            return cls(prediction=prediction, sigmas=kept, log_sigmas=kept.log(), skip_steps=skip)
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
        index = dists.abs().argmin(dim=0).view(sigma.shape)
        if self.skip_steps > 1:
            index = index * self.skip_steps + (self.skip_steps - 1)
        return index.to(sigma.device)

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a (fractional) timestep, interpolated linearly in log-sigma."""
        t = timestep.float().to(self.log_sigmas.device)
        if self.skip_steps > 1:
            t = (t - (self.skip_steps - 1)) / self.skip_steps
        t = torch.clamp(t, 0, len(self.sigmas) - 1)
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
        """c_in scaling: x / sqrt(sigma^2 + sigma_data^2) (what the UNet sees); img_to_img sees x itself."""
        if self.prediction == "img_to_img":
            return x
        return x / (_per_item(sigma, x) ** 2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The x0 prediction from the raw UNet output (eps, v, x0 or LCM's eps) at noisy input x."""
        if self.prediction in ("x0", "img_to_img"):
            return output
        s = _per_item(sigma, output)
        if self.prediction == "eps":
            return x - output * s
        if self.prediction == "lcm":
            return self._lcm_denoised(sigma, output, x)
        sd2 = self.sigma_data**2
        return x * sd2 / (s**2 + sd2) - output * s * self.sigma_data / (s**2 + sd2) ** 0.5

    def _lcm_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """LCM's boundary conditions: c_skip * x + c_out * (x - sigma * eps), from the model timestep."""
        scaled = _per_item(self.timestep(sigma), output) * LCM_TIMESTEP_SCALING
        sd2 = LCM_SIGMA_DATA**2
        c_skip = sd2 / (scaled**2 + sd2)
        c_out = scaled / (scaled**2 + sd2) ** 0.5
        return c_out * (x - output * _per_item(sigma, output)) + c_skip * x

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

"""Flow-matching model sampling (FLUX, SD3, AuraFlow): sigma = t, x0 from the velocity, flow noise scaling.

Facts followed (ComfyUI's CONST prediction with ModelSamplingFlux / ModelSamplingDiscreteFlow,
reimplemented): the model predicts a velocity v and x0 = x - sigma * v; the model input is x unscaled;
a start latent is mixed as sigma * noise + (1 - sigma) * latent and the result divided by (1 - sigma_last)
at the end. FLUX's table has 10000 entries sigma(t) = e^mu / (e^mu + 1/t - 1) and feeds the model
sigma itself; the discrete-flow table (SD3, AuraFlow, FLUX schnell) has 1000 entries
sigma(t) = shift t / (1 + (shift - 1) t) and feeds the model sigma * multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.types import FlowSampling

FLUX_TABLE_SIZE = 10000
DISCRETE_FLOW_TABLE_SIZE = 1000
# ModelSamplingFlux's shift is linear in the token count between these two sizes.
FLUX_SHIFT_TOKENS = (256, 4096)
# Latent pixels per FLUX token side (8x VAE downscale, 2x2 patches) -> pixels per token = 8*8*2*2.
FLUX_PIXELS_PER_TOKEN = 8 * 8 * 2 * 2


def flux_time_shift(mu: float, t: Any) -> Any:
    """FLUX's resolution shift of a time t in (0, 1]: e^mu / (e^mu + (1/t - 1))."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** 1.0)


def time_snr_shift(shift: float, t: Any) -> Any:
    """SD3's shift of a time t: shift t / (1 + (shift - 1) t) (identity at shift 1)."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def flux_shift_for_size(width: int, height: int, base_shift: float, max_shift: float) -> float:
    """ModelSamplingFlux's mu for an image size: base_shift at 256 tokens, max_shift at 4096, linear."""
    x1, x2 = FLUX_SHIFT_TOKENS
    slope = (max_shift - base_shift) / (x2 - x1)
    intercept = base_shift - slope * x1
    return (width * height / FLUX_PIXELS_PER_TOKEN) * slope + intercept


def _per_item(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a [B] (or scalar) sigma over a [B, ...] tensor."""
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.ndim - 1)) if sigma.ndim else sigma


@dataclass(frozen=True, eq=False)
class FlowModelSampling:
    """A flow-matching model seen as a Karras denoiser D(x, sigma): the same interface as DiscreteModelSampling.

    `sigmas` is the float32 table the schedulers read (ascending); `timestep` maps sigma to what the
    model is fed.
    """

    params: FlowSampling
    sigmas: torch.Tensor

    @classmethod
    def create(cls, params: FlowSampling) -> FlowModelSampling:
        """The table for FLUX's shift (10000 entries) or a discrete-flow shift and multiplier (1000)."""
        if params.kind == "flux":
            t = torch.arange(1, FLUX_TABLE_SIZE + 1, 1) / FLUX_TABLE_SIZE
            return cls(params, flux_time_shift(params.shift, t))
        t = (torch.arange(1, DISCRETE_FLOW_TABLE_SIZE + 1, 1) / DISCRETE_FLOW_TABLE_SIZE) * params.multiplier
        return cls(params, time_snr_shift(params.shift, t / params.multiplier))

    prediction = "flow"

    @property
    def sigma_min(self) -> float:
        """Smallest sigma of the table."""
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        """Largest sigma of the table (1.0)."""
        return float(self.sigmas[-1])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """What the model is fed for a sigma: sigma (FLUX) or sigma * multiplier (discrete flow)."""
        if self.params.kind == "flux":
            return sigma
        return sigma * self.params.multiplier

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        """Sigma at a model timestep (the inverse of `timestep` through the shift)."""
        if self.params.kind == "flux":
            return flux_time_shift(self.params.shift, timestep)
        return time_snr_shift(self.params.shift, timestep / self.params.multiplier)

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the way through sampling (0 -> 1.0, 1 -> 0.0)."""
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        if self.params.kind == "flux":
            return float(flux_time_shift(self.params.shift, 1.0 - percent))
        return float(time_snr_shift(self.params.shift, 1.0 - percent))

    def calculate_input(self, sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Flow models see x unscaled."""
        return x

    def calculate_denoised(self, sigma: torch.Tensor, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """x0 = x - sigma * v from the predicted velocity."""
        return x - output * _per_item(sigma, output)

    def is_max_denoise(self, first_sigma: float) -> bool:
        """Whether sampling starts at the table's top (flow noise scaling ignores it)."""
        return math.isclose(self.sigma_max, first_sigma, rel_tol=1e-05) or first_sigma > self.sigma_max

    def noise_scaling(
        self, sigma: torch.Tensor, noise: torch.Tensor, latents: torch.Tensor, max_denoise: bool = False
    ) -> torch.Tensor:
        """The starting x: sigma * noise + (1 - sigma) * latents."""
        s = _per_item(sigma, noise)
        return s * noise + (1.0 - s) * latents

    def inverse_noise_scaling(self, sigma: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Undo the (1 - sigma) factor of the last sigma (a no-op when sampling ends at 0)."""
        return latents / (1.0 - _per_item(sigma, latents))


ModelSampling = DiscreteModelSampling | FlowModelSampling


def is_flow(ms: object) -> bool:
    """Whether a model sampling is flow matching (ComfyUI's CONST)."""
    return isinstance(ms, FlowModelSampling)


def model_sampling_for(model: Any) -> ModelSampling:
    """The sigma table and scalings of a MODEL handle: flow matching when it carries `flow` params."""
    flow = getattr(model, "flow", None)
    if flow is not None:
        return FlowModelSampling.create(flow)
    return DiscreteModelSampling.create(model.prediction, zsnr=getattr(model, "zsnr", False))


def half_log_snr(sigma: torch.Tensor, ms: object) -> torch.Tensor:
    """log(alpha / sigma): -log(sigma) for eps/v models, log((1 - sigma) / sigma) for flow models."""
    if is_flow(ms):
        return sigma.logit().neg()
    return sigma.log().neg()


def sigma_from_half_log_snr(lam: torch.Tensor, ms: object) -> torch.Tensor:
    """The inverse of `half_log_snr`."""
    if is_flow(ms):
        return lam.neg().sigmoid()
    return lam.neg().exp()


def offset_first_sigma(sigmas: torch.Tensor, ms: object, percent_offset: float = 1e-4) -> torch.Tensor:
    """A flow schedule starting at sigma >= 1 starts a hair lower instead, where the log-SNR is finite."""
    if len(sigmas) <= 1 or not is_flow(ms) or not bool(sigmas[0] >= 1):
        return sigmas
    sigmas = sigmas.clone()
    sigmas[0] = ms.percent_to_sigma(percent_offset)  # type: ignore[attr-defined]
    return sigmas

"""Differential Diffusion: a soft inpainting mask turned into a per-step hard mask that grows as noise falls."""

from __future__ import annotations

import torch

from nodes.sampling.flow import ModelSampling


def differential_mask(
    sigma: torch.Tensor, mask: torch.Tensor, sigmas: torch.Tensor, ms: ModelSampling, strength: float
) -> torch.Tensor:
    """The denoise mask for this step: 1 where the soft mask reaches the step's progress threshold.

    The threshold runs from 1 at the run's first sigma to 0 at its last (not below the model's smallest),
    measured in model timesteps, so a pixel with mask value m is repainted during the last m of the run.
    A `strength` below 1 blends the hard mask with the soft one (ComfyUI 0.3.64's DifferentialDiffusion).
    """
    sigma_to = torch.tensor(ms.sigma_min, dtype=sigmas.dtype, device=sigmas.device)
    if sigmas[-1] > sigma_to:
        sigma_to = sigmas[-1]
    ts_from, ts_to = ms.timestep(sigmas[0]), ms.timestep(sigma_to)
    current = ms.timestep(sigma.reshape(-1)[0])
    threshold = (current - ts_to) / (ts_from - ts_to)
    binary = (mask >= threshold).to(mask.dtype)
    if strength and strength < 1:
        return strength * binary + (1 - strength) * mask
    return binary

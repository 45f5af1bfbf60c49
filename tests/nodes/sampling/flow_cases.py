"""Inputs shared by the flow-matching reference generator (ComfyUI side) and its test (our side)."""

from __future__ import annotations

import torch

SEED = 42
STEPS = 5
CFG = 1.5
# label -> (kind, shift, multiplier): FLUX dev's default shift, ModelSamplingFlux at 512x768, SD3's flow.
FLOW_PARAMS = {
    "flux_1.15": ("flux", 1.15, 1.0),
    "flux_512x768": ("flux", 0.5 + (512 * 768 / 256 - 256) * (1.15 - 0.5) / (4096 - 256), 1.0),
    "discrete_flow_3.0": ("discrete_flow", 3.0, 1000.0),
}


def start_latent() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed model-space latent [1, 2, 3, 3] and the starting noise for it."""
    gen = torch.Generator().manual_seed(7)
    latent = torch.randn((1, 2, 3, 3), generator=gen) * 0.5
    noise = torch.randn((1, 2, 3, 3), generator=gen)
    return latent, noise


def toy_cfg(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(guided x0, uncond x0) of a smooth toy flow denoiser, guidance scale CFG."""
    s = sigma.reshape(-1, *[1] * (x.ndim - 1))
    cond = (1 - s) * x * 0.8 + 0.1 * torch.tanh(2 * x)
    uncond = (1 - s) * x * 0.6 - 0.05
    return uncond + (cond - uncond) * CFG, uncond

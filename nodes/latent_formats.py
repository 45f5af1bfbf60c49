"""Latent formats: how each family's VAE latents are scaled for the denoiser and shown as RGB previews."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatentFormat:
    """How a family's VAE latents are scaled for the UNet and projected to RGB for previews."""

    name: str
    channels: int
    scale_factor: float
    shift: float = 0.0
    # Rows per latent channel -> (R, G, B); bias added after (ComfyUI latent_formats facts).
    rgb_factors: tuple[tuple[float, float, float], ...] = ()
    rgb_bias: tuple[float, float, float] | None = None
    taesd_decoder: str | None = None

    def process_in(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latent space -> UNet space."""
        return (latents - self.shift) * self.scale_factor

    def process_out(self, latents: torch.Tensor) -> torch.Tensor:
        """UNet space -> VAE latent space."""
        return latents / self.scale_factor + self.shift


SD15_LATENT = LatentFormat(
    name="sd15",
    channels=4,
    scale_factor=0.18215,
    rgb_factors=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    taesd_decoder="taesd_decoder",
)
SDXL_LATENT = LatentFormat(
    name="sdxl",
    channels=4,
    scale_factor=0.13025,
    rgb_factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    rgb_bias=(0.1084, -0.0175, -0.0011),
    taesd_decoder="taesdxl_decoder",
)
# SD3 / SD3.5: 16 channels with a shift (ComfyUI latent_formats.SD3 facts).
SD3_LATENT = LatentFormat(
    name="sd3",
    channels=16,
    scale_factor=1.5305,
    shift=0.0609,
    rgb_factors=(
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    rgb_bias=(0.2394, 0.2135, 0.1925),
    taesd_decoder="taesd3_decoder",
)
# FLUX's 16-channel VAE (ComfyUI latent_formats.Flux facts: scale 0.3611, shift 0.1159, RGB rows).
FLUX_LATENT = LatentFormat(
    name="flux",
    channels=16,
    scale_factor=0.3611,
    shift=0.1159,
    rgb_factors=(
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    rgb_bias=(-0.0329, -0.0718, -0.0851),
    taesd_decoder="taef1_decoder",
)

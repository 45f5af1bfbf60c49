"""Sigma schedules of the custom-sampling scheduler nodes (polyexponential, VP, Laplace, SD-Turbo, AYS, GITS).

Each follows the published definition as ComfyUI evaluates it (same dtype, same interpolation), so
a schedule node feeds exactly the sigmas ComfyUI's would.
"""

from __future__ import annotations

import json
import math
from functools import cache
from importlib import resources

import numpy as np
import torch

from nodes.sampling.flow import ModelSampling


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def polyexponential_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> torch.Tensor:
    """A polynomial ramp (power rho) in log sigma from sigma_max to sigma_min, then 0."""
    ramp = torch.linspace(1, 0, n) ** rho
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def vp_sigmas(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> torch.Tensor:
    """The continuous variance-preserving schedule (Song et al.) sampled at t = 1..eps_s, then 0."""
    t = torch.linspace(1, eps_s, n)
    return _append_zero(torch.sqrt(torch.special.expm1(beta_d * t**2 / 2 + beta_min * t)))


def laplace_sigmas(
    n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5
) -> torch.Tensor:
    """Log-sigmas spaced by a Laplace quantile function (Tiankai et al. 2024), clamped to the range.

    As in ComfyUI no final 0 is appended: the run ends at sigma_min.
    """
    # The small epsilon keeps log() finite at both ends of the ramp.
    x = torch.linspace(0, 1, n)
    lmb = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(lmb), min=sigma_min, max=sigma_max)


def sd_turbo_sigmas(ms: ModelSampling, steps: int, denoise: float) -> torch.Tensor:
    """SD-Turbo's schedule: timesteps 999, 899, ... (every 100th), starting later for denoise < 1."""
    start = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start : start + steps]
    return _append_zero(ms.sigma(timesteps))


def _loglinear_interp(levels: list[float], count: int) -> np.ndarray:
    """Resample a decreasing schedule to `count` points, linearly in log sigma."""
    xs = np.linspace(0, 1, len(levels))
    ys = np.log(levels[::-1])
    return np.exp(np.interp(np.linspace(0, 1, count), xs, ys))[::-1].copy()


# Align Your Steps (Sabour et al. 2024): the optimized 10-step schedules NVIDIA published per model.
AYS_LEVELS = {
    "SD1": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
    "SDXL": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
    "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002],
}  # fmt: skip


def _tail(levels: list[float] | np.ndarray, steps: int, denoise: float) -> torch.Tensor:
    """The last round(steps * denoise) steps of a schedule, its final sigma set to 0."""
    total = steps if denoise >= 1.0 else round(steps * denoise)
    sigmas = list(levels)[-(total + 1) :]
    sigmas[-1] = 0
    return torch.FloatTensor(sigmas)


def ays_sigmas(model_type: str, steps: int, denoise: float) -> torch.Tensor:
    """Align Your Steps for SD1/SDXL/SVD, log-linearly resampled when steps != 10."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    levels: list[float] | np.ndarray = AYS_LEVELS[model_type]
    if steps + 1 != len(levels):
        levels = _loglinear_interp(list(levels), steps + 1)
    return _tail(levels, steps, denoise)


@cache
def _gits_table() -> dict[str, list[list[float]]]:
    text = resources.files("nodes.sampling").joinpath("data", "gits_sigmas.json").read_text()
    return json.loads(text)["schedules"]


GITS_COEFFS = tuple(round(0.80 + 0.05 * i, 2) for i in range(15))


def gits_sigmas(coeff: float, steps: int, denoise: float) -> torch.Tensor:
    """GITS (Chen et al. 2024) schedules for a coefficient in 0.80..1.50 (steps of 0.05)."""
    if denoise <= 0.0:
        return torch.FloatTensor([])
    table = _gits_table()[f"{round(coeff, 2):.2f}"]
    levels: list[float] | np.ndarray = (
        table[steps - 2] if steps <= 20 else _loglinear_interp(table[-1], steps + 1)
    )
    return _tail(levels, steps, denoise)

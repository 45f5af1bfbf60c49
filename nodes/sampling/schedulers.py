"""Sigma schedules by ComfyUI scheduler name, and KSampler's step/denoise/start/end trimming rules."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, get_args

import numpy as np
import torch

from nodes.sampling.flow import ModelSampling

SchedulerName = Literal[
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
]
SCHEDULER_NAMES: tuple[str, ...] = get_args(SchedulerName)

# Samplers that compute steps + 1 sigmas and drop the penultimate one (their last step is special).
DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022) schedule: uniform in sigma^(1/rho), then 0."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def exponential_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """Uniform in log-sigma from sigma_max to sigma_min, then 0."""
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp()
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def kl_optimal_sigmas(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """ "Align Your Steps" KL-optimal schedule: uniform in arctan(sigma), then 0."""
    # One step would divide 0 by 0 (NaN sigmas in ComfyUI); it starts at sigma_max like longer runs do.
    frac = torch.arange(n, dtype=torch.float).div_(max(n - 1, 1))
    sigmas = frac.new_zeros(n + 1)
    sigmas[:-1] = (frac * math.atan(sigma_min) + (1 - frac) * math.atan(sigma_max)).tan_()
    return sigmas


def simple_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    """Every len/steps-th table sigma from the top, then 0."""
    stride = len(ms.sigmas) / steps
    sigs = [float(ms.sigmas[-(1 + int(i * stride))]) for i in range(steps)]
    return torch.FloatTensor([*sigs, 0.0])


def ddim_uniform_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    """DDIM's uniform timestep stride, starting at table index 1, reversed (ends at 0 when the table does)."""
    if math.isclose(float(ms.sigmas[1]), 0, abs_tol=0.00001):
        steps += 1
        sigs: list[float] = []
    else:
        sigs = [0.0]
    stride = max(len(ms.sigmas) // steps, 1)
    sigs += [float(ms.sigmas[i]) for i in range(1, len(ms.sigmas), stride)]
    return torch.FloatTensor(sigs[::-1])


def normal_sigmas(ms: ModelSampling, steps: int, sgm: bool = False) -> torch.Tensor:
    """Timesteps linear from t(sigma_max) to t(sigma_min), sigmas interpolated in log-sigma, then 0."""
    start = ms.timestep(torch.tensor(ms.sigma_max))
    end = ms.timestep(torch.tensor(ms.sigma_min))
    append_zero = True
    if sgm:
        timesteps = torch.linspace(start, end, steps + 1)[:-1]
    else:
        if math.isclose(float(ms.sigma(end)), 0, abs_tol=0.00001):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(start, end, steps)
    sigs = [float(ms.sigma(t)) for t in timesteps]
    return torch.FloatTensor(sigs + [0.0] if append_zero else sigs)


def sgm_uniform_sigmas(ms: ModelSampling, steps: int) -> torch.Tensor:
    """The normal schedule over steps + 1 points with the last dropped (SGM/SDXL-turbo style)."""
    return normal_sigmas(ms, steps, sgm=True)


def beta_sigmas(ms: ModelSampling, steps: int, alpha: float = 0.6, beta: float = 0.6) -> torch.Tensor:
    """Timesteps at Beta(alpha, beta) quantiles (arXiv 2407.12173), duplicates dropped, then 0."""
    from scipy import stats

    total = len(ms.sigmas) - 1
    ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), alpha, beta) * total)
    sigs: list[float] = []
    last = -1.0
    for t in ts:
        if t != last:
            sigs.append(float(ms.sigmas[int(t)]))
        last = t
    return torch.FloatTensor([*sigs, 0.0])


def linear_quadratic_sigmas(
    ms: ModelSampling, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None
) -> torch.Tensor:
    """Linear then quadratic in 1 - sigma/sigma_max (Movie Gen / LTX style), times sigma_max."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        linear_steps = steps // 2 if linear_steps is None else linear_steps
        linear = [i * threshold_noise / linear_steps for i in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quad_coef = step_diff / (linear_steps * quadratic_steps**2)
        lin_coef = threshold_noise / linear_steps - 2 * step_diff / (quadratic_steps**2)
        const = quad_coef * (linear_steps**2)
        quadratic = [quad_coef * (i**2) + lin_coef * i + const for i in range(linear_steps, steps)]
        schedule = [1.0 - x for x in [*linear, *quadratic, 1.0]]
    return torch.FloatTensor(schedule) * ms.sigmas[-1]


_BY_TABLE: dict[str, Callable[[ModelSampling, int], torch.Tensor]] = {
    "simple": simple_sigmas,
    "sgm_uniform": sgm_uniform_sigmas,
    "ddim_uniform": ddim_uniform_sigmas,
    "beta": beta_sigmas,
    "normal": normal_sigmas,
    "linear_quadratic": linear_quadratic_sigmas,
}
_BY_RANGE: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "karras": karras_sigmas,
    "exponential": exponential_sigmas,
    "kl_optimal": kl_optimal_sigmas,
}


def schedule(ms: ModelSampling, scheduler: str, steps: int) -> torch.Tensor:
    """float32 sigmas [steps + 1] (ending at 0) for a scheduler name."""
    if scheduler in _BY_TABLE:
        return _BY_TABLE[scheduler](ms, steps)
    if scheduler in _BY_RANGE:
        return _BY_RANGE[scheduler](steps, ms.sigma_min, ms.sigma_max)
    raise ValueError(f"unknown scheduler {scheduler!r}; valid: {', '.join(SCHEDULER_NAMES)}")


def sampler_sigmas(ms: ModelSampling, scheduler: str, sampler: str, steps: int) -> torch.Tensor:
    """The schedule a sampler uses: some samplers compute steps + 1 and drop the penultimate sigma."""
    if sampler in DISCARD_PENULTIMATE:
        sigmas = schedule(ms, scheduler, steps + 1)
        return torch.cat([sigmas[:-2], sigmas[-1:]])
    return schedule(ms, scheduler, steps)


def ksampler_sigmas(
    ms: ModelSampling,
    scheduler: str,
    sampler: str,
    steps: int,
    denoise: float = 1.0,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
) -> torch.Tensor:
    """KSampler's sigmas after denoise (tail of a longer schedule) and start/end step trimming.

    An empty result means "return the input latent unchanged".
    """
    if denoise > 0.9999:
        sigmas = sampler_sigmas(ms, scheduler, sampler, steps)
    elif denoise <= 0.0:
        return torch.FloatTensor([])
    else:
        sigmas = sampler_sigmas(ms, scheduler, sampler, int(steps / denoise))[-(steps + 1) :]
    if last_step is not None and last_step < len(sigmas) - 1:
        sigmas = sigmas[: last_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_step is not None:
        if start_step >= len(sigmas) - 1:
            return torch.FloatTensor([])
        sigmas = sigmas[start_step:]
    return sigmas

"""Samplers and schedules against k-diffusion 0.1.1 (MIT, test-only oracle) on analytic and tiny models."""

from __future__ import annotations

import pytest
import torch

from nodes.sampling import schedulers
from nodes.sampling.common import SamplerRun
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.noise_samplers import BrownianTreeNoiseSampler
from nodes.sampling.samplers import SAMPLERS
from tests.nodes.sampling.kdiffusion_oracle import kdiffusion_sampling
from tests.nodes.sampling.toy_models import GaussianDenoiser, tiny_cfg_denoiser

MS = DiscreteModelSampling.create()
SEED = 1234


class SeededNoise:
    """Sequential N(0,1) draws from a seeded CPU generator, shaped like x (same stream for both sides)."""

    def __init__(self, x: torch.Tensor, seed: int = SEED):
        self.x, self.gen = x, torch.Generator().manual_seed(seed)

    def __call__(self, sigma, sigma_next):
        return torch.randn(self.x.shape, generator=self.gen, dtype=self.x.dtype)


def _kd_call(name: str, kd, model, x, sigmas, noise):
    """Call the k-diffusion sampler with the same algorithm as our `name`."""
    plain = {"euler", "heun", "dpm_2", "lms", "dpmpp_2m"}
    ancestral = {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"}
    if name in plain:
        return getattr(kd, f"sample_{name}")(model, x, sigmas, disable=True)
    if name in ancestral:
        return getattr(kd, f"sample_{name}")(model, x, sigmas, disable=True, noise_sampler=noise)
    sigma_min = sigmas[-1] if sigmas[-1] != 0 else sigmas[-2]
    if name == "dpm_fast":
        return kd.sample_dpm_fast(model, x, sigma_min, sigmas[0], len(sigmas) - 1, disable=True)
    if name == "dpm_adaptive":
        return kd.sample_dpm_adaptive(model, x, sigma_min, sigmas[0], disable=True)
    tree = kd.BrownianTreeNoiseSampler(x, sigmas[sigmas > 0].min(), sigmas.max(), seed=SEED)
    if name == "dpmpp_2m_sde_heun":
        return kd.sample_dpmpp_2m_sde(model, x, sigmas, disable=True, noise_sampler=tree, solver_type="heun")
    return getattr(kd, f"sample_{name}")(model, x, sigmas, disable=True, noise_sampler=tree)


# ComfyUI ends these on the x0 prediction where k-diffusion takes a full step to sigma 0, so they are
# compared on a schedule that stops at sigma_min (the final step is covered in test_step_latents).
ENDS_ON_X0 = {"lms"}


def _schedule(name: str, scheduler: str, steps: int) -> torch.Tensor:
    sigmas = schedulers.schedule(MS, scheduler, steps)
    return sigmas[:-1] if name in ENDS_ON_X0 else sigmas


KD_SAMPLERS = [
    "euler",
    "euler_ancestral",
    "heun",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_sde",
    "dpmpp_2m",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_heun",
    "dpmpp_3m_sde",
]


def _ours(name, model, x, sigmas, noise):
    run = SamplerRun(seed=SEED, noise_sampler=noise)
    if name.startswith(("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde")):
        run.noise_sampler = BrownianTreeNoiseSampler(
            x, sigmas[sigmas > 0].min(), sigmas.max(), SEED, cpu=True
        )
    return SAMPLERS[name](model, x, sigmas, run)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scheduler", ["karras", "exponential"])
@pytest.mark.parametrize("name", KD_SAMPLERS)
def test_sampler_matches_kdiffusion_on_analytic_denoiser(name, scheduler, dtype):
    kd = kdiffusion_sampling()
    sigmas = _schedule(name, scheduler, 10).to(dtype)
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 4, 8, 8, generator=gen) * sigmas[0]).to(dtype)
    model = GaussianDenoiser(torch.linspace(-1, 1, 8).to(dtype).reshape(1, 1, 1, 8))
    ours = _ours(name, model, x.clone(), sigmas, SeededNoise(x))
    theirs = _kd_call(name, kd, model, x.clone(), sigmas, SeededNoise(x))
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", KD_SAMPLERS)
def test_sampler_matches_kdiffusion_on_tiny_unet_with_cfg(name):
    kd = kdiffusion_sampling()
    model = tiny_cfg_denoiser(cfg=4.0)
    sigmas = _schedule(name, "karras", 8)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    ours = _ours(name, model, x.clone(), sigmas, SeededNoise(x))
    theirs = _kd_call(name, kd, model, x.clone(), sigmas, SeededNoise(x))
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize("steps", [1, 4, 25])
@pytest.mark.parametrize("scheduler", ["karras", "exponential"])
def test_schedule_matches_kdiffusion(scheduler, steps):
    kd = kdiffusion_sampling()
    theirs = getattr(kd, f"get_sigmas_{scheduler}")(steps, MS.sigma_min, MS.sigma_max)
    assert torch.equal(schedulers.schedule(MS, scheduler, steps), theirs)


def test_brownian_noise_matches_kdiffusion_tree():
    kd = kdiffusion_sampling()
    x = torch.zeros(2, 4, 8, 8)
    ours = BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), 7, cpu=True)
    theirs = kd.BrownianTreeNoiseSampler(x, torch.tensor(0.03), torch.tensor(14.6), seed=7)
    for a, b in [(14.6, 10.0), (10.0, 3.0), (3.0, 0.03)]:
        assert torch.allclose(
            ours(torch.tensor(a), torch.tensor(b)), theirs(torch.tensor(a), torch.tensor(b))
        )

"""Noise, model sampling, schedules and every sampler x scheduler on a tiny model."""

from __future__ import annotations

import pytest
import torch

from nodes.sampling import schedulers
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.sampling.noise import prepare_noise
from nodes.sampling.samplers import SAMPLER_NAMES, SampleRequest, sample
from nodes.sampling.schedulers import SCHEDULER_NAMES, ksampler_sigmas
from nodes.types import SD15_LATENT
from tests.nodes.sampling.toy_models import tiny_cfg_denoiser

MS = DiscreteModelSampling.create()


def test_model_sampling_sigma_table_matches_sd_schedule():
    assert MS.sigmas.dtype == torch.float32 and len(MS.sigmas) == 1000
    assert MS.sigma_min == pytest.approx(0.0292, abs=1e-4)
    assert MS.sigma_max == pytest.approx(14.6146, abs=1e-4)


def test_model_sampling_timestep_is_nearest_integer_in_log_sigma():
    t = MS.timestep(MS.sigmas[[0, 500, 999]] * 1.0001)
    assert t.tolist() == [0, 500, 999]
    assert torch.allclose(MS.sigma(torch.tensor([250.0])), MS.sigmas[250:251])


def test_model_sampling_max_denoise_uses_sqrt_one_plus_sigma_squared():
    noise, latents = torch.ones(1, 4, 2, 2), torch.zeros(1, 4, 2, 2)
    x = MS.noise_scaling(torch.tensor(MS.sigma_max), noise, latents, MS.is_max_denoise(MS.sigma_max))
    assert x[0, 0, 0, 0].item() == pytest.approx((1 + MS.sigma_max**2) ** 0.5, rel=1e-6)
    assert not MS.is_max_denoise(10.0)


def test_normal_schedule_matches_reference_chain_split():
    full = ksampler_sigmas(MS, "normal", "euler", 8)
    assert full[0].item() == pytest.approx(14.6146, abs=1e-4) and full[-1] == 0
    stage1 = ksampler_sigmas(MS, "normal", "euler", 8, last_step=4, force_full_denoise=False)
    assert len(stage1) == 5 and stage1[-1].item() == pytest.approx(1.2768, abs=1e-4)
    stage2 = ksampler_sigmas(MS, "karras", "dpmpp_2m", 8, start_step=4, last_step=8, force_full_denoise=True)
    assert stage2[0].item() == pytest.approx(0.8289, abs=1e-4) and stage2[-1] == 0


def test_ksampler_sigmas_denoise_takes_tail_of_longer_schedule():
    tail = ksampler_sigmas(MS, "karras", "euler", 10, denoise=0.5)
    assert torch.equal(tail, schedulers.schedule(MS, "karras", 20)[-11:])
    assert len(ksampler_sigmas(MS, "karras", "euler", 10, denoise=0.0)) == 0
    assert len(ksampler_sigmas(MS, "karras", "euler", 10, start_step=10)) == 0


def test_force_full_denoise_sets_last_sigma_to_zero():
    sig = ksampler_sigmas(MS, "normal", "euler", 8, last_step=4, force_full_denoise=True)
    assert len(sig) == 5 and sig[-1] == 0


def test_discard_penultimate_samplers_use_one_more_step():
    sig = ksampler_sigmas(MS, "karras", "dpm_2", 10)
    full = schedulers.schedule(MS, "karras", 11)
    assert len(sig) == 11 and torch.equal(sig, torch.cat([full[:-2], full[-1:]]))


@pytest.mark.parametrize("name", SCHEDULER_NAMES)
@pytest.mark.parametrize("steps", [1, 2, 7, 30])
def test_every_schedule_descends_from_near_sigma_max_to_zero(name, steps):
    sig = schedulers.schedule(MS, name, steps)
    # ddim_uniform's integer stride can give one extra step (1000 // 7 = 142 -> 8 steps), as in ComfyUI.
    extra = 1 if name == "ddim_uniform" else 0
    assert sig.dtype == torch.float32 and sig[-1] == 0 and len(sig) <= steps + 1 + extra
    assert (sig[:-1] >= sig[1:]).all()
    assert sig[0] <= MS.sigma_max * 1.0001


def test_noise_is_the_cpu_seed_stream_for_whole_batch():
    latents = torch.zeros(2, 4, 8, 8)
    expected = torch.randn(latents.shape, generator=torch.Generator().manual_seed(42))
    assert torch.equal(prepare_noise(latents, 42), expected)


def test_noise_batch_index_draws_per_item_and_reuses_duplicates():
    latents = torch.zeros(3, 4, 5, 5)
    gen = torch.Generator().manual_seed(5)
    draws = [torch.randn(1, 4, 5, 5, generator=gen) for _ in range(4)]
    noise = prepare_noise(latents, 5, (3, 1, 3))
    assert torch.equal(noise, torch.cat([draws[3], draws[1], draws[3]]))


def test_noise_accepts_full_uint64_seed_range():
    latents = torch.zeros(1, 4, 2, 2)
    assert not torch.equal(prepare_noise(latents, 2**64 - 1), prepare_noise(latents, 0))
    with pytest.raises(ValueError, match="outside"):
        prepare_noise(latents, 2**64)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_with_every_scheduler_runs_on_tiny_model(sampler, scheduler):
    denoiser = tiny_cfg_denoiser(cfg=3.0)
    sigmas = ksampler_sigmas(MS, scheduler, sampler, 4)
    latents = torch.zeros(1, 4, 8, 8)
    req = SampleRequest(latents, prepare_noise(latents, 3), sigmas, sampler, seed=3)
    steps: list[int] = []
    out = sample(denoiser, MS, SD15_LATENT, req, callback=lambda i, x0, x: steps.append(i))
    assert out.shape == latents.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert steps, "the step callback reports progress"


def test_sample_unknown_sampler_name_lists_valid_ones():
    latents = torch.zeros(1, 4, 8, 8)
    req = SampleRequest(latents, latents, ksampler_sigmas(MS, "simple", "euler", 2), "nope", seed=0)
    with pytest.raises(ValueError, match="euler, euler_cfg_pp"):
        sample(tiny_cfg_denoiser(), MS, SD15_LATENT, req)


def test_cfg_one_skips_the_negative_forward():
    denoiser = tiny_cfg_denoiser(cfg=1.0)
    calls = []
    inner = denoiser.unet
    denoiser.unet = lambda x, *a: calls.append(x.shape[0]) or inner(x, *a)
    denoiser(torch.zeros(2, 4, 8, 8), torch.tensor([1.0, 1.0]))
    assert calls == [2]
    denoiser.cfg = 7.0
    denoiser(torch.zeros(2, 4, 8, 8), torch.tensor([1.0, 1.0]))
    assert calls == [2, 4], "cond and uncond go through one batched forward"


def test_cfg_one_still_evaluates_the_negative_when_asked_for_cfg_pp():
    denoiser = tiny_cfg_denoiser(cfg=1.0)
    denoiser.uncond_at_cfg_1 = True
    calls = []
    inner = denoiser.unet
    denoiser.unet = lambda x, *a: calls.append(x.shape[0]) or inner(x, *a)
    x, sigma = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)), torch.tensor([2.0, 2.0])
    out = denoiser(x, sigma)
    assert calls == [4]
    assert not torch.equal(denoiser.uncond_denoised, torch.zeros_like(x))
    denoiser.uncond_at_cfg_1 = False
    torch.testing.assert_close(out, denoiser(x, sigma), rtol=1e-5, atol=1e-6)


def test_cfg_pads_prompts_of_different_lengths_by_repetition():
    from nodes.sampling.cfg import pad_embeds_to_common_length

    a, b = torch.randn(1, 77, 8), torch.randn(1, 154, 8)
    pa, pb = pad_embeds_to_common_length([a, b])
    assert pa.shape == pb.shape == (1, 154, 8) and torch.equal(pa[:, 77:], a)


def test_v_prediction_denoised_recovers_x0():
    ms_v = DiscreteModelSampling.create("v")
    x0, eps, sigma = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2), torch.tensor([3.0])
    x = x0 + eps * sigma
    alpha, sig = 1 / (1 + sigma**2) ** 0.5, sigma / (1 + sigma**2) ** 0.5
    v = alpha * eps - sig * x0
    torch.testing.assert_close(ms_v.calculate_denoised(sigma, v, x), x0, rtol=1e-5, atol=1e-5)

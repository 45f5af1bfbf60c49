"""KSampler / KSamplerAdvanced through the real executor on tiny checkpoints."""

from __future__ import annotations

import threading

import pytest
import torch

from engine import CancelToken
from engine.events import PreviewImage, Progress
from nodes.sampling.samplers import SAMPLER_NAMES
from tests.nodes.sampling.conftest import DATA, case_prompt, reference_prompt, retarget
from tests.shared_reference import needs_reference

SIZE = 64


def _txt2img(name: str, **sampler_inputs) -> dict:
    prompt = retarget(case_prompt("txt2img_euler_normal"), name, SIZE, drop=("8", "9"))
    prompt["3"]["inputs"].update({"steps": 3, **sampler_inputs})
    return prompt


def _latent(result, node: str) -> torch.Tensor:
    return result.node_outputs[node].LATENT.samples


def test_ksampler_reports_progress_per_step_and_returns_vae_space_latent(tiny_runner, tiny_sd15_name):
    result = tiny_runner.run(_txt2img(tiny_sd15_name))
    assert result.status == "success", result.error and result.error.data()
    progress = [(e.value, e.max) for e in tiny_runner.events if isinstance(e, Progress) and e.node == "3"]
    assert progress == [(i, 3) for i in range(1, 4)]
    samples = _latent(result, "3")
    assert samples.shape == (1, 4, SIZE // 8, SIZE // 8) and samples.dtype == torch.float32


def test_ksampler_same_seed_same_latent_other_seed_differs(tiny_runner, tiny_sd15_name):
    a = _latent(tiny_runner.run(_txt2img(tiny_sd15_name, seed=7, steps=1)), "3")
    b = _latent(tiny_runner.run(_txt2img(tiny_sd15_name, seed=7, steps=1)), "3")
    c = _latent(tiny_runner.run(_txt2img(tiny_sd15_name, seed=8, steps=1)), "3")
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_ksampler_accepts_largest_seed(tiny_runner, tiny_sd15_name):
    result = tiny_runner.run(_txt2img(tiny_sd15_name, seed=2**64 - 1, steps=1))
    assert result.status == "success"


def test_ksampler_unknown_sampler_is_a_validation_error(tiny_runner, tiny_sd15_name):
    checked = tiny_runner.validate(_txt2img(tiny_sd15_name, sampler_name="euler_magic"))
    assert not checked.ok
    errors = checked.node_errors["3"]["errors"]
    assert errors[0]["type"] == "value_not_in_list"
    assert errors[0]["extra_info"]["input_name"] == "sampler_name"
    assert "euler_magic" in errors[0]["details"]


def test_ksampler_unknown_scheduler_is_a_validation_error(tiny_runner, tiny_sd15_name):
    checked = tiny_runner.validate(_txt2img(tiny_sd15_name, scheduler="cosine"))
    assert not checked.ok and checked.node_errors["3"]["errors"][0]["type"] == "value_not_in_list"


def test_ksampler_denoise_zero_returns_input_latent(tiny_runner, tiny_sd15_name):
    result = tiny_runner.run(_txt2img(tiny_sd15_name, denoise=0.0))
    assert torch.equal(_latent(result, "3"), torch.zeros(1, 4, SIZE // 8, SIZE // 8))


def test_ksampler_previews_x0_each_step_when_enabled(tiny_runner, tiny_sd15_name):
    tiny_runner.run(_txt2img(tiny_sd15_name, steps=3), previews=True)
    previews = [e for e in tiny_runner.events if isinstance(e, PreviewImage)]
    # One per step at most: the preview worker skips a step only when it is still busy with an older one.
    assert 1 <= len(previews) <= 3 and previews[0].image.size == (SIZE // 8, SIZE // 8)
    tiny_runner.run(_txt2img(tiny_sd15_name, steps=3), previews=False)
    assert not [e for e in tiny_runner.events if isinstance(e, PreviewImage)]


def test_ksampler_cancel_stops_between_steps(tiny_runner, tiny_sd15_name):
    cancel = CancelToken()
    real = tiny_runner.executor

    def cancel_on_first_progress(event):
        tiny_runner.events.append(event)
        if isinstance(event, Progress):
            cancel.cancel()

    checked = tiny_runner.validate(_txt2img(tiny_sd15_name, steps=4))
    result = real.execute(
        checked.prompt,
        prompt_id="c",
        outputs=checked.outputs,
        sink=cancel_on_first_progress,
        cancel=cancel,
        force=True,
    )
    assert result.status == "interrupted"
    assert max(e.value for e in tiny_runner.events if isinstance(e, Progress)) < 4
    assert threading.active_count() >= 1


def test_chain_with_leftover_noise_matches_single_run(tiny_runner, tiny_sd15_name):
    chain = retarget(case_prompt("chain_euler_dpmpp2m"), tiny_sd15_name, SIZE, drop=("8", "9"))
    chain["3"]["inputs"].update(steps=4, end_at_step=2)
    chain["11"]["inputs"].update(sampler_name="euler", scheduler="normal", steps=4, start_at_step=2)
    result = tiny_runner.run(chain)
    progress = [(e.node, e.max) for e in tiny_runner.events if isinstance(e, Progress)]
    assert progress == [("3", 2)] * 2 + [("11", 2)] * 2
    single = tiny_runner.run(_txt2img(tiny_sd15_name, steps=4))
    torch.testing.assert_close(_latent(result, "11"), _latent(single, "3"), rtol=1e-4, atol=1e-4)


def test_ksampler_advanced_add_noise_disable_starts_from_input(tiny_runner, tiny_sd15_name):
    chain = retarget(case_prompt("chain_euler_dpmpp2m"), tiny_sd15_name, SIZE, drop=("8", "9"))
    chain["3"]["inputs"].update(add_noise="disable", steps=2, end_at_step=1)
    chain.pop("11")
    chain.pop("12")
    a = _latent(tiny_runner.run(chain), "3")
    chain["3"]["inputs"].update(noise_seed=99)
    b = _latent(tiny_runner.run(chain), "3")
    # Without noise an empty latent stays deterministic whatever the seed (euler is not stochastic).
    assert torch.equal(a, b)


def test_steps_output_is_materialised_only_when_linked(tiny_runner, tiny_sd15_name):
    prompt = _txt2img(tiny_sd15_name, steps=2)
    result = tiny_runner.run(prompt)
    assert result.node_outputs["3"].steps.steps.shape[0] == 0
    prompt["20"] = {
        "class_type": "LatentStepsToImages",
        "inputs": {"latent_steps": ["3", 1], "method": "preview", "batch_index": 0, "decode_batch": 8},
    }
    prompt["21"] = {"class_type": "PreviewImage", "inputs": {"images": ["20", 0]}}
    result = tiny_runner.run(prompt)
    seq = result.node_outputs["3"].steps.steps
    assert seq.shape == (2, 1, 4, SIZE // 8, SIZE // 8)
    torch.testing.assert_close(seq[-1], _latent(result, "3"))


@pytest.mark.parametrize("sampler", ["dpmpp_2m_sde", "uni_pc", "sa_solver"])
def test_ksampler_runs_other_samplers_on_tiny_model(tiny_runner, tiny_sd15_name, sampler):
    result = tiny_runner.run(_txt2img(tiny_sd15_name, sampler_name=sampler, scheduler="karras", steps=2))
    assert result.status == "success", result.error and result.error.data()
    assert torch.isfinite(_latent(result, "3")).all()


def test_sampler_list_covers_comfyui_names_for_eps_models():
    for name in ("euler", "dpmpp_2m", "dpmpp_3m_sde_gpu", "ddim", "uni_pc", "uni_pc_bh2", "lcm", "ipndm_v"):
        assert name in SAMPLER_NAMES


def test_uni_pc_steps_output_matches_euler_scale_through_ksampler(tiny_runner, tiny_sd15_name):
    prompt = retarget(case_prompt("txt2img_euler_normal"), tiny_sd15_name, SIZE, drop=("8", "9"))
    prompt["20"] = {
        "class_type": "LatentStepsToImages",
        "inputs": {"latent_steps": ["3", 1], "method": "preview", "batch_index": 0, "decode_batch": 8},
    }
    prompt["21"] = {"class_type": "PreviewImage", "inputs": {"images": ["20", 0]}}
    sequences = {}
    for sampler in ("euler", "uni_pc"):
        prompt["3"]["inputs"].update(sampler_name=sampler, scheduler="karras", steps=2)
        result = tiny_runner.run(prompt)
        assert result.status == "success", result.error and result.error.data()
        sequences[sampler] = result.node_outputs["3"].steps.steps
        torch.testing.assert_close(sequences[sampler][-1], result.node_outputs["3"].LATENT.samples)
    # After step 1 both latents sit at about the same noise level (uni_pc's schedule differs slightly).
    rms = {name: float(seq[0].pow(2).mean().sqrt()) for name, seq in sequences.items()}
    ratio = rms["uni_pc"] / rms["euler"]
    assert 0.7 < ratio < 1.4, ratio


@pytest.mark.parametrize(("sampler", "negative_matters"), [("euler_cfg_pp", True), ("euler", False)])
def test_ksampler_cfg_pp_uses_the_negative_at_cfg_one(tiny_runner, tiny_sd15_name, sampler, negative_matters):
    # ComfyUI's CFG++ samplers disable the cfg-1 shortcut: their step follows the uncond prediction.
    prompt = retarget(case_prompt("txt2img_euler_normal"), tiny_sd15_name, SIZE, drop=("8", "9"))
    prompt["3"]["inputs"].update(sampler_name=sampler, cfg=1.0, steps=2)
    latents = []
    for negative in ("blurry, low quality", "a red bicycle"):
        prompt["7"]["inputs"]["text"] = negative
        result = tiny_runner.run(prompt)
        assert result.status == "success", result.error and result.error.data()
        latents.append(result.node_outputs["3"].LATENT.samples)
    assert torch.equal(latents[0], latents[1]) != negative_matters


@needs_reference
@pytest.mark.parametrize("case", ["txt2img_euler_normal", "chain_euler_dpmpp2m"])
def test_sampler_case_copies_equal_the_shared_reference(case):
    assert case_prompt(case) == reference_prompt(case), f"{DATA / case}.json differs from the shared case"

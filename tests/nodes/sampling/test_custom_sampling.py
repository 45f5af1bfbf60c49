"""The custom-sampling family: ComfyUI's interface facts, its schedule numbers, and one shared loop."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine import Registry
from nodes.defs import custom_sampling, sampler_select, sigma_nodes
from nodes.sampling.cfg import CfgDenoiser
from nodes.sampling.guiders import DualCfgDenoiser
from nodes.sampling.model_sampling import DiscreteModelSampling
from nodes.types import CondEntry, Conditioning, Guider
from tests.nodes.sampling.conftest import reference_prompt, retarget

DATA = Path(__file__).resolve().parents[1] / "data"
FACTS = json.loads((DATA / "comfyui_custom_sampling_facts.json").read_text())["nodes"]
SIGMA_CASES = json.loads((DATA / "comfyui_sigma_nodes.json").read_text())["cases"]
NODES = [c for m in (custom_sampling, sampler_select, sigma_nodes) for c in m.NODES]
SIZE = 64
# What a workflow depends on; display-only keys (tooltips, V3's multiselect False) are left out.
INTERFACE_KEYS = {"options", "default", "min", "max", "step", "round", "control_after_generate"}


def _interface(spec: list) -> tuple:
    """An input spec as comparable facts; ComfyUI leaves some defaults implicit that we state."""
    kind, options = spec[0], dict(spec[1]) if len(spec) > 1 else {}
    if isinstance(kind, list):
        kind, options["options"] = "COMBO", kind
    if kind == "COMBO":
        options.setdefault("default", options["options"][0])
    if kind == "BOOLEAN":
        options.setdefault("default", False)
    return kind, {k: v for k, v in options.items() if k in INTERFACE_KEYS}


@pytest.mark.parametrize("name", sorted(FACTS))
def test_custom_sampling_node_interface_matches_comfyui(name):
    ours = Registry(NODES).object_info()[name]
    facts = FACTS[name]
    for section in ("required", "optional"):
        theirs, mine = facts["input"].get(section, {}), ours["input"].get(section, {})
        assert list(mine) == list(theirs), f"{name} {section} input names/order"
        for key in theirs:
            t_kind, t_opts = _interface(theirs[key])
            m_kind, m_opts = _interface(mine[key])
            assert m_kind == t_kind, f"{name}.{key} type"
            if key == "sampler_name":
                # We offer newer ComfyUI samplers too; ComfyUI 0.3.64's list must appear in its order.
                it = iter(m_opts.pop("options"))
                assert all(option in it for option in t_opts.pop("options")), f"{name}.{key} options"
            for option, value in t_opts.items():
                assert m_opts.get(option) == value, f"{name}.{key} {option}"
    for key in ("output", "output_name", "output_is_list", "category"):
        assert ours[key] == facts[key], f"{name} {key}"


def _run_node(cls, inputs: dict):
    """Run a node outside the executor (these need no context)."""
    from nodes.diffusion.model_handle import DiffusionModel
    from nodes.diffusion.recipe import ComponentRecipe
    from nodes.types import Sigmas

    values = dict(inputs)
    if "model" in values:
        values["model"] = DiffusionModel(ComponentRecipe("unused", "sd15", "unet"))
    if "sigmas" in values:
        values["sigmas"] = Sigmas(torch.tensor(values["sigmas"], dtype=torch.float32))
    return cls().run(None, cls.Inputs(**values))


@pytest.mark.parametrize("case", SIGMA_CASES, ids=lambda c: c["node"])
def test_sigma_nodes_match_comfyui(case):
    cls = next(c for c in NODES if c.class_type == case["node"])
    out = _run_node(cls, case["inputs"])
    values = [getattr(out, field).sigmas for field in type(out).model_fields]
    assert len(values) == len(case["outputs"])
    for ours, theirs in zip(values, case["outputs"], strict=True):
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float32), rtol=1e-6, atol=1e-7)


def test_gits_scheduler_refuses_coefficients_without_a_schedule():
    assert sigma_nodes.GITSScheduler.validate_inputs({"coeff": 0.83}, None)
    assert sigma_nodes.GITSScheduler.validate_inputs({"coeff": 1.25}, None) is None


def test_dpm_adaptive_refuses_stochastic_eta_instead_of_ignoring_it():
    assert "not supported" in sampler_select.SamplerDPMAdaptative.validate_inputs({"eta": 0.5}, None)


def _cond(value: float) -> Conditioning:
    return Conditioning((CondEntry(embeds=torch.full((1, 2, 3), value)),))


def test_dual_cfg_guider_combines_three_predictions_as_comfyui():
    ms = DiscreteModelSampling.create("eps")

    def unet(x_in, timesteps, embeds, pooled, extras):
        # A per-conditioning constant eps makes each prediction easy to tell apart.
        return embeds[:, :1, :1].reshape(-1, 1, 1, 1).expand_as(x_in)

    conds = {"positive": _cond(3.0), "middle": _cond(2.0), "negative": _cond(-1.0)}
    x, sigma = torch.ones(1, 4, 2, 2), torch.tensor([2.0])
    base = CfgDenoiser(unet, ms, (), (), 1.0)
    pos, mid, neg = (base.denoise_groups(x, sigma, [list(conds[k].entries)])[0] for k in conds)
    regular = DualCfgDenoiser(base, Guider(None, "dual_cfg", conds, cfg=4.0, cfg2=2.5), False, False)
    torch.testing.assert_close(regular(x, sigma), neg + (mid - neg) * 2.5 + (pos - mid) * 4.0)
    nested = DualCfgDenoiser(base, Guider(None, "dual_cfg_nested", conds, cfg=4.0, cfg2=2.5), True, False)
    torch.testing.assert_close(nested(x, sigma), neg + 2.5 * ((mid + (pos - mid) * 4.0) - neg))
    skip = DualCfgDenoiser(base, Guider(None, "dual_cfg", conds, cfg=1.0, cfg2=1.0), False, False)
    torch.testing.assert_close(skip(x, sigma), pos)


def _custom_advanced(ckpt: str, sampler: dict, steps: int = 3, cfg: float = 7.0) -> dict:
    """txt2img as noise + CFG guider + sampler + BasicScheduler parts (the KSampler case's inputs)."""
    prompt = retarget(reference_prompt("txt2img_euler_normal"), ckpt, SIZE, drop=("8", "9"))
    ks = prompt.pop("3")["inputs"]
    prompt.update(
        {
            "20": {"class_type": "RandomNoise", "inputs": {"noise_seed": ks["seed"]}},
            "21": {
                "class_type": "CFGGuider",
                "inputs": {
                    "model": ks["model"],
                    "positive": ks["positive"],
                    "negative": ks["negative"],
                    "cfg": cfg,
                },
            },
            "22": sampler,
            "23": {
                "class_type": "BasicScheduler",
                "inputs": {
                    "model": ks["model"],
                    "scheduler": ks["scheduler"],
                    "steps": steps,
                    "denoise": 1.0,
                },
            },
            "24": {
                "class_type": "SamplerCustomAdvanced",
                "inputs": {
                    "noise": ["20", 0],
                    "guider": ["21", 0],
                    "sampler": ["22", 0],
                    "sigmas": ["23", 0],
                    "latent_image": ks["latent_image"],
                },
            },
        }
    )
    # The case's SaveLatent output keeps the prompt runnable; it now saves the custom sampler's result.
    prompt["10"]["inputs"]["samples"] = ["24", 0]
    return prompt


def _ksampler(ckpt: str, sampler_name: str, steps: int = 3) -> dict:
    prompt = retarget(reference_prompt("txt2img_euler_normal"), ckpt, SIZE, drop=("8", "9"))
    prompt["3"]["inputs"].update(steps=steps, sampler_name=sampler_name)
    return prompt


@pytest.mark.parametrize("sampler_name", ["euler", "dpmpp_2m", "euler_ancestral"])
def test_sampler_custom_advanced_equals_ksampler_with_the_same_parts(
    tiny_runner, tiny_sd15_name, sampler_name
):
    select = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler_name}}
    custom = tiny_runner.run(_custom_advanced(tiny_sd15_name, select))
    assert custom.status == "success", custom.error and custom.error.data()
    plain = tiny_runner.run(_ksampler(tiny_sd15_name, sampler_name))
    assert torch.equal(custom.node_outputs["24"].output.samples, plain.node_outputs["3"].LATENT.samples)
    # The last step ends at sigma 0, where the clean estimate is the result itself.
    torch.testing.assert_close(
        custom.node_outputs["24"].denoised_output.samples, custom.node_outputs["24"].output.samples
    )


def test_sampler_euler_ancestral_s_noise_changes_the_result_and_default_matches(tiny_runner, tiny_sd15_name):
    def run(s_noise: float) -> torch.Tensor:
        node = {"class_type": "SamplerEulerAncestral", "inputs": {"eta": 1.0, "s_noise": s_noise}}
        result = tiny_runner.run(_custom_advanced(tiny_sd15_name, node))
        assert result.status == "success", result.error and result.error.data()
        return result.node_outputs["24"].output.samples

    plain = tiny_runner.run(_ksampler(tiny_sd15_name, "euler_ancestral")).node_outputs["3"].LATENT.samples
    assert torch.equal(run(1.0), plain)
    assert not torch.allclose(run(0.5), plain)


def test_split_sigmas_two_pass_chain_equals_one_pass_for_a_deterministic_sampler(tiny_runner, tiny_sd15_name):
    select = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    prompt = _custom_advanced(tiny_sd15_name, select, steps=4)
    one_pass = tiny_runner.run(prompt).node_outputs["24"].output.samples
    prompt["30"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["23", 0], "step": 2}}
    prompt["31"] = {"class_type": "DisableNoise", "inputs": {}}
    prompt["24"]["inputs"]["sigmas"] = ["30", 0]
    prompt["32"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["31", 0],
            "guider": ["21", 0],
            "sampler": ["22", 0],
            "sigmas": ["30", 1],
            "latent_image": ["24", 0],
        },
    }
    prompt["10"]["inputs"]["samples"] = ["32", 0]
    result = tiny_runner.run(prompt)
    assert result.status == "success", result.error and result.error.data()
    two_pass = result.node_outputs["32"].output.samples
    torch.testing.assert_close(two_pass, one_pass, rtol=1e-5, atol=1e-5)
    # Halfway the latent is still noisy, and denoised_output is the model's clean estimate instead.
    first = result.node_outputs["24"]
    assert (first.output.samples - first.denoised_output.samples).abs().mean() > 1.0


def test_custom_sampling_reference_graph_runs_on_a_tiny_checkpoint(tiny_runner, tiny_sd15_name):
    case = DATA / "custom_sampling_sd15" / "workflow_api.json"
    prompt = retarget(json.loads(case.read_text()), tiny_sd15_name, SIZE)
    result = tiny_runner.run(prompt)
    assert result.status == "success", result.error and result.error.data()
    assert result.node_outputs["35"].output.samples.shape == (1, 4, SIZE // 8, SIZE // 8)

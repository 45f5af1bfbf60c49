"""Model patch nodes (FreeU, FreeU_V2, PAG, SAG, RescaleCFG, EasyCache) on tiny checkpoints: they change the result,
stack, leave the stored UNet untouched, and re-run only what depends on them."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from tests.nodes.sampling.conftest import PromptRunner, retarget

CASES = Path(__file__).parent / "data" / "model_patches"
PATCH_NODE = "11"
SAMPLER = "3"


def _prompt(case: str, arch: str = "sd15", size: int = 128) -> dict:
    # 128 px: FreeU_V2 normalises over the deepest features, which must span more than one pixel.
    prompt = json.loads((CASES / case / "workflow_api.json").read_text())
    return retarget(prompt, f"tiny-{arch}.safetensors", size=size)


def _unpatched(prompt: dict) -> dict:
    out = {k: v for k, v in prompt.items() if k != PATCH_NODE}
    out[SAMPLER] = {**out[SAMPLER], "inputs": {**out[SAMPLER]["inputs"], "model": ["4", 0]}}
    return out


@pytest.fixture(scope="module")
def runner(tiny_models_dir, tmp_path_factory) -> PromptRunner:
    from engine.devices import DevicePolicy
    from engine.model_store import ModelStore

    return PromptRunner(
        tiny_models_dir, ModelStore(DevicePolicy.from_env(device="cpu")), tmp_path_factory.mktemp("mp")
    )


def _latent(runner: PromptRunner, prompt: dict, force: bool = True) -> torch.Tensor:
    result = runner.run(prompt, force=force)
    assert result.status == "success", result.error and result.error.data()
    return result.node_outputs[SAMPLER].LATENT.samples


@pytest.mark.parametrize("case", ["freeu_v2", "pag", "sag", "rescale_cfg"])
@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_model_patch_changes_the_sampled_latent(runner, case, arch):
    prompt = _prompt(case, arch)
    patched = _latent(runner, prompt)
    plain = _latent(runner, _unpatched(prompt))
    assert torch.isfinite(patched).all()
    assert not torch.allclose(patched, plain), f"{case} left the latent unchanged"


def test_freeu_v1_differs_from_v2_and_patches_stack(runner):
    prompt = _prompt("freeu_v2")
    v2 = _latent(runner, prompt)
    v1_prompt = json.loads(json.dumps(prompt))
    v1_prompt[PATCH_NODE]["class_type"] = "FreeU"
    v1 = _latent(runner, v1_prompt)
    assert not torch.allclose(v1, v2)
    stacked = json.loads(json.dumps(prompt))
    stacked["12"] = {"class_type": "RescaleCFG", "inputs": {"model": [PATCH_NODE, 0], "multiplier": 0.7}}
    stacked[SAMPLER]["inputs"]["model"] = ["12", 0]
    both = _latent(runner, stacked)
    assert not torch.allclose(both, v2)


def test_pag_at_scale_zero_equals_the_unpatched_model(runner):
    prompt = _prompt("pag")
    prompt[PATCH_NODE]["inputs"]["scale"] = 0.0
    torch.testing.assert_close(_latent(runner, prompt), _latent(runner, _unpatched(prompt)), rtol=0, atol=0)


def test_rescale_cfg_at_multiplier_zero_is_plain_cfg(runner):
    prompt = _prompt("rescale_cfg")
    prompt[PATCH_NODE]["inputs"]["multiplier"] = 0.0
    torch.testing.assert_close(
        _latent(runner, prompt), _latent(runner, _unpatched(prompt)), rtol=1e-5, atol=1e-4
    )


def _stored_unets(store) -> list:
    return [
        m
        for key in list(store.keys())
        if hasattr(m := store.get(key, lambda: None, to_device=False), "up_blocks")
    ]


def _state(unet) -> tuple[dict, dict]:
    processors = {n: type(p).__name__ for n, p in unet.attn_processors.items()}
    modules = {n: type(m).__name__ for n, m in unet.named_modules()}
    return processors, modules


def test_patched_run_leaves_the_stored_unet_untouched(runner):
    prompt = _prompt("sag")
    plain_before = _latent(runner, _unpatched(prompt))
    unets = _stored_unets(runner.env.models)
    assert unets
    before = [_state(u) for u in unets]
    weights = [{k: v.clone() for k, v in u.state_dict().items()} for u in unets]
    for case in ("freeu_v2", "sag", "pag", "rescale_cfg"):
        _latent(runner, _prompt(case))
    assert [_state(u) for u in unets] == before
    for u, w in zip(unets, weights, strict=True):
        for k, v in u.state_dict().items():
            assert torch.equal(v, w[k]), k
    torch.testing.assert_close(_latent(runner, _unpatched(prompt)), plain_before, rtol=0, atol=0)


def _cached_nodes(runner: PromptRunner) -> set[str]:
    return {n for e in runner.events if type(e).__name__ == "ExecutionCached" for n in e.nodes}


def test_adding_a_patch_reruns_only_its_dependants(runner):
    prompt = _prompt("freeu_v2")
    # Settings and seed no other test uses on this runner, so nothing downstream of the loader is cached.
    prompt[SAMPLER]["inputs"]["seed"] = 9001
    prompt[PATCH_NODE]["inputs"]["b1"] = 1.37
    runner.run(_unpatched(prompt), force=False)
    result = runner.run(prompt, force=False)
    assert result.status == "success"
    cached = _cached_nodes(runner)
    # The loader, both text encodings and the empty latent come from the cache; the patch and sampler run.
    assert {"4", "6", "7", "5"} <= cached
    assert PATCH_NODE not in cached and SAMPLER not in cached
    runner.run(prompt, force=False)
    assert {PATCH_NODE, SAMPLER} <= _cached_nodes(runner)


def test_two_different_patches_give_different_cache_keys(runner):
    first = _prompt("freeu_v2")
    first[SAMPLER]["inputs"]["seed"] = 9002
    second = json.loads(json.dumps(first))
    second[PATCH_NODE]["inputs"]["b1"] = 1.1
    a = _latent(runner, first, force=False)
    b = _latent(runner, second, force=False)
    assert SAMPLER not in _cached_nodes(runner)
    assert not torch.allclose(a, b)


def test_patch_options_stack_in_comfyui_order():
    from nodes.diffusion.unet_patches import ModelOptions

    opts = ModelOptions()
    opts.add_patch("output_block_patch", "a")
    opts.add_patch("output_block_patch", "b")
    opts.set_replace("attn1", "first", "middle", 0)
    opts.set_replace("attn1", "second", "middle", 0)
    opts.set_replace("attn1", "exact", "middle", 0, 1)
    opts.set_cfg_function("cfg1")
    opts.set_cfg_function("cfg2")
    opts.add_post_cfg_function("p1")
    opts.add_post_cfg_function("p2", disable_cfg1_optimization=True)
    assert opts.patches["output_block_patch"] == ["a", "b"]
    assert opts.find_replace("attn1", ("middle", 0), 0) == "second"
    assert opts.find_replace("attn1", ("middle", 0), 1) == "exact"
    assert opts.find_replace("attn1", ("input", 1), 0) is None
    assert opts.sampler_cfg_function == "cfg2"
    assert opts.sampler_post_cfg_function == ["p1", "p2"] and opts.disable_cfg1_optimization
    extra = opts.with_replace("attn2", "x", "output", 3)
    assert "attn2" in extra.replace and "attn2" not in opts.replace


@pytest.fixture(scope="module")
def tiny_unet(tiny_sd15_path):
    from engine.devices import DevicePolicy
    from engine.model_store import ModelStore
    from nodes.defs.loaders import checkpoint_outputs

    store = ModelStore(DevicePolicy.from_env(device="cpu"))
    model, _, _ = checkpoint_outputs(store, tiny_sd15_path)
    return model.load(store)


def _unet_inputs(unet):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=g)
    t = torch.tensor([500.0, 500.0])
    ctx = torch.randn(2, 77, unet.config.cross_attention_dim, generator=g)
    return x, t, ctx


def _call(view, x, t, ctx, options):
    opts = {"model_options": options, "cond_or_uncond": [1, 0], "sigmas": torch.ones(2)}
    with torch.no_grad():
        return view(x, t, ctx, opts, return_dict=False)[0]


def test_unet_view_without_active_hooks_equals_the_plain_unet(tiny_unet):
    from nodes.diffusion.unet_patches import ModelOptions
    from nodes.diffusion.unet_view import UnetView, multihead_attention

    x, t, ctx = _unet_inputs(tiny_unet)
    with torch.no_grad():
        plain = tiny_unet(x, t, encoder_hidden_states=ctx, return_dict=False)[0]
    view = UnetView(tiny_unet)
    torch.testing.assert_close(_call(view, x, t, ctx, ModelOptions()), plain, rtol=0, atol=0)
    seen: list = []
    opts = ModelOptions()
    opts.add_patch("output_block_patch", lambda h, hsp, extra: (seen.append(extra["block"]) or h, hsp))
    opts.add_patch("input_block_patch", lambda h, extra: seen.append(extra["block"]) or h)
    opts.set_replace(
        "attn1", lambda q, k, v, extra: multihead_attention(q, k, v, extra["n_heads"]), "middle", 0
    )
    torch.testing.assert_close(_call(view, x, t, ctx, opts), plain, rtol=1e-5, atol=1e-5)
    # ComfyUI's SD1.5 block numbering: 12 input blocks, 12 output blocks.
    assert [b for b in seen if b[0] == "input"] == [("input", i) for i in range(12)]
    assert [b for b in seen if b[0] == "output"] == [("output", i) for i in range(12)]


def test_unet_view_output_block_patch_sees_comfyui_channel_split(tiny_unet):
    from nodes.diffusion.unet_patches import ModelOptions
    from nodes.diffusion.unet_view import UnetView

    x, t, ctx = _unet_inputs(tiny_unet)
    shapes: list = []
    opts = ModelOptions()
    opts.add_patch(
        "output_block_patch", lambda h, hsp, extra: (shapes.append((h.shape[1], hsp.shape[1])) or h, hsp)
    )
    _call(UnetView(tiny_unet), x, t, ctx, opts)
    mc = tiny_unet.config.block_out_channels[0]
    # (flowing, skip) channels per output block of an SD1.5 layout with channel mults 1, 2, 4, 4.
    expected = [(4 * mc, 4 * mc)] * 3 + [(4 * mc, 4 * mc)] * 2 + [(4 * mc, 2 * mc)]
    expected += [(4 * mc, 2 * mc), (2 * mc, 2 * mc), (2 * mc, mc), (2 * mc, mc), (mc, mc), (mc, mc)]
    assert shapes == expected


def test_dual_cfg_guider_refuses_guidance_patches():
    from engine import UserFacingError
    from nodes.diffusion.model_handle import DiffusionModel
    from nodes.diffusion.model_patches import RescaleCfgPatch
    from nodes.diffusion.recipe import ComponentRecipe
    from nodes.diffusion.unet_patches import ModelInfo, compile_patches
    from nodes.sampling.guiders import guider_denoiser
    from nodes.sampling.model_sampling import DiscreteModelSampling
    from nodes.types import Conditioning, Guider

    model = DiffusionModel(ComponentRecipe("x.safetensors", "sd15", "unet"))
    empty = Conditioning(entries=())
    guider = Guider(model, "dual_cfg", {"positive": empty, "middle": empty, "negative": empty}, 5.0, 2.0)
    options = compile_patches((RescaleCfgPatch(0.7),), ModelInfo(model_channels=320))
    with pytest.raises(UserFacingError, match="guidance patches"):
        guider_denoiser(guider, lambda *a: a[0], DiscreteModelSampling.create("eps"), False, None, options)


def test_easycache_on_a_unet_skips_steps_and_at_threshold_zero_changes_nothing(runner, caplog):
    prompt = _prompt("pag")
    prompt[PATCH_NODE] = {
        "class_type": "EasyCache",
        "inputs": {
            "model": ["4", 0],
            "reuse_threshold": 3.0,
            "start_percent": 0.1,
            "end_percent": 1.0,
            "verbose": True,
        },
    }
    prompt[SAMPLER]["inputs"]["steps"] = 8
    with caplog.at_level(logging.INFO, logger="nodes.diffusion.easycache"):
        cached = _latent(runner, prompt)
    assert any("reusing" in r.getMessage() for r in caplog.records)
    plain = _latent(runner, _unpatched(prompt))
    assert torch.isfinite(cached).all() and not torch.allclose(cached, plain)
    prompt[PATCH_NODE]["inputs"]["reuse_threshold"] = 0.0
    torch.testing.assert_close(_latent(runner, prompt), plain, rtol=0, atol=0)

"""CLIPTextEncode semantics on tiny models and equality with an independent transformers CLIP call.

The reference models come from tests/nodes/clip_reference.py (transformers' own loading, no diffgraph
conversion code); ComfyUI's per-family rules are written out here as facts: which layer, whether the
final layer norm follows, and which token pads the 77-token window.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from nodes.defs.loaders import CheckpointLoaderSimple, CLIPSetLastLayer
from nodes.defs.text import CLIPTextEncode, CLIPTextEncodeSDXL
from nodes.diffusion import loader
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.text_encode import encode_prompt
from nodes.diffusion.tokenizer import encode
from tests.nodes.clip_reference import padded_ids, reference_clip, reference_hidden
from tests.nodes.helpers_models import make_ctx
from tests.shared_reference import CASES, needs_reference

CPU = torch.device("cpu")
PROMPTS = ["a photo of a cat sitting on a windowsill, highly detailed", "blurry, low quality"]


def _stack(store, path):
    _, recipes = loader.load_checkpoint_into(store, path)
    return loader.load_component_into(store, recipes["clip"])


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sd2-v", "sdxl", "sdxl-refiner"])
def test_clip_text_encode_every_family(arch, tiny_models_dir, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    clip = (
        CheckpointLoaderSimple()
        .run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=f"tiny-{arch}.safetensors"))
        .CLIP
    )
    cond = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="a (cat:1.2)", clip=clip)).CONDITIONING
    entry = cond.entries[0]
    width = {"sdxl": 128}.get(arch, 64)
    assert entry.embeds.shape == (1, 77, width) and entry.pooled.shape == (1, 64)
    assert torch.isfinite(entry.embeds).all()


def test_clip_set_last_layer_node_changes_encoding(tiny_models_dir, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    clip = (
        CheckpointLoaderSimple()
        .run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name="tiny-sd15.safetensors"))
        .CLIP
    )
    skipped = CLIPSetLastLayer().run(ctx, CLIPSetLastLayer.Inputs(clip=clip, stop_at_clip_layer=-2)).CLIP
    a = CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text="cat", clip=clip)).CONDITIONING.entries[0].embeds
    b = (
        CLIPTextEncode()
        .run(ctx, CLIPTextEncode.Inputs(text="cat", clip=skipped))
        .CONDITIONING.entries[0]
        .embeds
    )
    assert skipped.layer == -2 and not torch.allclose(a, b)


def test_emphasis_interpolates_from_empty_prompt(tiny_sd15_path, model_store):
    stack = _stack(model_store, tiny_sd15_path)
    plain = encode_prompt(stack, "red cat", None, CPU, torch.float32).embeds
    weighted = encode_prompt(stack, "red (cat:1.5)", None, CPU, torch.float32).embeds
    empty = encode_prompt(stack, "", None, CPU, torch.float32).embeds
    torch.testing.assert_close(
        weighted[:, 2], (plain[:, 2] - empty[:, 2]) * 1.5 + empty[:, 2], rtol=0, atol=1e-5
    )
    torch.testing.assert_close(weighted[:, 1], plain[:, 1])


def test_long_prompt_concatenates_windows(tiny_sd15_path, model_store):
    stack = _stack(model_store, tiny_sd15_path)
    entry = encode_prompt(stack, "cat " * 100, None, CPU, torch.float32)
    assert entry.embeds.shape == (1, 154, 64)


# ComfyUI's facts per family and encoder: (file prefix, open_clip layout, pad token, layer, final LN).
ENCODERS = {
    "sd15": [("cond_stage_model.transformer.", False, 49407, None, True)],
    "sd2": [("cond_stage_model.model.", True, 0, -2, True)],
    "sdxl": [
        ("conditioner.embedders.0.transformer.", False, 49407, -2, False),
        ("conditioner.embedders.1.model.", True, 0, -2, False),
    ],
    "sdxl-refiner": [("conditioner.embedders.0.model.", True, 0, -2, False)],
}


def _node_encode(ctx, arch, text, layer=None):
    clip = (
        CheckpointLoaderSimple()
        .run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name=f"tiny-{arch}.safetensors"))
        .CLIP
    )
    if layer is not None:
        clip = CLIPSetLastLayer().run(ctx, CLIPSetLastLayer.Inputs(clip=clip, stop_at_clip_layer=layer)).CLIP
    return CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text=text, clip=clip)).CONDITIONING.entries[0]


def _expected(path, arch, text, skip=None):
    """Reference embeds (encoders side by side) and pooled output for one window of `text`."""
    sd = read_weights(path)
    parts, pooled = [], None
    for prefix, open_clip, pad, layer, layer_norm in ENCODERS[arch]:
        model = reference_clip(sd, prefix, open_clip)
        ids = padded_ids(encode(text), pad)
        hidden_layer, norm = (layer, layer_norm) if skip is None else (skip, layer_norm)
        parts.append(reference_hidden(model, ids, hidden_layer, norm))
        with torch.inference_mode():
            out = model(input_ids=ids)
        pooled = getattr(out, "text_embeds", None)
    return torch.cat(parts, dim=-1), pooled


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl", "sdxl-refiner"])
def test_clip_text_encode_equals_independent_transformers_call(arch, tiny_models_dir, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    path = tiny_models_dir / "checkpoints" / f"tiny-{arch}.safetensors"
    for text in PROMPTS:
        entry = _node_encode(ctx, arch, text)
        embeds, pooled = _expected(path, arch, text)
        torch.testing.assert_close(entry.embeds, embeds, rtol=1e-5, atol=1e-5)
        if arch.startswith("sdxl"):  # only SDXL models consume the pooled (projected bigG) output
            torch.testing.assert_close(entry.pooled, pooled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arch", "skip"), [("sd15", -2), ("sdxl", -1)])
def test_clip_skip_matches_comfyui_layer_rule(arch, skip, tiny_models_dir, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    path = tiny_models_dir / "checkpoints" / f"tiny-{arch}.safetensors"
    entry = _node_encode(ctx, arch, PROMPTS[0], layer=skip)
    embeds, _ = _expected(path, arch, PROMPTS[0], skip=skip)
    torch.testing.assert_close(entry.embeds, embeds, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(entry.embeds, _node_encode(ctx, arch, PROMPTS[0]).embeds)


def _record_ids(stack):
    seen, hooks = {}, []
    for name, module in stack.encoders.items():

        def hook(_module, _args, kwargs, name=name):
            seen[name] = kwargs["input_ids"].tolist()

        hooks.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    return seen, hooks


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl", "sdxl-refiner"])
def test_token_ids_pad_like_comfyui_per_encoder(arch, tiny_checkpoint_paths, model_store):
    stack = _stack(model_store, tiny_checkpoint_paths[arch])
    seen, hooks = _record_ids(stack)
    try:
        encode_prompt(stack, "cat", None, CPU, torch.float32)
    finally:
        for h in hooks:
            h.remove()
    cat = encode("cat")
    pads = {"sd15": [49407], "sd2": [0], "sdxl": [49407, 0], "sdxl-refiner": [0]}[arch]
    assert [rows[0] for rows in seen.values()] == [cat + [pad] * 74 for pad in pads]


def test_sdxl_node_pads_shorter_prompt_with_empty_windows(tiny_models_dir, model_store, tmp_path):
    ctx = make_ctx(tiny_models_dir, model_store, tmp_path)
    clip = (
        CheckpointLoaderSimple()
        .run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name="tiny-sdxl.safetensors"))
        .CLIP
    )
    inputs = CLIPTextEncodeSDXL.Inputs(clip=clip, text_l="cat " * 100, text_g="dog")
    entry = CLIPTextEncodeSDXL().run(ctx, inputs).CONDITIONING.entries[0]
    stack = clip.load(ctx.models)
    empty = encode_prompt(stack, "", None, CPU, torch.float32).embeds
    dog = encode_prompt(stack, "dog", None, CPU, torch.float32)
    assert entry.embeds.shape == (1, 154, 128)
    torch.testing.assert_close(entry.embeds[:, :77, 64:], dog.embeds[..., 64:])
    torch.testing.assert_close(entry.embeds[:, 77:, 64:], empty[..., 64:])
    torch.testing.assert_close(entry.pooled, dog.pooled)


def _reference_prompts() -> list[str]:
    texts = set()
    for workflow in sorted(CASES.glob("*/workflow_api.json")):
        for node in json.loads(workflow.read_text()).values():
            if node["class_type"] == "CLIPTextEncode":
                texts.add(node["inputs"]["text"])
    return sorted(texts)


@pytest.mark.slow
@needs_reference
def test_reference_sd15_loads_and_encodes_like_transformers(
    reference_sd15_path, model_store, tmp_path, caplog
):
    prompts = _reference_prompts()
    assert prompts, f"no CLIPTextEncode prompt in the reference cases under {CASES}"
    ctx = make_ctx(reference_sd15_path.parents[1], model_store, tmp_path)
    with caplog.at_level(logging.INFO, logger="nodes.diffusion.builders"):
        out = CheckpointLoaderSimple().run(
            ctx, CheckpointLoaderSimple.Inputs(ckpt_name=reference_sd15_path.name)
        )
    assert out.MODEL.family == "sd15" and out.MODEL.prediction == "eps"
    messages = [r.getMessage() for r in caplog.records if r.name == "nodes.diffusion.builders"]
    assert sum("no missing or unexpected keys" in m for m in messages) == 3, messages
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], messages
    prefix = "cond_stage_model.transformer."
    model = reference_clip(read_weights(reference_sd15_path, lambda k: k.startswith(prefix)), prefix, False)
    for text in prompts:
        entry = (
            CLIPTextEncode().run(ctx, CLIPTextEncode.Inputs(text=text, clip=out.CLIP)).CONDITIONING.entries[0]
        )
        expected = reference_hidden(model, padded_ids(encode(text), 49407), None, True)
        torch.testing.assert_close(entry.embeds, expected, rtol=1e-5, atol=1e-5)

"""CLIPTextEncode semantics on tiny models and equality with a direct transformers call."""

from __future__ import annotations

import pytest
import torch

from nodes.diffusion import loader
from nodes.diffusion.text_encode import encode_prompt
from nodes.diffusion.tokenizer import encode
from nodes.loader_nodes import CheckpointLoaderSimple, CLIPSetLastLayer
from nodes.text_nodes import CLIPTextEncode
from tests.nodes.helpers_models import make_ctx

CPU = torch.device("cpu")
PROMPTS = ["a photo of a cat sitting on a windowsill, highly detailed", "blurry, low quality"]


def _stack(store, path):
    _, recipes = loader.load_checkpoint_into(store, path)
    return loader.load_component_into(store, recipes["clip"])


def _direct(model, text, pad=49407):
    ids = encode(text)
    ids = ids + [pad] * (77 - len(ids))
    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids]), output_hidden_states=True)


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


def test_sd15_encoding_equals_direct_transformers_call(tiny_sd15_path, model_store):
    stack = _stack(model_store, tiny_sd15_path)
    model = stack.encoders["clip_l"]
    for text in PROMPTS:
        entry = encode_prompt(stack, text, None, CPU, torch.float32)
        direct = _direct(model, text)
        torch.testing.assert_close(entry.embeds[0], direct.last_hidden_state[0], rtol=0, atol=1e-6)
        torch.testing.assert_close(entry.pooled, direct.pooler_output, rtol=0, atol=1e-6)


def test_clip_skip_selects_penultimate_layer(tiny_sd15_path, model_store):
    stack = _stack(model_store, tiny_sd15_path)
    model = stack.encoders["clip_l"]
    entry = encode_prompt(stack, PROMPTS[0], -2, CPU, torch.float32)
    direct = _direct(model, PROMPTS[0])
    expected = model.final_layer_norm(direct.hidden_states[-2])
    torch.testing.assert_close(entry.embeds, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(entry.embeds, encode_prompt(stack, PROMPTS[0], None, CPU, torch.float32).embeds)


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


def test_sdxl_concatenates_both_encoders(tiny_sdxl_path, model_store):
    stack = _stack(model_store, tiny_sdxl_path)
    entry = encode_prompt(stack, PROMPTS[1], None, CPU, torch.float32)
    g = stack.encoders["clip_g"]
    ids = encode(PROMPTS[1])
    ids_g = torch.tensor([ids + [0] * (77 - len(ids))])
    with torch.inference_mode():
        out = g(input_ids=ids_g, output_hidden_states=True)
    torch.testing.assert_close(entry.embeds[..., 64:], out.hidden_states[-2], rtol=0, atol=1e-5)
    torch.testing.assert_close(entry.pooled, out.text_embeds, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_reference_sd15_loads_and_encodes_like_transformers(reference_sd15_path, model_store):
    from nodes.diffusion.checkpoint_io import read_weights

    info = loader.inspect_checkpoint(reference_sd15_path)
    assert (info.family, info.prediction) == ("sd15", "eps")
    sd = read_weights(reference_sd15_path)
    for component in ("unet", "vae", "clip"):
        module, reports = loader.build_component(component, info.family, sd, torch.float32)
        assert all(r.missing == [] and r.unexpected == [] for r in reports), reports
        if component == "clip":
            stack = module
    del sd
    for text in PROMPTS:
        entry = encode_prompt(stack, text, None, CPU, torch.float32)
        direct = _direct(stack.encoders["clip_l"], text)
        torch.testing.assert_close(entry.embeds[0], direct.last_hidden_state[0], rtol=0, atol=1e-6)

"""FLUX and SD3.5 LoRAs: patched weights equal ComfyUI's for every layout, on tiny random files.

data/flow_lora/comfyui_lora_weights.safetensors holds ComfyUI 0.3.64's patched weights (slices and whole-
weight sums) for the cases of its script (data/flow_lora/make_comfyui_weights.py, which says how it was
run). The inputs are tiny random files this module writes (`write_inputs`; run `python -m
tests.nodes.test_lora_flow DIR` to make them for the script) and the full-size random CLIP-L of the flow
reference (make-checkpoint --arch clip_l --size full --seed 1234).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.loader import load_component
from nodes.diffusion.lora import LoraError, fused_weight, lora_map, patched_module
from nodes.diffusion.lora_dit import dit_lora_map
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_lora import LORA_LAYOUTS, make_lora_file
from nodes.diffusion.make_text_encoder import make_text_encoder
from nodes.diffusion.recipe import ComponentRecipe, LoraPatch, Variant

DATA = Path(__file__).parent / "data" / "flow_lora"
COMFY = DATA / "comfyui_lora_weights.safetensors"
LORA_SEED = 7
CLIP_L = "clip_l-random.safetensors"
# case -> (family, weight_dtype, LoRA layouts, strength_model, strength_clip); as in the recording script.
CASES = {
    "flux_kohya": ("flux-dev", "default", ["flux-kohya"], 0.8, 1.0),
    "flux_diffusers": ("flux-dev", "default", ["flux-diffusers"], 1.0, 0.5),
    "flux_bfl": ("flux-dev", "default", ["flux-bfl"], 1.0, 1.0),
    "flux_bfl_dora": ("flux-dev", "default", ["flux-bfl-dora"], 0.7, 1.0),
    "flux_fp8_stacked": ("flux-dev", "fp8_e4m3fn", ["flux-kohya", "flux-diffusers"], 1.0, 1.0),
    "sd3_kohya": ("sd3", "default", ["sd3-kohya"], 1.0, 0.9),
    "sd3_diffusers": ("sd3", "default", ["sd3-diffusers"], 0.6, 1.0),
    "sd3_native": ("sd3", "default", ["sd3-native"], 1.0, 1.0),
}


def write_inputs(root: Path, with_clip: bool = True) -> Path:
    """The tiny FLUX dev and SD3.5 medium files, one LoRA per layout (full-size text layers), CLIP-L."""
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "flux.safetensors").is_file():
        make_flux_file("flux1-dev", "tiny", 0, root / "flux.safetensors")
        make_sd3_checkpoint("sd3.5-medium", "tiny", 0, root / "sd35.safetensors")
        for layout in LORA_LAYOUTS:
            out = root / f"lora-{layout}.safetensors"
            make_lora_file(layout, "tiny", LORA_SEED, out, text_encoders=True, text_size="full")
    if with_clip and not (root / CLIP_L).exists():
        given = os.environ.get("DIFFGRAPH_FLOW_MODELS")
        if given and (Path(given) / "text_encoders" / CLIP_L).is_file():
            (root / CLIP_L).symlink_to(Path(given) / "text_encoders" / CLIP_L)
        else:
            make_text_encoder("clip_l", "full", 1234, root / CLIP_L, "fp16")
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_inputs(tmp_path_factory.mktemp("flow_lora"))


def _unet_recipe(root: Path, family: str, weight_dtype: str) -> ComponentRecipe:
    if family == "sd3":
        return ComponentRecipe(str(root / "sd35.safetensors"), "sd3", "unet", variant=Variant.CHECKPOINT)
    return ComponentRecipe(
        str(root / "flux.safetensors"),
        family,
        "unet",
        variant=Variant.DIFFUSION_FILE,
        weight_dtype=weight_dtype,
    )


def _with_loras(recipe: ComponentRecipe, root: Path, layouts: list[str], strength: float) -> ComponentRecipe:
    for layout in layouts:
        recipe = recipe.with_patch(LoraPatch(str(root / f"lora-{layout}.safetensors"), strength))
    return recipe


def _compare(expected: dict[str, torch.Tensor], case: str, model, slots, prefix: str) -> int:
    """Check every recorded weight of `case` whose name starts with `prefix`; returns how many."""
    count = 0
    for name in expected:
        if not (name.startswith(f"{case}/{prefix}") and name.endswith("/rows")):
            continue
        key = name[len(case) + 1 : -len("/rows")]
        ours = fused_weight(model, slots[key])
        rows = expected[name]
        torch.testing.assert_close(ours[::32, :64], rows, rtol=2e-6, atol=1e-7, msg=f"{case} {key}")
        stats = expected[f"{case}/{key}/stats"]
        wide = ours.double()
        got = torch.stack([wide.sum(), (wide * wide).sum()])
        torch.testing.assert_close(got, stats, rtol=1e-6, atol=1e-4, msg=f"{case} {key} sums")
        count += 1
    return count


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_flow_lora_patched_weights_match_comfyui(case, inputs):
    from nodes.diffusion.text_encoders import load_text_stack

    expected = load_file(str(COMFY))
    family, weight_dtype, layouts, s_model, s_clip = CASES[case]
    recipe = _unet_recipe(inputs, family, weight_dtype)
    base = load_component(recipe, torch.float32)
    model = patched_module(base, _with_loras(recipe, inputs, layouts, s_model), compute=torch.float32)
    slots = dit_lora_map(recipe.path, family).slots
    assert _compare(expected, case, model, slots, "diffusion_model.") == 6
    clip_recipe = ComponentRecipe(
        str(inputs / CLIP_L), "sd3", "clip", variant=Variant.TEXT_ENCODERS, paths=(str(inputs / CLIP_L),)
    )
    clip_base = load_text_stack("sd3", [inputs / CLIP_L])
    clip = patched_module(clip_base, _with_loras(clip_recipe, inputs, layouts, s_clip))
    text_slots = lora_map(clip, clip_recipe).slots
    assert _compare(expected, case, clip, text_slots, "clip_l.") == 3


def test_flux_lora_leaves_the_base_model_and_unpatched_weights_shared(inputs):
    recipe = _unet_recipe(inputs, "flux-dev", "default")
    base = load_component(recipe, torch.float32)
    before = {n: p.clone() for n, p in base.named_parameters()}
    model = patched_module(base, _with_loras(recipe, inputs, ["flux-bfl"], 1.0), compute=torch.float32)
    ours, theirs = dict(model.named_parameters()), dict(base.named_parameters())
    changed = [n for n in ours if ours[n] is not theirs[n]]
    assert "transformer.transformer_blocks.0.attn.to_q.weight" in changed
    assert "transformer.x_embedder.bias" not in changed
    assert all(torch.equal(before[n], p) for n, p in base.named_parameters())


def test_flux_lora_on_an_sd3_model_is_refused(inputs):
    recipe = _unet_recipe(inputs, "sd3", "default")
    base = load_component(recipe, torch.float32)
    with pytest.raises(LoraError, match="another model (family|size)"):
        patched_module(base, _with_loras(recipe, inputs, ["flux-kohya"], 1.0), compute=torch.float32)


if __name__ == "__main__":
    write_inputs(Path(sys.argv[1]))


def _flux_prompt(strength: float, weight_dtype: str = "default") -> dict:
    """Tiny FLUX dev txt2img with LoraLoaderModelOnly, 64x64, 2 euler steps, saving the latent."""
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": weight_dtype},
        },
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {
                "clip_name1": "clip_l.safetensors",
                "clip_name2": "t5xxl_fp16.safetensors",
                "type": "flux",
            },
        },
        "4": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": ["1", 0], "lora_name": "flux-kohya.safetensors", "strength_model": strength},
        },
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a lighthouse", "clip": ["2", 0]}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}},
        "8": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 3,
                "steps": 2,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["5", 0],
                "negative": ["7", 0],
                "latent_image": ["8", 0],
            },
        },
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "lora"}},
    }


def _run_latent(prompt: dict, models: Path, tmp_path: Path, store) -> torch.Tensor:
    import json

    from tests.nodes.sampling.test_reference_conditioning import _run_case

    case = tmp_path / "case"
    case.mkdir(parents=True)
    (case / "workflow_api.json").write_text(json.dumps(prompt))
    _run_case(case, models, tmp_path, store)
    (saved,) = sorted((tmp_path / "output").rglob("*.latent"))
    return load_file(str(saved))["latent_tensor"]


@pytest.fixture(scope="module")
def tiny_flux_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.nodes.flux_files import write_tiny_flux_models

    root = write_tiny_flux_models(tmp_path_factory.mktemp("flux_models"))
    make_lora_file(
        "flux-kohya", "tiny", LORA_SEED, root / "loras" / "flux-kohya.safetensors", text_encoders=True
    )
    return root


@pytest.mark.slow
def test_lora_loader_model_only_changes_a_flux_image_and_strength_zero_does_not(
    tiny_flux_models, tmp_path, model_store
):
    plain = _run_latent(_flux_prompt(0.0), tiny_flux_models, tmp_path / "a", model_store)
    patched = _run_latent(_flux_prompt(1.0), tiny_flux_models, tmp_path / "b", model_store)
    fp8 = _run_latent(_flux_prompt(1.0, "fp8_e4m3fn"), tiny_flux_models, tmp_path / "c", model_store)
    again = _run_latent(_flux_prompt(0.0), tiny_flux_models, tmp_path / "d", model_store)
    assert plain.shape == (1, 16, 8, 8)
    assert float((patched - plain).norm() / plain.norm()) > 1e-3
    assert float((fp8 - patched).norm() / patched.norm()) < 0.1
    # The cached base model was not changed by the patched copy.
    assert torch.equal(again, plain)


def _sd3_prompt(strength_model: float, strength_clip: float) -> dict:
    """Tiny SD3.5 txt2img: CheckpointLoaderSimple + TripleCLIPLoader -> LoraLoader, 64x64, 2 steps, cfg 2."""
    encode = {"class_type": "CLIPTextEncode", "inputs": {"text": "a red bicycle", "clip": ["4", 1]}}
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd35.safetensors"}},
        "2": {
            "class_type": "TripleCLIPLoader",
            "inputs": {
                "clip_name1": "clip_l.safetensors",
                "clip_name2": "clip_g.safetensors",
                "clip_name3": "t5.safetensors",
            },
        },
        "4": {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["2", 0],
                "lora_name": "sd3-kohya.safetensors",
                "strength_model": strength_model,
                "strength_clip": strength_clip,
            },
        },
        "5": encode,
        "6": {**encode, "inputs": {**encode["inputs"], "text": "blurry"}},
        "8": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 5,
                "steps": 2,
                "cfg": 2.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["5", 0],
                "negative": ["6", 0],
                "latent_image": ["8", 0],
            },
        },
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "lora"}},
    }


@pytest.mark.slow
def test_lora_loader_patches_sd35_model_and_its_three_text_encoders(tmp_path_factory, tmp_path, model_store):
    root = tmp_path_factory.mktemp("sd3_models")
    make_sd3_checkpoint("sd3.5-medium", "tiny", 0, root / "checkpoints" / "sd35.safetensors")
    for kind, name, dtype in (
        ("clip_l", "clip_l", "fp16"),
        ("clip_g", "clip_g", "fp16"),
        ("t5xxl", "t5", "fp8_e4m3fn"),
    ):
        make_text_encoder(kind, "tiny", 0, root / "text_encoders" / f"{name}.safetensors", dtype)
    make_lora_file(
        "sd3-kohya", "tiny", LORA_SEED, root / "loras" / "sd3-kohya.safetensors", text_encoders=True
    )
    plain = _run_latent(_sd3_prompt(0.0, 0.0), root, tmp_path / "a", model_store)
    model_only = _run_latent(_sd3_prompt(1.0, 0.0), root, tmp_path / "b", model_store)
    clip_only = _run_latent(_sd3_prompt(0.0, 1.0), root, tmp_path / "c", model_store)
    assert plain.shape == (1, 16, 8, 8)
    assert float((model_only - plain).norm() / plain.norm()) > 1e-3
    assert float((clip_only - plain).norm() / plain.norm()) > 1e-3


def test_flux_control_lora_is_read_widening_img_in_and_loha_files_are_refused_with_a_reason():
    from nodes.diffusion.lora_file import LoraFormatError, read_adapters
    from nodes.diffusion.lora_math import LowRank, SetValue

    control = {
        "img_in.lora_A.weight": torch.zeros(4, 128),
        "img_in.lora_B.weight": torch.zeros(256, 4),
        "img_in.lora_B.bias": torch.zeros(256),
        "single_blocks.0.norm.key_norm.scale": torch.ones(128),
    }
    adapters, stray = read_adapters("canny.safetensors", control)
    assert not stray
    img_in = adapters["diffusion_model.img_in"]
    assert isinstance(img_in.weight, LowRank) and img_in.bias is not None
    assert img_in.weight.reshape == (256, 128)
    assert isinstance(adapters["diffusion_model.single_blocks.0.norm.key_norm.scale"].weight, SetValue)
    with pytest.raises(LoraFormatError, match="LoHa"):
        read_adapters("loha.safetensors", {"lora_unet_x.hada_w1_a": torch.zeros(2, 2)})

"""FLUX.1 Canny/Depth dev files and BFL control LoRAs against ComfyUI 0.3.64's numbers, on tiny files.

data/flux_control/comfyui_control.safetensors holds ComfyUI's FLUX forward on the tiny random Canny
file, the 16 channels its Flux model appends for a 32-channel model, and its weights patched by a tiny
random BFL control LoRA on the tiny dev file (sha256 of every patched tensor at strengths 1 and 0.6,
the widened img_in, and the patched model's velocity); data/flux_control/make_comfyui_control.py made
it (see its docstring; all files make-checkpoint seed 0). Measured: the patched tensors are
bit-identical, the forwards agree to relative L2 about 1e-7, the concat exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.flux import FluxModel
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.lora import LoraError, fused_weight, lora_map, patched_module
from nodes.diffusion.make_lora import make_lora_file
from nodes.diffusion.recipe import ComponentRecipe, LoraPatch, Variant
from nodes.diffusion.unet_file import inspect_diffusion_model, load_diffusion_model
from nodes.sampling.conds import InpaintSource, inpaint_concat
from nodes.types import FLUX_LATENT, CondEntry

DATA_PATH = Path(__file__).parent / "data" / "flux_control" / "comfyui_control.safetensors"
DATA = load_file(str(DATA_PATH))
INPUTS = {k.removeprefix("in."): v for k, v in DATA.items() if k.startswith("in.")}
MAX_REL_L2 = 1e-5


def _digests() -> dict[str, str]:
    with safe_open(str(DATA_PATH), "pt") as f:
        return dict(f.metadata())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("flux_control")
    out = {arch: make_flux_file(arch, "tiny", 0, root / f"{arch}.safetensors") for arch in ("flux1-dev",)}
    out["flux1-canny-dev"] = make_flux_file("flux1-canny-dev", "tiny", 0, root / "canny.safetensors")
    # make-checkpoint's default dtype (fp16), as the reference's LoRA was written.
    out["control"] = make_lora_file(
        "flux-bfl-control", "tiny", 0, root / "control.safetensors", dtype=torch.float16
    )
    return out


def _recipe(path: Path) -> ComponentRecipe:
    return ComponentRecipe(str(path), inspect_diffusion_model(path), "unet", variant=Variant.DIFFUSION_FILE)


def _call(model, x):
    with torch.inference_mode():
        return model(x, INPUTS["sigma"], INPUTS["context"], INPUTS["pooled"], INPUTS["guidance"])


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


def test_flux_canny_file_is_detected_by_its_input_width_and_matches_comfyui(files):
    recipe = _recipe(files["flux1-canny-dev"])
    assert recipe.family == "flux-control"
    model = load_diffusion_model(recipe, torch.float32)
    assert model.in_channels == 32
    assert _rel(_call(model, INPUTS["x"]), DATA["canny"]) <= MAX_REL_L2


def test_flux_canny_is_detected_in_all_in_one_files(files, tmp_path):
    from nodes.diffusion.loader import inspect_checkpoint

    parts = {f"model.diffusion_model.{k}": v for k, v in load_file(str(files["flux1-canny-dev"])).items()}
    save_file(parts, str(tmp_path / "all.safetensors"))
    assert inspect_checkpoint(tmp_path / "all.safetensors").family == "flux-control"


def test_flux_file_of_unknown_input_width_is_refused_naming_the_widths(files, tmp_path):
    sd = load_file(str(files["flux1-dev"]))
    sd["img_in.weight"] = torch.zeros(sd["img_in.weight"].shape[0], 100, dtype=sd["img_in.weight"].dtype)
    save_file(sd, str(tmp_path / "odd.safetensors"))
    with pytest.raises(CheckpointFormatError, match=r"100 input features.*128 \(Canny/Depth dev\)"):
        inspect_diffusion_model(tmp_path / "odd.safetensors")


@pytest.mark.parametrize("case", ["image", "none"])
def test_flux_control_concat_matches_comfyui(case):
    entry = CondEntry(embeds=torch.zeros(1, 1, 8))
    if case == "image":
        entry = CondEntry(embeds=entry.embeds, concat_latent=INPUTS["concat_image"])
    source = InpaintSource(torch.zeros(2, 16, 10, 12), None, FLUX_LATENT, kind="flux_image")
    ours = inpaint_concat(entry, source, torch.Size((2, 16, 10, 12)))
    torch.testing.assert_close(ours, DATA[f"concat.{case}"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_bfl_control_lora_patches_flux_dev_bit_identically_to_comfyui(files, strength):
    recipe = _recipe(files["flux1-dev"])
    base = load_diffusion_model(recipe, torch.float32)
    patched_recipe = recipe.with_patch(LoraPatch(str(files["control"]), strength))
    model = patched_module(base, patched_recipe, None, torch.float32)
    lmap = lora_map(model, patched_recipe)
    prefix = f"sha256.{strength}."
    expected = {k.removeprefix(prefix): v for k, v in _digests().items() if k.startswith(prefix)}
    assert len(expected) > 50
    for key, digest in expected.items():
        ours = fused_weight(model, lmap.slots[key]).contiguous().numpy().tobytes()
        assert hashlib.sha256(ours).hexdigest() == digest, key
    assert isinstance(model, FluxModel) and model.in_channels == 32 and base.in_channels == 16
    if strength == 1.0:
        torch.testing.assert_close(model.transformer.x_embedder.weight, DATA["lora.img_in"], rtol=0, atol=0)
        assert _rel(_call(model, INPUTS["x"]), DATA["lora.forward"]) <= MAX_REL_L2


def test_bfl_control_lora_on_a_wider_model_is_refused(files, tmp_path):
    fill = make_flux_file("flux1-fill-dev", "tiny", 0, tmp_path / "fill.safetensors")
    recipe = _recipe(fill)
    base = load_diffusion_model(recipe, torch.float32)
    with pytest.raises(LoraError, match="cannot patch diffusion_model.img_in.weight"):
        patched_module(base, recipe.with_patch(LoraPatch(str(files["control"]), 1.0)), None, torch.float32)


def _run_template(tmp_path: Path, template: str, picture: str, seed: int) -> torch.Tensor:
    """ComfyUI's template run headless on tiny files (2 steps) with a random control picture; its image."""
    import numpy as np
    from PIL import Image as PILImage

    from bench.template_coverage import installed_templates
    from diffgraph.api import Session
    from tests.nodes.flux_files import TEMPLATE_NAMES, write_tiny_flux_models

    models = tmp_path / "models"
    names = {key: arch for key, arch in TEMPLATE_NAMES.items() if key[0] != "diffusion_models"}
    names[("diffusion_models", "flux1-canny-dev.safetensors")] = "flux1-canny-dev"
    names[("diffusion_models", "flux1-dev-fp8.safetensors")] = "flux1-dev"
    write_tiny_flux_models(models, names)
    make_lora_file("flux-bfl-control", "tiny", 0, models / "loras" / "flux1-depth-dev-lora.safetensors")
    (tmp_path / "input").mkdir(exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(tmp_path / "input" / picture)
    out = tmp_path / f"out{seed}"
    session = Session(models_dir=models, input_dir=tmp_path / "input", output_dir=out)
    workflow = session.load(installed_templates()[1] / f"{template}.json")
    for node in workflow.prompt.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 2
    result = session.run(workflow)
    # SaveImage's file (the Canny template also previews its edge map into the temp folder).
    (image,) = [f for files in result.files.values() for f in files if out in f.parents]
    return torch.from_numpy(np.array(PILImage.open(image).convert("RGB"))).float()


@pytest.mark.slow
@pytest.mark.parametrize(
    "template, picture",
    [
        ("flux_canny_model_example", "sd3_controlnet_example.png"),
        ("flux_depth_lora_example", "shark_depthmap.png"),
    ],
)
def test_flux_control_templates_run_and_follow_their_control_picture(tmp_path, template, picture):
    first = _run_template(tmp_path, template, picture, 1)
    other = _run_template(tmp_path, template, picture, 2)
    assert first.shape == (64, 64, 3)
    # The control picture reaches the model as input channels: another picture, another image.
    assert (first - other).abs().mean() > 0.5


def test_make_checkpoint_writes_canny_and_depth_files_of_one_layout_and_a_control_lora(tmp_path):
    from nodes.diffusion.make_checkpoint import main

    for arch in ("flux1-canny-dev", "flux1-depth-dev", "lora-flux-bfl-control"):
        assert (
            main(["--arch", arch, "--size", "tiny", "--seed", "3", str(tmp_path / f"{arch}.safetensors")])
            == 0
        )
    canny, depth = (tmp_path / f"{arch}.safetensors" for arch in ("flux1-canny-dev", "flux1-depth-dev"))
    assert canny.read_bytes() == depth.read_bytes()
    assert inspect_diffusion_model(depth) == "flux-control"
    lora = load_file(str(tmp_path / "lora-flux-bfl-control.safetensors"))
    assert lora["img_in.lora_A.weight"].shape[1] == 128 and "single_blocks.0.norm.key_norm.scale" in lora

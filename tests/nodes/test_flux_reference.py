"""ComfyUI's `flux_dev_basic` case (../shared/reference/flow): our final latent for the same workflow.

ComfyUI 0.3.64 on CPU ran cases/flux_dev_basic/workflow_api.json (FLUX.1 dev d2s2 at 256x256, FluxGuidance
3.5, KSampler euler/simple, cfg 1, 4 steps, seed 42) on the reference README's random-weight files and saved
the final latent; this test runs the same workflow headless and compares latents (relative L2).

The reference files (about 7.7 GB: FLUX dev d2s2 BF16, the FLUX autoencoder, CLIP-L fp16, T5-XXL fp8) are
rebuilt byte for byte by make-checkpoint (seed 1234, the README's rule). Point $DIFFGRAPH_FLOW_MODELS at a
models folder already holding them (diffusion_models/, text_encoders/, vae/), or set $DIFFGRAPH_TEST_CACHE
to build them there once; without either the test is skipped. The run needs about 10 GB of memory.

Measured with `diffgraph run` on the workflow: relative L2 1.2e-7 against ComfyUI's latent (max abs 2.4e-6),
the decoded PNG within one 8-bit level of ComfyUI's image.png, peak RSS 10.3 GB (file pages mapped while
weights are read included), 243 s on two shared CPU cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import Environment, ModelPaths
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_text_encoder import make_text_encoder
from tests.shared_reference import SHARED_REFERENCE, needs_reference

CASE = SHARED_REFERENCE / "flow" / "cases" / "flux_dev_basic"
SEED = 1234
# (folder, file name as the workflow names it) -> how make-checkpoint rebuilds it, and its size in bytes.
FILES = {
    ("diffusion_models", "flux1-dev-random-d2s2.safetensors"): (("flux", "flux1-dev"), 2_053_951_376),
    ("vae", "flux-ae-random.safetensors"): (("flux", "flux-ae"), 335_303_948),
    ("text_encoders", "clip_l-random.safetensors"): (("text", "clip_l", "fp16"), 246_144_152),
    ("text_encoders", "t5xxl-random_fp8_e4m3fn.safetensors"): (
        ("text", "t5xxl", "fp8_e4m3fn"),
        4_762_338_536,
    ),
}
FLUX_DEV_FILES = tuple(FILES)
# The SD3.5 medium reference files (used with CLIP-L and T5 above by the SD3.5 cases).
FILES[("checkpoints", "sd3.5m-random-d2.safetensors")] = (("sd3", "sd3.5-medium"), 209_409_038)
FILES[("text_encoders", "clip_g-random.safetensors")] = (("text", "clip_g", "fp16"), 1_389_382_176)
MAX_REL_L2 = 1e-4
FORWARD = Path(__file__).parent / "data" / "flux_forward" / "comfyui_flux_dev_d2s2_forward.safetensors"
FLUX_DEV = ("diffusion_models", "flux1-dev-random-d2s2.safetensors")


def _models_dir(only: tuple[tuple[str, str], ...] | None = None) -> Path:
    """A models folder holding the reference files (given, or built once into the test cache)."""
    given = os.environ.get("DIFFGRAPH_FLOW_MODELS")
    if given:
        return Path(given)
    cache = os.environ.get("DIFFGRAPH_TEST_CACHE")
    if not cache:
        pytest.skip("set DIFFGRAPH_FLOW_MODELS or DIFFGRAPH_TEST_CACHE for the 7.7 GB FLUX reference files")
    root = Path(cache) / "flow"
    for (folder, name), (how, size) in FILES.items():
        if only is not None and (folder, name) not in only:
            continue
        path = root / folder / name
        if path.is_file() and path.stat().st_size == size:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if how[0] == "flux":
            make_flux_file(how[1], "reduced", SEED, path)
        elif how[0] == "sd3":
            make_sd3_checkpoint(how[1], "reduced", SEED, path)
        else:
            make_text_encoder(how[1], "full", SEED, path, how[2])
    return root


@pytest.mark.slow
@needs_reference
def test_flux_dev_basic_matches_comfyui_latent(tmp_path, model_store):
    from nodes.pack import build_registry

    models = _models_dir(FLUX_DEV_FILES)
    prompt = json.loads((CASE / "workflow_api.json").read_text())
    registry = build_registry(ModelPaths(models), tmp_path)
    env = Environment(
        output_dir=tmp_path / "output",
        temp_dir=tmp_path / "temp",
        input_dir=tmp_path,
        models=model_store,
        model_paths=ModelPaths(models),
    )
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors or checked.error
    torch.set_num_threads(os.cpu_count() or 1)
    result = Executor(registry, env).execute(checked.prompt, prompt_id="flux", outputs=checked.outputs)
    assert result.status == "success", result.error and result.error.data()
    saved = sorted((tmp_path / "output").rglob("*.latent"))
    assert len(saved) == 1
    ours = load_file(str(saved[0]))["latent_tensor"].float()
    theirs = load_file(str(CASE / "latent.safetensors"))["latent"].float()
    assert ours.shape == theirs.shape == (1, 16, 32, 32)
    rel = float((ours - theirs).norm() / theirs.norm())
    assert rel <= MAX_REL_L2, f"relative L2 {rel:.3g} vs ComfyUI's latent"


def forward_inputs():
    """Latent [1, 16, 32, 32], sigma 0.7, T5 tokens [1, 256, 4096], CLIP-L pooled [1, 768], guidance 3.5."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 16, 32, 32, generator=g)
    context = torch.randn(1, 256, 4096, generator=g) * 0.2
    pooled = torch.randn(1, 768, generator=g)
    return x, torch.tensor([0.7]), context, pooled, torch.tensor([3.5])


@pytest.mark.slow
def test_flux_dev_d2s2_forward_matches_comfyui():
    """One model call on the reference FLUX dev file against ComfyUI's (data/flux_forward/, see its script)."""
    from nodes.diffusion.recipe import ComponentRecipe, Variant
    from nodes.diffusion.unet_file import load_diffusion_model

    path = _models_dir((FLUX_DEV,)) / FLUX_DEV[0] / FLUX_DEV[1]
    recipe = ComponentRecipe(str(path), "flux-dev", "unet", variant=Variant.DIFFUSION_FILE)
    model = load_diffusion_model(recipe, torch.float32)
    torch.set_num_threads(os.cpu_count() or 1)
    with torch.inference_mode():
        ours = model(*forward_inputs())
    theirs = load_file(str(FORWARD))["velocity"]
    rel = float((ours - theirs).norm() / theirs.norm())
    assert rel <= 1e-5, f"relative L2 {rel:.3g} vs ComfyUI's FLUX forward"


@pytest.mark.slow
@needs_reference
def test_flux_autoencoder_decodes_comfyui_latent_to_its_image():
    """VAEDecode of ComfyUI's final latent equals its saved image.png up to 8-bit rounding."""
    import numpy as np
    from PIL import Image

    from nodes.diffusion.loader import inspect_vae_file, load_component
    from nodes.diffusion.recipe import ComponentRecipe, Variant
    from nodes.diffusion.vae import decode

    ae = ("vae", "flux-ae-random.safetensors")
    path = _models_dir((ae,)) / ae[0] / ae[1]
    vae = load_component(
        ComponentRecipe(str(path), inspect_vae_file(path), "vae", variant=Variant.VAE_FILE), torch.float32
    )
    torch.set_num_threads(os.cpu_count() or 1)
    image = decode(vae, load_file(str(CASE / "latent.safetensors"))["latent"])[0]
    ours = (image.numpy() * 255.0).round().astype(np.int16)
    theirs = np.asarray(Image.open(CASE / "image.png").convert("RGB")).astype(np.int16)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1

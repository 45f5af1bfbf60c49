"""A LoRA on the reduced-depth full-width FLUX dev and SD3.5 medium files: final latents against ComfyUI's.

Cases (data/flow_lora/<case>/workflow_api.json, latent.safetensors):
  * `flux_lora_kohya`: UNETLoader (flux1-dev-random-d2s2, bf16) -> LoraLoaderModelOnly (kohya layout,
    strength 0.9); DualCLIPLoader CLIP-L + T5-XXL fp8; FluxGuidance 3.5; 128x128, KSampler euler/simple,
    cfg 1, 3 steps, seed 7.
  * `sd35_lora_kohya`: CheckpointLoaderSimple (sd3.5m-random-d2, fp16) and DualCLIPLoader type sd3
    (CLIP-L, CLIP-G; no T5, which keeps both sides under 4 GB) -> LoraLoader (kohya layout with
    lora_unet_ and lora_te1_ layers, strength 1.0 on the model, 0.8 on the text encoders); positive and
    negative prompts, 128x128, KSampler euler/simple, cfg 4.5, 4 steps, seed 8.
  * `sd35_lora_kohya_t5`: the same graph and LoRA with TripleCLIPLoader (CLIP-L, CLIP-G, T5-XXL fp8), so
    the patched CLIP-L runs beside T5 and the conditioning carries T5's tokens.

The LoRA files are rebuilt by `make_lora_file` (LORAS below: layout, seed, text encoders; size
reduced, BF16, rank 4), the models are the flow reference files (see test_flux_reference). ComfyUI
0.3.64 ran each workflow on `--cpu` with those files in its models folder, and
data/reference_cases/record_with_comfyui.py copied the latent its SaveLatent node wrote.

Measured (diffgraph through the executor, CPU): flux_lora_kohya rel L2 1.3e-7 (max abs 1.9e-6; peak RSS
12.4 GB, the patched layers held in float32 as ComfyUI holds the model on a CPU; 46 s), sd35_lora_kohya
rel L2 4.8e-7 (max abs 1.8e-6; peak RSS 3.9 GB, 34 s), sd35_lora_kohya_t5 rel L2 4.9e-7 (max abs 1.9e-6;
peak RSS 8.5 GB, 1 min 31 s). The FLUX and T5 cases need the big-memory slot.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes.diffusion.make_lora import make_lora_file
from tests.nodes.flow_reference import FILES
from tests.nodes.flow_reference import flow_models_dir as _models_dir
from tests.nodes.sampling.test_reference_cases import TOLERANCE, rel_l2
from tests.nodes.sampling.test_reference_conditioning import _run_case

DATA = Path(__file__).parent / "data" / "flow_lora"
# case -> (LoRA file name, layout, seed, text encoders it has layers for)
LORAS = {
    "flux_lora_kohya": ("flux-lora-kohya-d2s2.safetensors", "flux-kohya", 11, ()),
    "sd35_lora_kohya": ("sd35m-lora-kohya-d2.safetensors", "sd3-kohya", 12, ("clip_l",)),
    "sd35_lora_kohya_t5": ("sd35m-lora-kohya-d2.safetensors", "sd3-kohya", 12, ("clip_l",)),
}
NEEDED = {
    "flux_lora_kohya": (
        ("diffusion_models", "flux1-dev-random-d2s2.safetensors"),
        ("text_encoders", "clip_l-random.safetensors"),
        ("text_encoders", "t5xxl-random_fp8_e4m3fn.safetensors"),
    ),
    "sd35_lora_kohya": (
        ("checkpoints", "sd3.5m-random-d2.safetensors"),
        ("text_encoders", "clip_l-random.safetensors"),
        ("text_encoders", "clip_g-random.safetensors"),
    ),
    "sd35_lora_kohya_t5": (
        ("checkpoints", "sd3.5m-random-d2.safetensors"),
        ("text_encoders", "clip_l-random.safetensors"),
        ("text_encoders", "clip_g-random.safetensors"),
        ("text_encoders", "t5xxl-random_fp8_e4m3fn.safetensors"),
    ),
}

# Cases whose ComfyUI latent is recorded here.
RECORDED = ("flux_lora_kohya", "sd35_lora_kohya", "sd35_lora_kohya_t5")


def _models_with_lora(case: str, tmp_path: Path) -> Path:
    """A models root linking the reference folders, with the case's LoRA written into loras/."""
    assert set(NEEDED[case]) <= set(FILES)
    reference = _models_dir(NEEDED[case])
    root = tmp_path / "models"
    for folder in {folder for folder, _ in NEEDED[case]}:
        (root / folder).parent.mkdir(parents=True, exist_ok=True)
        # Folder links: model names resolve inside the linked folder.
        (root / folder).symlink_to(reference / folder, target_is_directory=True)
    name, layout, seed, kinds = LORAS[case]
    path = root / "loras" / name
    make_lora_file(
        layout, "reduced", seed, path, dtype=torch.bfloat16, text_encoders=bool(kinds), text_kinds=kinds
    )
    return root


@pytest.mark.slow
@pytest.mark.parametrize("case", RECORDED)
def test_flow_lora_final_latent_matches_comfyui(case, tmp_path, model_store):
    root = _models_with_lora(case, tmp_path)
    torch.set_num_threads(os.cpu_count() or 1)
    _run_case(DATA / case, root, tmp_path, model_store)
    saved = sorted((tmp_path / "output").rglob("*.latent"))
    assert len(saved) == 1
    ours = load_file(str(saved[0]))["latent_tensor"]
    theirs = load_file(str(DATA / case / "latent.safetensors"))["latent"]
    assert ours.shape == theirs.shape == (1, 16, 16, 16)
    rel = rel_l2(ours, theirs)
    print(case, f"relative L2 {rel:.2g}, max abs {(ours.float() - theirs.float()).abs().max():.2g}")
    assert rel <= TOLERANCE, f"{case}: relative L2 {rel:.3g} vs ComfyUI's latent"

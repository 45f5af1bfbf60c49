"""Diffusers-format model folders (model_index.json + unet/ vae/ text_encoder/ ...): detection and loading.

FLUX.1 and SD3/SD3.5 pipelines (transformer/ instead of unet/) are handed to nodes.diffusion.flow_folder.

Detection reads only JSON: `model_index.json` says which parts exist (SDXL pipelines name
`text_encoder_2`; a refiner has no `text_encoder`), the text encoder's `hidden_act` tells OpenAI CLIP-L
(`quick_gelu`, SD1.x) from OpenCLIP ViT-H (`gelu`, SD2.x), and the scheduler's `prediction_type` marks
SD2 v-prediction. Modules load through diffusers/transformers `from_pretrained` with
`local_files_only=True`, so nothing is fetched; weights must be safetensors unless pickle is allowed.

diffusers' SD2 conversion drops the last of OpenCLIP ViT-H's 24 text blocks, so a 23-block SD2 text
encoder is marked `missing_top_layers=1`: layer choices keep counting from the original 24 blocks,
which is how ComfyUI numbers them (its default, the penultimate block, is then the folder's last).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion import families, flow_folder
from nodes.diffusion.checkpoint_io import CheckpointFormatError, PickleRefusedError, pickle_allowed
from nodes.diffusion.families import TextEncoderSpec
from nodes.diffusion.ldm_layout import Layout, UnetArch, unet_layout
from nodes.diffusion.text_encode import ClipStack

log = logging.getLogger(__name__)

TEXT_FOLDERS = {
    "sd15": ("text_encoder",),
    "sd2": ("text_encoder",),
    "sd2-v": ("text_encoder",),
    "sdxl": ("text_encoder", "text_encoder_2"),
    "sdxl-refiner": ("text_encoder_2",),
}
_WEIGHT_STEMS = ("diffusion_pytorch_model", "model")
_SD2_TRUNCATED_LAYERS = 23


def is_diffusers_folder(path: Path) -> bool:
    """Whether `path` is a diffusers pipeline folder."""
    return path.is_dir() and (path / "model_index.json").is_file()


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(f"{path.parent.name}/{path.name}: cannot read JSON ({exc})") from exc


def _has(folder: Path, index: dict[str, Any], part: str) -> bool:
    entry = index.get(part)
    return isinstance(entry, list) and entry[0] is not None and (folder / part).is_dir()


def detect_family(folder: Path) -> tuple[str, tuple[str, ...]]:
    """(family, components) of a diffusers folder from its JSON files; a clear error otherwise."""
    if flow_folder.is_flow_pipeline(folder):
        return flow_folder.inspect_pipeline(folder)
    index = _json(folder / "model_index.json")
    kind = index.get("_class_name", "?")
    if not _has(folder, index, "unet"):
        raise CheckpointFormatError(
            f"{folder.name} is a diffusers {kind} folder without unet/; diffgraph loads SD1.x, SD2.x, SDXL "
            "and SDXL refiner folders (unet/, text_encoder/ and/or text_encoder_2/, vae/) and FLUX.1 and "
            "SD3/SD3.5 folders (transformer/, text encoders, vae/)"
        )
    if _has(folder, index, "text_encoder_2"):
        family = "sdxl" if _has(folder, index, "text_encoder") else "sdxl-refiner"
    elif _has(folder, index, "text_encoder"):
        act = _json(folder / "text_encoder" / "config.json").get("hidden_act")
        family = "sd15" if act == "quick_gelu" else "sd2"
        scheduler = folder / "scheduler" / "scheduler_config.json"
        if (
            family == "sd2"
            and scheduler.is_file()
            and _json(scheduler).get("prediction_type") == "v_prediction"
        ):
            family = "sd2-v"
    else:
        raise CheckpointFormatError(
            f"{folder.name}: diffusers folder without text_encoder/ or text_encoder_2/"
        )
    components = ("unet", "clip", "vae") if _has(folder, index, "vae") else ("unet", "clip")
    return family, components


def unet_in_channels(folder: Path) -> int:
    """The UNet's input channels from unet/config.json (9 for inpainting pipelines); 16 for FLUX/SD3 latents."""
    if flow_folder.is_flow_pipeline(folder):
        return 16
    return int(_json(folder / "unet" / "config.json").get("in_channels", 4))


def _load_kwargs(sub: Path) -> dict[str, Any]:
    """from_pretrained arguments for one part: safetensors (plain or fp16 variant), else opt-in pickle."""
    names = [p.name for p in sub.iterdir()]
    for stem in _WEIGHT_STEMS:
        if f"{stem}.safetensors" in names or f"{stem}.safetensors.index.json" in names:
            return {"use_safetensors": True}
        if f"{stem}.fp16.safetensors" in names or f"{stem}.safetensors.index.fp16.json" in names:
            return {"use_safetensors": True, "variant": "fp16"}
    if not any(n.endswith(".bin") for n in names):
        raise CheckpointFormatError(f"{sub.parent.name}/{sub.name}: no weights file (.safetensors) found")
    if not pickle_allowed():
        raise PickleRefusedError(
            f"{sub.parent.name}/{sub.name} holds only pickle weights (.bin); pickle can run code when loaded, "
            "so diffgraph refuses it by default. Convert the folder to safetensors, or opt in with "
            "DIFFGRAPH_ALLOW_PICKLE=1 (it is then read with torch.load(weights_only=True))."
        )
    return {"use_safetensors": False}


def _text_specs(folder: Path, family: str) -> list[TextEncoderSpec]:
    specs = []
    for spec, sub in zip(families.family_spec(family).text_encoders, TEXT_FOLDERS[family], strict=True):
        layers = _json(folder / sub / "config.json").get("num_hidden_layers")
        missing = 1 if family in ("sd2", "sd2-v") and layers == _SD2_TRUNCATED_LAYERS else 0
        specs.append(replace(spec, folder=sub, missing_top_layers=missing))
    return specs


def load_part(folder: Path, family: str, component: str, dtype: torch.dtype):
    """One component of a diffusers folder as the same module the single-file path builds."""
    if family in flow_folder.FAMILIES:
        return flow_folder.load_part(folder, family, component, dtype)
    if component in ("unet", "vae"):
        part_cls = UNet2DConditionModel if component == "unet" else AutoencoderKL
        kwargs = _load_kwargs(folder / component)
        model = part_cls.from_pretrained(
            folder, subfolder=component, torch_dtype=dtype, local_files_only=True, **kwargs
        )
        return model.eval().requires_grad_(False)
    specs = _text_specs(folder, family)
    encoders: dict[str, torch.nn.Module] = {}
    for spec in specs:
        sub = folder / spec.folder
        cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
        model = cls.from_pretrained(sub, dtype=dtype, local_files_only=True, **_load_kwargs(sub))
        encoders[spec.name] = model.eval().requires_grad_(False)
    return ClipStack(family, encoders, specs)


def ldm_unet_layout(folder: Path) -> Layout:
    """LDM (single-file) key names and shapes of the folder's UNet, from its config (for LoRA names)."""
    cfg = _json(folder / "unet" / "config.json")
    chans = cfg["block_out_channels"]
    per_block = cfg.get("transformer_layers_per_block", 1)
    per_block = [per_block] * len(chans) if isinstance(per_block, int) else per_block
    depth = tuple(
        per_block[i] if kind.startswith("CrossAttn") else 0 for i, kind in enumerate(cfg["down_block_types"])
    )
    arch = UnetArch(
        channels=chans[0],
        mult=tuple(c // chans[0] for c in chans),
        res_blocks=cfg["layers_per_block"],
        depth=depth,
        mid_depth=per_block[-1],
        context_dim=cfg["cross_attention_dim"],
        linear_proj=bool(cfg.get("use_linear_projection")),
        adm_in=cfg.get("projection_class_embeddings_input_dim") or 0,
        in_channels=cfg.get("in_channels", 4),
    )
    return unet_layout(arch)

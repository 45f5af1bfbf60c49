"""Loaded (patched, merged) models written back as one single-file checkpoint in the original LDM layout.

The inverse of the loader's key conversion is derived, not written by hand: each tensor name of the
source file's header gets a tag tensor holding its index, the same diffusers converters the loader
uses run on the tags, and every converted tensor names the source key it came from. A module tensor
is then stored under that key, reshaped to the header's shape (the converters only rename and
reshape for the layouts supported here). Text encoders in the open_clip layout (SD2, SDXL) are split
and transposed by their converter and are refused for now.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders import single_file_utils as sfu

from engine import UserFacingError
from nodes.diffusion import families
from nodes.diffusion.checkpoint_io import read_header
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.text_encode import ClipStack


class CheckpointSaveError(UserFacingError):
    """A model that cannot be written back in the single-file layout."""

    code = "checkpoint_save_unsupported"


def _source_shapes(recipe: ComponentRecipe, prefixes: tuple[str, ...]) -> dict[str, list[int]]:
    """LDM key -> shape of the component's tensors in its source file's header."""
    if recipe.variant is not Variant.CHECKPOINT:
        raise CheckpointSaveError(
            f"saving needs every part loaded from a single-file checkpoint; the {recipe.component} "
            f"comes from {Path(recipe.path).name} ({recipe.variant.value})"
        )
    header, _ = read_header(Path(recipe.path))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__" and k.startswith(prefixes)}


def _tags(shapes: dict[str, list[int]]) -> tuple[list[str], dict[str, torch.Tensor]]:
    """Sorted keys and one small tensor per key filled with its index (full size only when 1-D)."""
    keys = sorted(shapes)
    return keys, {
        k: torch.full(shapes[k] if len(shapes[k]) == 1 else [1] * len(shapes[k]), float(i))
        for i, k in enumerate(keys)
    }


def _origins(converted: dict[str, torch.Tensor], keys: list[str], strip: str = "") -> dict[str, str]:
    """Converted key -> source key, read from the tag each converted tensor carries."""
    return {strip + d: keys[int(t.reshape(-1)[0])] for d, t in converted.items()}


def _meta(shapes: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


def _unet_origins(recipe: ComponentRecipe) -> tuple[dict[str, str], dict[str, list[int]]]:
    shapes = _source_shapes(recipe, (families.UNET_PREFIX,))
    keys, tags = _tags(shapes)
    cfg = families.unet_config(recipe.family, _meta(shapes))
    return _origins(sfu.convert_ldm_unet_checkpoint(tags, cfg), keys), shapes


def _vae_origins(recipe: ComponentRecipe) -> tuple[dict[str, str], dict[str, list[int]]]:
    shapes = _source_shapes(recipe, (families.VAE_PREFIX,))
    keys, tags = _tags(shapes)
    cfg = families.vae_config(recipe.family, _meta(shapes))
    return _origins(sfu.convert_ldm_vae_checkpoint(tags, cfg), keys), shapes


def _clip_origins(recipe: ComponentRecipe, stack: ClipStack) -> tuple[dict[str, str], dict[str, list[int]]]:
    specs = families.family_spec(recipe.family).text_encoders
    if any(s.layout != "hf" for s in specs):
        raise CheckpointSaveError(
            f"saving {recipe.family} checkpoints is not supported yet: its open_clip text encoder layout "
            "has no inverse conversion here"
        )
    origins: dict[str, str] = {}
    all_shapes: dict[str, list[int]] = {}
    for spec in specs:
        shapes = _source_shapes(recipe, (spec.ldm_prefix,))
        all_shapes.update(shapes)
        keys, tags = _tags(shapes)
        sub = {"te." + k[len(spec.ldm_prefix) :]: t for k, t in tags.items()}
        converted = sfu.convert_ldm_clip_checkpoint(sub, remove_prefix="te.")
        own = stack.encoders[spec.name].state_dict()
        for dkey, t in converted.items():
            key = dkey if dkey in own else dkey.removeprefix("text_model.")
            if key in own:
                origins[f"encoders.{spec.name}.{key}"] = keys[int(t.reshape(-1)[0])]
    return origins, all_shapes


def _place(
    module: torch.nn.Module, origins: dict[str, str], shapes: dict[str, list[int]], what: str
) -> dict[str, torch.Tensor]:
    """The module's tensors under their source keys and shapes; every tensor must find its key."""
    state = module.state_dict()
    lost = [k for k in state if k not in origins and not k.endswith("position_ids")]
    if lost:
        raise CheckpointSaveError(f"{what}: {len(lost)} tensors have no single-file name, e.g. {lost[:3]}")
    out = {}
    for key, t in state.items():
        if key not in origins:
            continue
        ldm = origins[key]
        if math.prod(shapes[ldm]) != t.numel():
            raise CheckpointSaveError(f"{what}: {key} has {t.numel()} values, the file's {ldm} {shapes[ldm]}")
        out[ldm] = t.detach().reshape(shapes[ldm]).cpu().contiguous()
    for ldm, shape in shapes.items():
        if ldm.endswith("position_ids"):
            out[ldm] = torch.arange(shape[-1], dtype=torch.int64).expand(shape).contiguous()
    missing = sorted(set(shapes) - set(out))
    if missing:
        raise CheckpointSaveError(f"{what}: {len(missing)} file tensors have no source, e.g. {missing[:3]}")
    return out


def single_file_state(
    unet: tuple[ComponentRecipe, torch.nn.Module],
    clip: tuple[ComponentRecipe, ClipStack],
    vae: tuple[ComponentRecipe, torch.nn.Module],
) -> dict[str, torch.Tensor]:
    """Every tensor of a single-file checkpoint (LDM names) from the loaded UNet, text encoders and VAE."""
    origins, shapes = _unet_origins(unet[0])
    out = _place(unet[1], origins, shapes, "unet")
    origins, shapes = _clip_origins(clip[0], clip[1])
    out.update(_place(clip[1], origins, shapes, "clip"))
    origins, shapes = _vae_origins(vae[0])
    out.update(_place(vae[1], origins, shapes, "vae"))
    return out


def checkpoint_metadata(
    family: str, prediction: str, title: str, items: list[tuple[str, str]]
) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """ComfyUI's CheckpointSave metadata (model spec keys, prompt, workflow) and its marker tensors."""
    metadata: dict[str, str] = {}
    arch = {"sdxl": "stable-diffusion-xl-v1-base", "sdxl-refiner": "stable-diffusion-xl-v1-refiner"}.get(
        family
    )
    if arch is not None:
        metadata.update(
            {
                "modelspec.architecture": arch,
                "modelspec.sai_model_spec": "1.0.0",
                "modelspec.implementation": "sgm",
                "modelspec.title": title,
            }
        )
    extra: dict[str, Any] = {}
    metadata["modelspec.predict_key"] = "v" if prediction == "v" else "epsilon"
    if prediction == "v":
        extra["v_pred"] = torch.tensor([])
    metadata.update(items)
    return metadata, extra

"""Standalone diffusion-model files (models/diffusion_models, models/unet): detection and loading.

A file's family is read from its tensors: the FLUX.1 BFL layout (dev with `guidance_in`, schnell
without) and SD3/SD3.5 MMDiTs in Stability's single-file naming (bare or under 'model.diffusion_model.'),
or a diffusers FLUX/SD3 transformer folder, or a whole pipeline folder whose transformer/ is used
(nodes.diffusion.flow_folder).
"""

from __future__ import annotations

from pathlib import Path

import torch

from nodes.diffusion import flow_folder, flux, sd3
from nodes.diffusion.checkpoint_io import CheckpointFormatError, read_header, read_weights
from nodes.diffusion.recipe import ComponentRecipe
from nodes.diffusion.stored_weights import is_scaled_fp8
from nodes.diffusion.weight_folder import tensor_shapes

# UNETLoader's weight_dtype choices -> the dtype Linear weights are stored in (None: as in the file).
WEIGHT_DTYPES: dict[str, torch.dtype | None] = {
    "default": None,
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e4m3fn_fast": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
EXPECTED = (
    "expected a FLUX.1 diffusion model: BFL single-file keys 'double_blocks.*', 'single_blocks.*', "
    "'img_in.weight' (optionally under 'model.diffusion_model.'); an SD3/SD3.5 MMDiT ('joint_blocks.*', "
    "'x_embedder.*'); or a diffusers FLUX/SD3 transformer folder (config.json + safetensors) or pipeline folder"
)


def inspect_diffusion_model(path: Path) -> str:
    """The family of a standalone diffusion model file or folder (a flux.FAMILIES name or sd3)."""
    if path.is_dir():
        folder = flow_folder.transformer_dir(path)
        if not (folder / "config.json").is_file():
            raise CheckpointFormatError(
                f"{path.name} is a folder without config.json or model_index.json; {EXPECTED}"
            )
        return flow_folder.transformer_family(folder)
    if path.suffix.lower() not in (".safetensors", ".sft"):
        raise CheckpointFormatError(f"{path.name}: diffusion models load from .safetensors files; {EXPECTED}")
    header, _ = read_header(path)
    keys = [k for k in header if k != "__metadata__"]
    if sd3.is_mmdit(keys):
        return sd3.FAMILY
    prefix = flux.flux_prefix(keys)
    if prefix is None:
        raise CheckpointFormatError(f"{path.name} is not a supported diffusion model; {EXPECTED}")
    return flux.flux_family(keys, prefix, {k: v["shape"] for k, v in header.items() if k != "__metadata__"})


def _storage_cast(weight_dtype: str, shapes: dict[str, list[int]]):
    """Per-key dtype while reading: matrices to the fp8 type asked for, everything else as stored.

    Scaled-fp8 files keep their weights as stored whatever `weight_dtype` says (as ComfyUI does):
    narrowing weight / scale again would lose what the scale preserved.
    """
    target = WEIGHT_DTYPES[weight_dtype]
    if target is None or is_scaled_fp8(shapes, "") or is_scaled_fp8(shapes, sd3.MMDIT_PREFIX):
        return None
    return lambda key: target if key.endswith(".weight") and len(shapes.get(key, ())) == 2 else None


def load_diffusion_model(recipe: ComponentRecipe, compute: torch.dtype) -> torch.nn.Module:
    """Build the recipe's diffusion model, Linear weights kept in their storage dtype."""
    path = Path(recipe.path)
    if recipe.weight_dtype not in WEIGHT_DTYPES:
        raise CheckpointFormatError(
            f"unknown weight_dtype {recipe.weight_dtype!r}; valid: {', '.join(WEIGHT_DTYPES)}"
        )
    if path.is_dir():
        return _load_folder(path, recipe, compute)
    header, _ = read_header(path)
    shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
    if recipe.family == sd3.FAMILY:
        mmdit = sd3.mmdit_prefix(shapes)
        if mmdit is None:
            raise CheckpointFormatError(f"{path.name} holds no SD3 MMDiT ('joint_blocks.*'); {EXPECTED}")
        cast = _storage_cast(recipe.weight_dtype, shapes)
        return sd3.build_transformer(read_weights(path, lambda k: k.startswith(mmdit), cast), compute, mmdit)
    prefix = flux.flux_prefix(list(shapes))
    if prefix is None:
        raise CheckpointFormatError(f"{path.name} is not a supported diffusion model; {EXPECTED}")
    sd = read_weights(path, lambda k: k.startswith(prefix), _storage_cast(recipe.weight_dtype, shapes))
    return flux.build_flux(sd, prefix, recipe.family, compute)


def _load_folder(path: Path, recipe: ComponentRecipe, compute: torch.dtype) -> torch.nn.Module:
    """A diffusers transformer folder (or a pipeline's transformer/), its shards narrowed as asked."""
    folder = flow_folder.transformer_dir(path)
    shapes = tensor_shapes(folder)
    return flow_folder.load_transformer(
        folder, recipe.family, compute, _storage_cast(recipe.weight_dtype, shapes)
    )

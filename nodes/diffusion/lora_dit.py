"""Where FLUX and SD3 LoRA keys land: the published files' fused weights mapped onto our split diffusers weights.

Published FLUX/SD3 files fuse q, k and v (and FLUX single blocks also the MLP input) into one matrix and
store the final modulation as (shift, scale); the diffusers models we run split them and read (scale,
shift). LoRAs come in both namings, so every LoRA target is expressed in the file's naming: a fused
weight (its ComfyUI state-dict name, which also seeds fp8 rounding) and the rows the LoRA covers.
Which rows of which fused weight each of our parameters holds is learnt by running our own key
converter on tagged tensors (each row holding its weight's index and row number), so the map can never
disagree with how the model was loaded.

LoRA namings accepted, as ComfyUI maps them:
  * native / BFL: `diffusion_model.<file key>` and kohya `lora_unet_<file key with _>`;
  * diffusers / peft: `transformer.<diffusers module>` (SD3 also `base_model.model.`), OneTrainer
    `lora_transformer_<module with _>`, SimpleTuner `lycoris_<module with _>`;
  * FLUX `diffusion_model.single_blocks.N.linear1_qkv` (the attention rows of linear1 only);
  * any other tensor (norm scales, biases) by its full native name (BFL control LoRAs set norm scales).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from nodes.diffusion import flow_folder, flux, sd3
from nodes.diffusion.checkpoint_io import read_header

# Row tags: weight index * _STRIDE + row number, exact in float64 for every published size.
_STRIDE = 2**24
COMFY_PREFIX = "diffusion_model."


@dataclass(frozen=True, eq=False)
class Slot:
    """One of our parameters and the rows of its fused weight it holds (None: all rows, same order)."""

    param: str
    rows: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class Target:
    """A LoRA target: a weight by its ComfyUI name and the rows the LoRA covers (None: all)."""

    key: str
    rows: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class DitLoraMap:
    """Fused weights (ComfyUI names) -> our parameter slots, and LoRA stems -> targets."""

    slots: dict[str, list[Slot]]
    targets: dict[str, Target]


class DitLoraSourceError(ValueError):
    """A model whose published-layout names cannot be recovered (a file without the family's transformer)."""


def _file_shapes(path: str, family: str) -> tuple[str, dict[str, list[int]]]:
    """The model file's key prefix and its (prefix-free) transformer tensor shapes."""
    if Path(path).is_dir():
        # A diffusers folder already holds our names: its published-layout twin comes from the config.
        return "", flow_folder.single_file_shapes(Path(path), family)
    header, _ = read_header(Path(path))
    keys = [k for k in header if k != "__metadata__"]
    prefix = sd3.mmdit_prefix(keys) if family == sd3.FAMILY else flux.flux_prefix(keys)
    if prefix is None:
        raise DitLoraSourceError(f"{Path(path).name} holds no {family} transformer")
    shapes = {k[len(prefix) :]: list(header[k]["shape"]) for k in keys if k.startswith(prefix)}
    return prefix, shapes


def _tagged(shapes: dict[str, list[int]]) -> tuple[list[str], dict[str, torch.Tensor]]:
    names = sorted(shapes)
    tensors = {}
    for i, name in enumerate(names):
        shape = shapes[name]
        rows = shape[0] if shape else 1
        tag = torch.arange(rows, dtype=torch.float64) + i * _STRIDE
        tensors[name] = tag.reshape(rows, *[1] * (len(shape) - 1))
    return names, tensors


def _convert(family: str, shapes: dict[str, list[int]], tensors: dict[str, torch.Tensor]) -> dict:
    if family == sd3.FAMILY:
        return sd3.convert_transformer(tensors, prefix="")
    cfg = flux.flux_config(shapes, "")
    return flux.bfl_to_diffusers(tensors, "", cfg["num_attention_heads"] * flux.HEAD_DIM)


@cache
def dit_lora_map(path: str, family: str) -> DitLoraMap:
    """The slot and target maps of the FLUX or SD3 transformer in `path` (file header only)."""
    _, shapes = _file_shapes(path, family)
    names, tensors = _tagged(shapes)
    converted = _convert(family, shapes, tensors)
    # Our modules: FluxModel wraps the diffusers transformer; SD3 hands the transformer itself.
    root = "" if family == sd3.FAMILY else "transformer."
    slots: dict[str, list[Slot]] = {}
    ours: dict[str, Target] = {}
    for dname, tag in converted.items():
        flat = tag.reshape(-1).to(torch.int64)
        index = int(flat[0]) // _STRIDE
        rows = flat - index * _STRIDE
        key = COMFY_PREFIX + names[index]
        full = shapes[names[index]]
        identity = len(rows) == (full[0] if full else 1) and bool((rows == torch.arange(len(rows))).all())
        slot_rows = None if identity else rows
        slots.setdefault(key, []).append(Slot(root + dname, slot_rows))
        ours[dname] = Target(key, slot_rows)
    targets: dict[str, Target] = {}
    for name in names:
        if name.endswith(".weight"):
            stem = name[: -len(".weight")]
            targets[COMFY_PREFIX + stem] = Target(COMFY_PREFIX + name, None)
            targets["lora_unet_" + stem.replace(".", "_")] = Target(COMFY_PREFIX + name, None)
        else:
            # Other tensors (norm scales, biases) answer to their own full name (set values, diffs).
            targets[COMFY_PREFIX + name] = Target(COMFY_PREFIX + name, None)
    for dname, target in ours.items():
        if not dname.endswith(".weight"):
            continue
        stem = dname[: -len(".weight")]
        under = stem.replace(".", "_")
        targets["transformer." + stem] = target
        targets["lora_transformer_" + under] = target
        targets["lycoris_" + under] = target
        if family == sd3.FAMILY:
            targets["base_model.model." + stem] = target
    if family != sd3.FAMILY:
        hidden = shapes["img_in.weight"][0]
        for name in names:
            if name.endswith(".linear1.weight"):
                stem = COMFY_PREFIX + name.replace(".linear1.weight", ".linear1_qkv")
                targets[stem] = Target(COMFY_PREFIX + name, torch.arange(3 * hidden))
    return DitLoraMap(slots, targets)

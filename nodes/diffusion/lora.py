"""LoRA files applied as weight patches on a copy that shares every unpatched tensor with the base model.

Layouts: kohya (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*`, `lora_te3_*` with
`.lora_down/.lora_up/.alpha`; UNet names in diffusers or LDM spelling), diffusers/peft
(`unet.<module>.lora_A/lora_B` or `.lora.down/.lora.up`, `text_encoder.*`, `text_encoder_2.*`), and for
FLUX and SD3 the native/BFL, diffusers, OneTrainer and SimpleTuner namings of nodes.diffusion.lora_dit,
and BFL's FLUX control LoRAs (nodes.diffusion.lora_file), whose widened img_in widens the patched layer.
Every patch on a weight is computed in float32 and rounded once (nodes.diffusion.lora_math). Merge
patches (ModelMergeSimple) blend another model's weights in the same pass. The cached base model is
never mutated.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from functools import cache
from pathlib import Path

import torch
from diffusers.loaders import single_file_utils as sfu

from engine import UserFacingError
from nodes.diffusion import families, flux, sd3
from nodes.diffusion.checkpoint_io import read_header, read_weights
from nodes.diffusion.diffusers_folder import ldm_unet_layout
from nodes.diffusion.lora_dit import DitLoraMap, Slot, Target, dit_lora_map
from nodes.diffusion.lora_file import read_adapters
from nodes.diffusion.lora_math import Adapter, apply_adapter, kept_dtype, round_to
from nodes.diffusion.recipe import ComponentRecipe, LoraPatch, MergePatch
from nodes.diffusion.text_encode import ClipStack

log = logging.getLogger(__name__)

DIT_FAMILIES = (*flux.FAMILIES, sd3.FAMILY)
# Stems of text-encoder LoRA keys; everything else is meant for the diffusion model.
TEXT_PREFIXES = ("lora_te", "text_encoder", "text_encoders.", "lora_prior_te")
_LAYERS = (torch.nn.Linear, torch.nn.Conv2d)
# Text encoders: ComfyUI maps every T5 weight, so T5's relative position tables (embeddings) take LoRAs too.
_TEXT_LAYERS = (*_LAYERS, torch.nn.Embedding)
# Per weight (ComfyUI's name): (rows or None, adapter, strength) in the order the patches were added.
Ops = dict[str, list[tuple[torch.Tensor | None, Adapter, float]]]


class LoraError(UserFacingError):
    """A LoRA file that matches nothing in the model it is applied to."""

    code = "lora_mismatch"


@cache
def ldm_unet_names(path: str, family: str) -> dict[str, str]:
    """LDM module name (underscored) -> diffusers module path, derived by running the converter on tags."""
    if Path(path).is_dir():
        shapes = {k: list(v) for k, v in ldm_unet_layout(Path(path)).items()}
    else:
        header, _ = read_header(Path(path))
        shapes = {k: v["shape"] for k, v in header.items() if k.startswith(families.UNET_PREFIX)}
    cfg = families.unet_config(family, {k: torch.empty(s, device="meta") for k, s in shapes.items()})
    keys = sorted(shapes)
    tagged = {
        k: torch.full(s if len(s) == 1 else [1] * len(s), float(i))
        for i, (k, s) in enumerate((k, shapes[k]) for k in keys)
    }
    converted = sfu.convert_ldm_unet_checkpoint(tagged, cfg)
    names = {}
    for dkey, t in converted.items():
        ldm = keys[int(t.reshape(-1)[0])][len(families.UNET_PREFIX) :]
        names[ldm.rsplit(".", 1)[0].replace(".", "_")] = dkey.rsplit(".", 1)[0]
    return names


def _add_module(lmap: DitLoraMap, key: str, path: str, module: torch.nn.Module, stems: list[str]) -> None:
    """Register one layer: its weight (and bias) under `key`, reachable from each stem."""
    lmap.slots[key + ".weight"] = [Slot(path + ".weight", None)]
    if getattr(module, "bias", None) is not None:
        lmap.slots[key + ".bias"] = [Slot(path + ".bias", None)]
    for stem in stems:
        lmap.targets[stem] = Target(key + ".weight", None)


def _unet_map(model: torch.nn.Module, recipe: ComponentRecipe) -> DitLoraMap:
    """The SD1.x/SD2/SDXL UNet: kohya names in diffusers or LDM spelling, peft `unet.` names."""
    lmap = DitLoraMap({}, {})
    modules = dict(model.named_modules())
    for name, mod in modules.items():
        if isinstance(mod, _LAYERS):
            _add_module(lmap, name, name, mod, ["lora_unet_" + name.replace(".", "_"), "unet." + name])
    for ldm, dname in ldm_unet_names(recipe.path, recipe.family).items():
        if dname in modules:
            lmap.targets["lora_unet_" + ldm] = Target(dname + ".weight", None)
    return lmap


def _text_prefixes(recipe: ComponentRecipe, names: list[str]) -> dict[str, list[str]]:
    """Encoder name -> its LoRA stem prefixes (kohya and peft), ComfyUI's numbering per family."""
    if recipe.family not in ("flux", "sd3"):
        if recipe.family == "sdxl-refiner":
            return {names[0]: ["lora_te2_", "text_encoder_2."]}
        if len(names) == 1:
            return {names[0]: ["lora_te_", "text_encoder."]}
        return dict(
            zip(names, (["lora_te1_", "text_encoder."], ["lora_te2_", "text_encoder_2."]), strict=True)
        )
    # ComfyUI's names for standalone encoders: CLIP-L is te1 (and te); CLIP-G te2 beside a CLIP-L, else
    # te; T5 is numbered after the CLIPs present (FLUX's T5 answers to both te2 and te3).
    out = {n: [f"text_encoders.{n}.transformer."] for n in names}
    if "clip_l" in out:
        out["clip_l"] += ["lora_te1_", "lora_te_", "text_encoder."]
    if "clip_g" in out:
        out["clip_g"] += (
            ["lora_te2_", "text_encoder_2."] if "clip_l" in out else ["lora_te_", "text_encoder."]
        )
    if "t5xxl" in out:
        index = 1 + ("clip_g" in out) + ("clip_l" in out)
        out["t5xxl"] += [f"lora_te{index}_"] + (["lora_te3_"] if index == 2 else [])
    return out


def _text_map(model: torch.nn.Module, recipe: ComponentRecipe) -> DitLoraMap:
    """Text encoder layers under every naming their family's LoRAs use; keys in ComfyUI's naming."""
    if not isinstance(model, ClipStack):
        raise TypeError(f"a {recipe.component} recipe loaded a {type(model).__name__}, not text encoders")
    lmap = DitLoraMap({}, {})
    names = list(model.encoders.keys())
    for enc, prefixes in _text_prefixes(recipe, names).items():
        for name, mod in model.encoders[enc].named_modules():
            if not isinstance(mod, _TEXT_LAYERS):
                continue
            t5 = enc == "t5xxl"
            hf = (
                name
                if t5 or name.startswith("text_model.") or name == "text_projection"
                else "text_model." + name
            )
            stems = [p + (hf.replace(".", "_") if p.startswith("lora_") else hf) for p in prefixes]
            _add_module(lmap, f"{enc}.transformer.{hf}", f"encoders.{enc}.{name}", mod, stems)
    return lmap


def lora_map(model: torch.nn.Module, recipe: ComponentRecipe) -> DitLoraMap:
    """Where each LoRA stem lands in `model` (the recipe's component)."""
    if recipe.component != "unet":
        return _text_map(model, recipe)
    if recipe.family in DIT_FAMILIES:
        return dit_lora_map(recipe.path, recipe.family)
    return _unet_map(model, recipe)


def lora_ops(
    name: str,
    lora: dict[str, torch.Tensor],
    lmap: DitLoraMap,
    strength: float,
    ops: Ops,
    recipe: ComponentRecipe,
) -> int:
    """Add one LoRA file's patches to `ops`; returns how many stems matched (unmatched ones are logged)."""
    adapters, stray = read_adapters(name, lora)
    component = recipe.component
    text = component != "unet"
    matched, missed = 0, []
    for stem, found in adapters.items():
        if stem.startswith(TEXT_PREFIXES) != text:
            continue
        target = lmap.targets.get(stem)
        if target is None:
            missed.append(stem)
            continue
        matched += 1
        if found.weight is not None:
            ops.setdefault(target.key, []).append((target.rows, found.weight, strength))
        if found.bias is not None:
            bias = target.key[: -len(".weight")] + ".bias"
            if bias not in lmap.slots:
                raise LoraError(f"{name}: {stem} carries a bias diff but its layer has no bias")
            ops.setdefault(bias, []).append((target.rows, found.bias, strength))
    stray = [k for k in stray if k.startswith(TEXT_PREFIXES) == text]
    if missed or stray:
        log.warning(
            "LoRA %s: %d %s layers match nothing in this model and are not applied (e.g. %s)",
            name,
            len(missed) + len(stray),
            component,
            (missed + stray)[:3],
        )
    if not matched and (missed or stray):
        raise LoraError(
            f"{name}: none of its {len(missed) + len(stray)} {component} layers match a {recipe.family} "
            "model; is it a LoRA for another model family?"
        )
    return matched


class MergeError(UserFacingError):
    """Two models whose weights cannot be blended."""

    code = "merge_mismatch"


def merge_weights(model: torch.nn.Module, other: torch.nn.Module, keep: float) -> int:
    """Blend `other`'s tensors into `model`'s (fresh Parameters, in float32); returns how many changed."""
    theirs = dict(other.named_parameters())
    count = 0
    for name, w in list(model.named_parameters()):
        o = theirs.get(name)
        if o is None:
            continue
        if o.shape != w.shape:
            raise MergeError(f"cannot merge {name}: shapes {tuple(w.shape)} and {tuple(o.shape)} differ")
        owner, _, leaf = name.rpartition(".")
        new = w.detach().float() * keep + o.detach().to(w.device).float() * (1.0 - keep)
        setattr(model.get_submodule(owner), leaf, torch.nn.Parameter(new.to(w.dtype), requires_grad=False))
        count += 1
    return count


def fused_weight(model: torch.nn.Module, slots: list[Slot]) -> torch.Tensor:
    """A weight in the published layout (float32), assembled from the parameters holding its rows."""
    params = dict(model.named_parameters())
    first = params[slots[0].param]
    if len(slots) == 1 and slots[0].rows is None:
        return first.detach().to(torch.float32, copy=True)
    rows = sum(len(s.rows) for s in slots if s.rows is not None)
    fused = torch.empty((rows, *first.shape[1:]), dtype=torch.float32, device=first.device)
    for slot in slots:
        fused[slot.rows] = params[slot.param].detach().float()
    return fused


def apply_ops(model: torch.nn.Module, lmap: DitLoraMap, ops: Ops, compute: torch.dtype | None) -> None:
    """Patch each weight in `ops` (assembled from its slots, in float32) and put the rounded rows back."""
    for key, todo in ops.items():
        slots = lmap.slots[key]
        stored = model.get_parameter(slots[0].param).dtype
        fused = fused_weight(model, slots)
        try:
            for rows, adapter, strength in todo:
                if rows is None:
                    fused = apply_adapter(fused, adapter, strength)
                else:
                    fused[rows] = apply_adapter(fused[rows], adapter, strength)
        except ValueError as exc:
            raise LoraError(f"cannot patch {key}: {exc}; is the LoRA for another model size?") from exc
        result = round_to(fused, kept_dtype(stored, compute), key)
        for slot in slots:
            owner, _, leaf = slot.param.rpartition(".")
            value = result if slot.rows is None else result[slot.rows]
            module = model.get_submodule(owner)
            setattr(module, leaf, torch.nn.Parameter(value, requires_grad=False))
            if isinstance(module, torch.nn.Linear) and leaf == "weight":
                # A widened weight (BFL control LoRAs' img_in) widens the layer's input.
                module.in_features = value.shape[1]


def patched_module(
    base: torch.nn.Module,
    recipe: ComponentRecipe,
    resolve: Callable[[ComponentRecipe], torch.nn.Module] | None = None,
    compute: torch.dtype | None = None,
) -> torch.nn.Module:
    """A copy of `base` sharing all tensors except the patched weights (base stays untouched).

    Patches apply in order; consecutive LoRAs on one weight are summed in float32 and rounded once.
    `resolve` loads the other model of a merge patch; `compute` is the diffusion model's compute dtype
    (patched weights narrower than it are kept in it, see lora_math).
    """
    memo = {id(t): t for t in (*base.parameters(), *base.buffers())}
    model = copy.deepcopy(base, memo)
    lmap = lora_map(model, recipe) if any(isinstance(p, LoraPatch) for p in recipe.patches) else None
    ops: Ops = {}
    for patch in recipe.patches:
        if isinstance(patch, MergePatch):
            if resolve is None:
                raise ValueError("merge patches need a loader for the other model")
            if lmap is not None and ops:
                apply_ops(model, lmap, ops, compute)
                ops = {}
            merged = merge_weights(model, resolve(patch.other), patch.keep)
            log.info("merged %d %s tensors keeping %s of the base", merged, recipe.component, patch.keep)
            continue
        if patch.strength == 0 or lmap is None:
            continue
        name = Path(patch.path).name
        count = lora_ops(name, read_weights(Path(patch.path)), lmap, patch.strength, ops, recipe)
        log.info("LoRA %s: %d %s layers (strength %s)", name, count, recipe.component, patch.strength)
    if lmap is not None and ops:
        apply_ops(model, lmap, ops, compute)
    return model

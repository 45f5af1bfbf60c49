"""LoRA files applied as weight patches on a copy that shares every unpatched tensor with the base model.

Layouts: kohya (`lora_unet_*`, `lora_te_*`, `lora_te1_*`, `lora_te2_*` with `.lora_down/.lora_up/.alpha`;
UNet names in diffusers or LDM spelling) and diffusers/peft (`unet.<module>.lora_A/lora_B` or
`.lora.down/.lora.up`, `text_encoder.*`, `text_encoder_2.*`). Merge patches (ModelMergeSimple) blend
another model's weights in the same pass. The cached base model is never mutated.
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
from nodes.diffusion import families
from nodes.diffusion.checkpoint_io import read_header, read_weights
from nodes.diffusion.diffusers_folder import ldm_unet_layout
from nodes.diffusion.recipe import ComponentRecipe, LoraPatch, MergePatch
from nodes.diffusion.text_encode import ClipStack

log = logging.getLogger(__name__)

_DOWN = (".lora_down.weight", ".lora.down.weight", ".lora_A.weight")
_UP = (".lora_up.weight", ".lora.up.weight", ".lora_B.weight")


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


def _targets(model: torch.nn.Module, recipe: ComponentRecipe) -> dict[str, str]:
    """Underscored LoRA target name (with its kohya prefix) -> module path in `model`."""
    out: dict[str, str] = {}
    layers = (torch.nn.Linear, torch.nn.Conv2d)
    if recipe.component == "unet":
        for name, mod in model.named_modules():
            if isinstance(mod, layers):
                out["lora_unet_" + name.replace(".", "_")] = name
                out["unet." + name] = name
        for ldm, dname in ldm_unet_names(recipe.path, recipe.family).items():
            out["lora_unet_" + ldm] = dname
        return out
    if not isinstance(model, ClipStack):
        raise TypeError(f"a {recipe.component} recipe loaded a {type(model).__name__}, not text encoders")
    names = [s.name for s in model.specs]
    kohya = ["lora_te_"] if len(names) == 1 else ["lora_te1_", "lora_te2_"]
    peft = ["text_encoder."] if len(names) == 1 else ["text_encoder.", "text_encoder_2."]
    if recipe.family == "sdxl-refiner":
        kohya, peft = ["lora_te2_"], ["text_encoder_2."]
    for enc, kp, pp in zip(names, kohya, peft, strict=True):
        for name, mod in model.encoders[enc].named_modules():
            if isinstance(mod, layers):
                hf = (
                    name
                    if name.startswith("text_model.") or name == "text_projection"
                    else "text_model." + name
                )
                out[kp + hf.replace(".", "_")] = f"encoders.{enc}.{name}"
                out[pp + hf] = f"encoders.{enc}.{name}"
    return out


def lora_deltas(lora: dict[str, torch.Tensor], targets: dict[str, str]) -> dict[str, tuple]:
    """Module path -> (up, down, scale) for every LoRA pair whose target exists."""
    out = {}
    for key, down in lora.items():
        suffix = next((s for s in _DOWN if key.endswith(s)), None)
        if suffix is None:
            continue
        stem = key[: -len(suffix)]
        up = lora.get(stem + _UP[_DOWN.index(suffix)])
        if up is None or stem not in targets:
            continue
        alpha = lora.get(stem + ".alpha")
        rank = down.shape[0]
        scale = float(alpha) / rank if alpha is not None else 1.0
        out[targets[stem]] = (up, down, scale)
    return out


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


def patched_module(
    base: torch.nn.Module,
    recipe: ComponentRecipe,
    resolve: Callable[[ComponentRecipe], torch.nn.Module] | None = None,
) -> torch.nn.Module:
    """A copy of `base` sharing all tensors except the patched weights (base stays untouched).

    Patches apply in order; `resolve` loads the other model of a merge patch.
    """
    memo = {id(t): t for t in (*base.parameters(), *base.buffers())}
    model = copy.deepcopy(base, memo)
    targets = _targets(model, recipe) if any(isinstance(p, LoraPatch) for p in recipe.patches) else {}
    for patch in recipe.patches:
        if isinstance(patch, MergePatch):
            if resolve is None:
                raise ValueError("merge patches need a loader for the other model")
            merged = merge_weights(model, resolve(patch.other), patch.keep)
            log.info("merged %d %s tensors keeping %s of the base", merged, recipe.component, patch.keep)
            continue
        if patch.strength == 0:
            continue
        lora = read_weights(Path(patch.path))
        deltas = lora_deltas(lora, targets)
        relevant = [
            k
            for k in lora
            if k.startswith(
                ("lora_unet_", "unet.") if recipe.component == "unet" else ("lora_te", "text_encoder")
            )
        ]
        if relevant and not deltas:
            raise LoraError(
                f"{Path(patch.path).name}: none of its {len(relevant)} {recipe.component} keys match a "
                f"{recipe.family} model; is it a LoRA for another model family?"
            )
        for path, (up, down, scale) in deltas.items():
            mod = model.get_submodule(path)
            w = model.get_parameter(f"{path}.weight")
            delta = (up.flatten(1).float() @ down.flatten(1).float()).reshape(w.shape)
            new = w.detach().float() + delta.to(w.device) * (scale * patch.strength)
            mod.weight = torch.nn.Parameter(new.to(w.dtype), requires_grad=False)
        log.info(
            "LoRA %s: patched %d %s layers (strength %s)",
            Path(patch.path).name,
            len(deltas),
            recipe.component,
            patch.strength,
        )
    return model

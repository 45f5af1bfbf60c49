"""Checkpoint loading: one read per file, LDM -> diffusers conversion, modules into the model store.

Diffusers pipeline folders take the same path from detection on, through nodes.diffusion.diffusers_folder.

Models are built on the meta device from configs (shipped JSON plus shapes read from the file) and
receive the converted tensors with `load_state_dict(assign=True)`, so no random init is spent and no
hub lookup can happen. Conversion uses diffusers' own single-file helpers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion import diffusers_folder, families
from nodes.diffusion.checkpoint_io import (
    CheckpointFormatError,
    read_header,
    read_weights,
    safetensors_metadata,
)
from nodes.diffusion.lora import patched_module
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.text_encode import ClipStack

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """Keys a component's model expected but the file lacked, and converted keys the model rejected."""

    component: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


@dataclass
class CheckpointInfo:
    """What a checkpoint file is: family, prediction type and the components it holds."""

    path: str
    family: str
    prediction: str
    components: tuple[str, ...]
    # UNet input channels: 4, or 9 for inpainting checkpoints (latent + mask + masked-image latent).
    unet_in_channels: int = 4


def _to_model(
    model: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, name: str
) -> tuple[torch.nn.Module, LoadReport]:
    """Assign converted tensors into a meta-built model in `dtype`; report key mismatches."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    report = LoadReport(name, list(result.missing_keys), list(result.unexpected_keys))
    for buf_name, buf in list(model.named_buffers()):
        if buf.is_meta and buf_name.endswith("position_ids"):
            owner = model.get_submodule(buf_name.rsplit(".", 1)[0])
            owner.register_buffer(
                "position_ids", torch.arange(buf.shape[-1]).expand(buf.shape), persistent=False
            )
    leftover = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if leftover:
        raise CheckpointFormatError(f"{name}: the file lacks {len(leftover)} tensors, e.g. {leftover[:3]}")
    if report.missing or report.unexpected:
        log.warning(
            "%s: %d missing keys %s, %d unexpected keys %s",
            name,
            len(report.missing),
            report.missing[:5],
            len(report.unexpected),
            report.unexpected[:5],
        )
    else:
        log.info("%s: all %d tensors loaded, no missing or unexpected keys", name, len(state))
    return model.eval().requires_grad_(False), report


def build_unet(
    family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype
) -> tuple[torch.nn.Module, LoadReport]:
    """UNet2DConditionModel from LDM `model.diffusion_model.*` tensors."""
    cfg = families.unet_config(family, sd)
    state = sfu.convert_ldm_unet_checkpoint(sd, cfg)
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg)
    return _to_model(unet, state, dtype, f"{family} unet")


def build_vae(
    family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str = families.VAE_PREFIX
) -> tuple[torch.nn.Module, LoadReport]:
    """AutoencoderKL from LDM `first_stage_model.*` tensors (or a bare VAE file with prefix '')."""
    cfg = families.vae_config(family, sd, prefix)
    sub = {k: v for k, v in sd.items() if k.startswith(prefix)}
    state = sfu.convert_ldm_vae_checkpoint(sub, cfg)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(cfg)
    return _to_model(vae, state, dtype, f"{family} vae")


def build_text(
    family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype
) -> tuple[ClipStack, list[LoadReport]]:
    """The family's text encoder(s) from HF- or open_clip-layout tensors."""
    encoders: dict[str, torch.nn.Module] = {}
    reports: list[LoadReport] = []
    specs = families.family_spec(family).text_encoders
    for spec in specs:
        cfg = CLIPTextConfig(**families.text_config(spec, sd))
        cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
        with torch.device("meta"):
            model = cls(cfg)
        p = spec.ldm_prefix
        sub = {"te." + k[len(p) :]: v for k, v in sd.items() if k.startswith(p)}
        if spec.layout == "hf":
            state = sfu.convert_ldm_clip_checkpoint(sub, remove_prefix="te.")
            state.pop("text_model.embeddings.position_ids", None)
        else:
            # A private prefix keeps diffusers from dropping SD2's last block (ComfyUI keeps all 24).
            state = sfu.convert_open_clip_checkpoint(model, sub, prefix="te.")
        if not spec.with_projection:
            state.pop("text_projection.weight", None)
        if not any(k.startswith("text_model.") for k in model.state_dict()):
            # transformers 5 flattened CLIPTextModel (no `text_model.` level).
            state = {k.removeprefix("text_model."): v for k, v in state.items()}
        encoders[spec.name], report = _to_model(model, state, dtype, f"{family} {spec.name}")
        reports.append(report)
    return ClipStack(family, encoders, specs), reports


def _prefixes(family: str) -> dict[str, tuple[str, ...]]:
    """Component -> the key prefixes of its tensors in the single-file layout."""
    texts = tuple(s.ldm_prefix for s in families.family_spec(family).text_encoders)
    return {"unet": (families.UNET_PREFIX,), "vae": (families.VAE_PREFIX,), "clip": texts}


def _wanted(component: str, family: str):
    prefixes = _prefixes(family)[component]
    return lambda k: k.startswith(prefixes)


def inspect_checkpoint(path: Path) -> CheckpointInfo:
    """Detect family, prediction and components from the header (and one small tensor for sd2)."""
    if path.is_dir():
        if not diffusers_folder.is_diffusers_folder(path):
            raise CheckpointFormatError(
                f"{path.name} is a folder without model_index.json; expected a checkpoint file or a "
                "diffusers pipeline folder"
            )
        family, comps = diffusers_folder.detect_family(path)
        channels = diffusers_folder.unet_in_channels(path)
        _check_in_channels(path, channels)
        prediction = families.family_spec(family).prediction
        return CheckpointInfo(str(path), family, prediction, comps, channels)
    if path.suffix.lower() == ".safetensors" or path.suffix.lower() == ".sft":
        header, _ = read_header(path)
        keys = [k for k in header if k != "__metadata__"]
        metadata = safetensors_metadata(path)
        probe = read_weights(path, lambda k: k in (families.V_PRED_KEY, "v_pred"))
        conv_in = header.get(families.UNET_PREFIX + "input_blocks.0.0.weight", {}).get("shape")
    else:
        probe = read_weights(path)
        keys, metadata = list(probe), {}
        weight = probe.get(families.UNET_PREFIX + "input_blocks.0.0.weight")
        conv_in = None if weight is None else list(weight.shape)
    found = families.detect(keys)
    if found.unsupported:
        raise CheckpointFormatError(
            f"{path.name} looks like a {found.unsupported} checkpoint; diffgraph loads SD1.x, SD2.x, SDXL "
            "and SDXL refiner checkpoints"
        )
    if found.family is None or not found.has_unet:
        raise CheckpointFormatError(
            f"{path.name} is not a Stable Diffusion checkpoint: expected 'model.diffusion_model.*' UNet keys "
            "and a 'cond_stage_model.*' or 'conditioner.embedders.*' text encoder (SD1.x/SD2.x/SDXL "
            "single-file layout)"
        )
    family = found.family
    channels = int(conv_in[1]) if conv_in else 4
    _check_in_channels(path, channels)
    # SD2 inpainting checkpoints are eps-prediction (ComfyUI checks v-prediction only for 4 channels).
    if family == "sd2" and channels == 4 and families.is_v_prediction(probe, metadata):
        family = "sd2-v"
    comps = tuple(c for c, ok in (("unet", True), ("clip", True), ("vae", found.has_vae)) if ok)
    prediction = families.family_spec(family).prediction
    return CheckpointInfo(str(path), family, prediction, comps, channels)


def _check_in_channels(path: Path, channels: int) -> None:
    """Refuse UNets whose extra input channels diffgraph does not feed (e.g. instruct-pix2pix's 8)."""
    if channels not in (4, 9):
        raise CheckpointFormatError(
            f"{path.name} has a UNet with {channels} input channels; diffgraph runs 4-channel models and "
            "9-channel inpainting models"
        )


def load_component(recipe: ComponentRecipe, dtype: torch.dtype):
    """Read just one component's tensors from its file and build the module (no patches)."""
    path = Path(recipe.path)
    if recipe.variant is Variant.DIFFUSERS:
        return diffusers_folder.load_part(path, recipe.family, recipe.component, dtype)
    if recipe.variant is Variant.VAE_FILE:
        sd = read_weights(path, cast=lambda _key: dtype)
        return build_vae_file(path, sd, dtype, recipe.family)
    sd = read_weights(path, _wanted(recipe.component, recipe.family), lambda _key: dtype)
    return build_component(recipe.component, recipe.family, sd, dtype)[0]


def build_component(component: str, family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype):
    """Build one component from an already-read state dict; returns (module, reports)."""
    if component == "unet":
        model, report = build_unet(family, sd, dtype)
        return model, [report]
    if component == "vae":
        model, report = build_vae(family, sd, dtype)
        return model, [report]
    return build_text(family, sd, dtype)


def _vae_prefix(keys) -> str:
    return families.VAE_PREFIX if any(k.startswith(families.VAE_PREFIX) for k in keys) else ""


def inspect_vae_file(path: Path) -> str:
    """The family label of a standalone VAE file, checked from its tensors (never from its name).

    SD1.x, SD2.x and SDXL VAEs are 4-channel AutoencoderKLs with identical tensor names and shapes, so
    no weight tells them apart: safetensors `modelspec.architecture` metadata naming SDXL gives "sdxl",
    anything else "sd15". The label only picks the config template (its scaling factor is unused:
    VAE nodes take raw latents), so decoding gives the same result either way.
    """
    if path.suffix.lower() in (".safetensors", ".sft"):
        header, _ = read_header(path)
        shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
        metadata = safetensors_metadata(path)
    else:
        shapes = {k: list(v.shape) for k, v in read_weights(path).items()}
        metadata = {}
    prefix = _vae_prefix(shapes)
    # Both layouts name these two tensors alike (LDM: 'decoder.up.*', diffusers: 'decoder.up_blocks.*').
    conv_in = shapes.get(prefix + "decoder.conv_in.weight")
    if conv_in is None or prefix + "post_quant_conv.weight" not in shapes:
        raise CheckpointFormatError(
            f"{path.name} is not a VAE: expected 'decoder.*'/'encoder.*' keys (AutoencoderKL, "
            "original LDM or diffusers layout)"
        )
    if conv_in[1] != 4:
        raise CheckpointFormatError(
            f"{path.name} is a VAE with {conv_in[1]} latent channels; diffgraph loads the 4-channel "
            "SD1.x/SD2.x/SDXL VAEs"
        )
    arch = metadata.get("modelspec.architecture", "").lower()
    return "sdxl" if "stable-diffusion-xl" in arch else "sd15"


def build_vae_file(
    path: Path, sd: dict[str, torch.Tensor], dtype: torch.dtype, family: str
) -> torch.nn.Module:
    """A standalone VAE file (bare `encoder.*`/`decoder.*` keys, or with `first_stage_model.`)."""
    prefix = _vae_prefix(sd)
    if f"{prefix}decoder.conv_in.weight" not in sd:
        raise CheckpointFormatError(
            f"{path.name} is not a VAE: expected 'decoder.*'/'encoder.*' keys (AutoencoderKL, "
            "original LDM or diffusers layout)"
        )
    if _is_diffusers_vae(sd, prefix):
        return build_diffusers_vae(family, sd, dtype, prefix, path.name)[0]
    return build_vae(family, sd, dtype, prefix)[0]


def _is_diffusers_vae(keys, prefix: str) -> bool:
    return any(k.startswith(prefix + "decoder.up_blocks.") for k in keys)


# Attention tensor names of diffusers releases before 0.14, still found in published VAE files
# (e.g. sd-vae-ft-mse's diffusion_pytorch_model.safetensors), and their current names.
_OLD_ATTENTION_NAMES = {
    ".query.": ".to_q.",
    ".key.": ".to_k.",
    ".value.": ".to_v.",
    ".proj_attn.": ".to_out.0.",
}


def _current_attention_name(key: str) -> str:
    for old, new in _OLD_ATTENTION_NAMES.items():
        key = key.replace(old, new)
    return key


def build_diffusers_vae(
    family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str, name: str
) -> tuple[torch.nn.Module, LoadReport]:
    """AutoencoderKL from a standalone VAE file already in diffusers layout (as ComfyUI accepts too)."""
    cfg = families.vae_config(family, sd, prefix, layout="diffusers")
    state = {_current_attention_name(k[len(prefix) :]): v for k, v in sd.items() if k.startswith(prefix)}
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(cfg)
    return _to_model(vae, state, dtype, f"{name} ({family} vae, diffusers layout)")


def component_dtype(store: Any, component: str) -> torch.dtype:
    """The compute dtype the store's device policy gives a component (VAE is the precise role)."""
    return store.policy.compute_dtype("precise" if component == "vae" else "compute")


def load_component_into(store: Any, recipe: ComponentRecipe) -> torch.nn.Module:
    """The recipe's module from the store, loading it (and LoRA-patching a base copy) on demand."""
    if recipe.patches:
        base = load_component_into(store, recipe.base())
        return store.get(
            recipe.store_key,
            lambda: patched_module(base, recipe, lambda other: load_component_into(store, other)),
        )
    dtype = component_dtype(store, recipe.component)
    return store.get(recipe.store_key, lambda: load_component(recipe, dtype))


def load_checkpoint_into(store: Any, path: Path) -> tuple[CheckpointInfo, dict[str, ComponentRecipe]]:
    """Detect a checkpoint (file or diffusers folder) and make sure its components are in the store.

    A single file is read once for all missing components.
    """
    folder = path.is_dir()
    stat = (path / "model_index.json").stat() if folder else path.stat()
    info_key = ("diffgraph", "info", str(path), stat.st_mtime_ns, stat.st_size)
    info = store.get(info_key, lambda: inspect_checkpoint(path), to_device=False)
    variant = Variant.DIFFUSERS if folder else Variant.CHECKPOINT
    recipes = {c: ComponentRecipe(str(path), info.family, c, variant=variant) for c in info.components}
    missing = [r for r in recipes.values() if r.store_key not in store]
    if folder:
        for recipe in missing:
            dtype = component_dtype(store, recipe.component)
            store.put(recipe.store_key, load_component(recipe, dtype))
    elif missing:
        for recipe, model in _build_from_file(store, path, info.family, missing):
            store.put(recipe.store_key, model)
    return info, recipes


def _build_from_file(store: Any, path: Path, family: str, missing: list[ComponentRecipe]):
    """(recipe, module) for the missing components of a single file, reading the file once."""
    # Only these components' tensors are read (EMA copies and DDPM buffers never are), each
    # converted to its compute dtype while being read.
    prefixes = _prefixes(family)
    dtypes = {p: component_dtype(store, r.component) for r in missing for p in prefixes[r.component]}
    wanted = tuple(dtypes)

    def cast(key: str) -> torch.dtype | None:
        return next(d for p, d in dtypes.items() if key.startswith(p))

    sd = read_weights(path, lambda k: k.startswith(wanted), cast)
    for recipe in missing:
        model, _ = build_component(recipe.component, family, sd, component_dtype(store, recipe.component))
        yield recipe, model

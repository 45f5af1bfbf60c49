"""Checkpoint loading: one read per file, LDM -> diffusers conversion, modules into the model store.

Diffusers pipeline folders take the same path from detection on, through nodes.diffusion.diffusers_folder.

Models are built on the meta device from configs (shipped JSON plus shapes read from the file) and
receive the converted tensors with `load_state_dict(assign=True)`, so no random init is spent and no
hub lookup can happen. Conversion uses diffusers' own single-file helpers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from nodes.diffusion import diffusers_folder, families, flow_folder, flux, sd3, unet_file
from nodes.diffusion.builders import (  # re-exported: callers build single parts through the loader
    LoadReport,
    build_mmdit,
    build_sd3_vae,
    build_text,
    build_unet,
    build_vae,
    to_model,
)
from nodes.diffusion.checkpoint_io import (
    CheckpointFormatError,
    read_header,
    read_weights,
    safetensors_metadata,
)
from nodes.diffusion.flow_folder import transformer_dir
from nodes.diffusion.lora import patched_module
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.weight_folder import read_model_weights, tensor_shapes, weight_bytes

log = logging.getLogger(__name__)
FLUX_VAE_CHANNELS = 16
# Where ComfyUI's all-in-one FLUX files keep each part.
FLUX_CHECKPOINT_PREFIXES = {"unet": "model.diffusion_model.", "vae": "vae.", "clip": "text_encoders."}
# The family of every FLUX CLIP (DualCLIPLoader's, a folder's, an all-in-one file's): one set of text rules.
FLUX_CLIP_FAMILY = "flux"


@dataclass
class CheckpointInfo:
    """What a checkpoint file is: family, prediction type and the components it holds."""

    path: str
    family: str
    prediction: str
    components: tuple[str, ...]
    # UNet input channels: 4, 9 for inpainting checkpoints (latent + mask + masked-image latent), 8 for
    # instruct-pix2pix (latent + image latent).
    unet_in_channels: int = 4


def _sd3_info(path: Path, keys: list[str]) -> CheckpointInfo:
    """An SD3-family single file: MMDiT at the checkpoint prefix, VAE and text encoders when present."""
    if sd3.mmdit_prefix(keys) != sd3.MMDIT_PREFIX:
        raise CheckpointFormatError(
            f"{path.name} holds a bare SD3 MMDiT (no 'model.diffusion_model.' prefix); load it with "
            "UNETLoader from models/diffusion_models"
        )
    has_vae = any(k.startswith(sd3.VAE_PREFIX + "decoder.") for k in keys)
    has_text = any(k.startswith(sd3.TEXT_PREFIX) for k in keys)
    # Without text encoders CLIP stays unbuilt: its handle fails with a clear error only when used.
    comps = tuple(c for c, ok in (("unet", True), ("clip", has_text), ("vae", has_vae)) if ok)
    return CheckpointInfo(str(path), sd3.FAMILY, "flow", comps, 16)


def _prefixes(family: str) -> dict[str, tuple[str, ...]]:
    """Component -> the key prefixes of its tensors in the single-file layout."""
    if family == sd3.FAMILY:
        return {"unet": (sd3.MMDIT_PREFIX,), "vae": (sd3.VAE_PREFIX,), "clip": (sd3.TEXT_PREFIX,)}
    if family in (*flux.FAMILIES, FLUX_CLIP_FAMILY):
        return {c: (p,) for c, p in FLUX_CHECKPOINT_PREFIXES.items()}
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
        if family in families.DIT_FAMILIES:
            return CheckpointInfo(str(path), family, "flow", comps, FLUX_VAE_CHANNELS)
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
        img_in = header.get(FLUX_CHECKPOINT_PREFIXES["unet"] + "img_in.weight", {}).get("shape")
    else:
        probe = read_weights(path)
        keys, metadata = list(probe), {}
        weight = probe.get(families.UNET_PREFIX + "input_blocks.0.0.weight")
        conv_in = None if weight is None else list(weight.shape)
        flux_in = probe.get(FLUX_CHECKPOINT_PREFIXES["unet"] + "img_in.weight")
        img_in = None if flux_in is None else list(flux_in.shape)
    if sd3.is_mmdit(keys):
        return _sd3_info(path, keys)
    if flux.flux_prefix(keys) == FLUX_CHECKPOINT_PREFIXES["unet"]:
        return _flux_info(path, keys, img_in)
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
    if family == "sd2-unclip":
        # ComfyUI decides unCLIP's prediction type by the same rule as plain SD2's.
        prediction = "v" if families.is_v_prediction(probe, metadata) else "eps"
    return CheckpointInfo(str(path), family, prediction, comps, channels)


def _check_in_channels(path: Path, channels: int) -> None:
    """Refuse UNets whose extra input channels diffgraph does not feed."""
    if channels not in (4, 8, 9):
        raise CheckpointFormatError(
            f"{path.name} has a UNet with {channels} input channels; diffgraph runs 4-channel models, "
            "8-channel instruct-pix2pix models and 9-channel inpainting models"
        )


def load_device(store: Any) -> torch.device | None:
    """Where checkpoint tensors are read to: the accelerator itself (no host copy first), or None for cpu."""
    device: torch.device = store.device
    return None if device.type == "cpu" else device


def load_component(recipe: ComponentRecipe, dtype: torch.dtype, device: torch.device | None = None):
    """Read just one component's tensors from its file and build the module (no patches).

    Single files and standalone VAE files are read straight onto `device` (None: cpu); diffusers
    folders, standalone diffusion models and text encoder files are read to the cpu and moved later.
    """
    path = Path(recipe.path)
    if recipe.variant is Variant.DIFFUSERS:
        return diffusers_folder.load_part(path, recipe.family, recipe.component, dtype)
    if recipe.variant is Variant.DIFFUSION_FILE:
        return unet_file.load_diffusion_model(recipe, dtype)
    if recipe.variant is Variant.TEXT_ENCODERS:
        from nodes.diffusion.text_encoders import load_text_stack  # heavy (T5); only when used

        return load_text_stack(recipe.family, [Path(p) for p in recipe.paths])
    if recipe.variant is Variant.VAE_FILE:
        sd = read_model_weights(path, cast=lambda _key: dtype, device=device)
        return build_vae_file(path, sd, dtype, recipe.family)
    stored = recipe.component != "vae" and (
        recipe.family in (sd3.FAMILY, FLUX_CLIP_FAMILY)
        or (recipe.family in flux.FAMILIES and recipe.component == "unet")
    )
    # SD3's MMDiT and text encoders and FLUX's transformer keep their file dtype (widened per layer);
    # the rest is cast on read.
    cast = None if stored else (lambda _key: dtype)
    sd = read_weights(path, _wanted(recipe.component, recipe.family), cast, device)
    return build_component(recipe.component, recipe.family, sd, dtype)[0]


def build_component(component: str, family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype):
    """Build one component from an already-read state dict; returns (module, reports)."""
    if family == sd3.FAMILY:
        return _build_sd3_component(component, sd, dtype)
    if family in (*flux.FAMILIES, FLUX_CLIP_FAMILY):
        return _build_flux_component(component, family, sd, dtype)
    if component == "unet":
        model, report = build_unet(family, sd, dtype)
        return model, [report]
    if component == "vae":
        model, report = build_vae(family, sd, dtype)
        return model, [report]
    return build_text(family, sd, dtype)


def _build_sd3_component(component: str, sd: dict[str, torch.Tensor], dtype: torch.dtype):
    """One part of an SD3-family single file (MMDiT, VAE, or the text encoders it carries)."""
    if component == "unet":
        model, report = build_mmdit(sd, dtype)
        return model, [report]
    if component == "vae":
        model, report = build_sd3_vae(sd, dtype)
        return model, [report]
    from nodes.diffusion.sd3_text import build_sd3_text  # heavy (T5); only when used

    return build_sd3_text(sd, "SD3 checkpoint"), []


def _flux_info(path: Path, keys: list[str], img_in: list[int] | None) -> CheckpointInfo:
    """An all-in-one FLUX file: the BFL model under 'model.diffusion_model.', 'vae.', 'text_encoders.'."""
    prefix = FLUX_CHECKPOINT_PREFIXES["unet"]
    shapes = None if img_in is None else {prefix + "img_in.weight": img_in}
    family = flux.flux_family(keys, prefix, shapes)
    present = {c: any(k.startswith(p) for k in keys) for c, p in FLUX_CHECKPOINT_PREFIXES.items()}
    comps = tuple(c for c in ("unet", "clip", "vae") if present[c])
    return CheckpointInfo(str(path), family, "flow", comps, FLUX_VAE_CHANNELS)


def _build_flux_component(component: str, family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype):
    """One part of an all-in-one FLUX file: transformer, autoencoder, or its CLIP-L + T5-XXL."""
    if component == "unet":
        return flux.build_flux(sd, FLUX_CHECKPOINT_PREFIXES["unet"], family, dtype), []
    if component == "vae":
        model, report = build_vae("flux", sd, dtype, FLUX_CHECKPOINT_PREFIXES["vae"])
        return model, [report]
    from nodes.diffusion.sd3_text import build_sd3_text  # heavy (T5); only when used

    return build_sd3_text(sd, "FLUX checkpoint", "flux"), []


def _vae_prefix(keys) -> str:
    return families.VAE_PREFIX if any(k.startswith(families.VAE_PREFIX) for k in keys) else ""


def inspect_vae_file(path: Path) -> str:
    """The family label of a standalone VAE file, checked from its tensors (never from its name).

    A 16-channel autoencoder without quant convs is FLUX's ("flux"). SD1.x, SD2.x and SDXL VAEs are
    4-channel AutoencoderKLs with identical tensor names and shapes, so no weight tells them apart:
    safetensors `modelspec.architecture` metadata naming SDXL gives "sdxl", anything else "sd15". The label only picks the config template (its scaling factor is unused:
    VAE nodes take raw latents), so decoding gives the same result either way.
    """
    if path.is_dir():
        shapes, metadata = tensor_shapes(path), {}
    elif path.suffix.lower() in (".safetensors", ".sft"):
        header, _ = read_header(path)
        shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
        metadata = safetensors_metadata(path)
    else:
        shapes = {k: list(v.shape) for k, v in read_weights(path).items()}
        metadata = {}
    prefix = _vae_prefix(shapes)
    # Both layouts name these two tensors alike (LDM: 'decoder.up.*', diffusers: 'decoder.up_blocks.*').
    conv_in = shapes.get(prefix + "decoder.conv_in.weight")
    if (
        conv_in is not None
        and conv_in[1] == FLUX_VAE_CHANNELS
        and prefix + "encoder.conv_in.weight" in shapes
    ):
        # 16-channel autoencoders without quant convs (FLUX's, SD3's) share one architecture.
        return "flux"
    if conv_in is None or prefix + "post_quant_conv.weight" not in shapes:
        raise CheckpointFormatError(
            f"{path.name} is not a VAE: expected 'decoder.*'/'encoder.*' keys (AutoencoderKL, "
            "original LDM or diffusers layout)"
        )
    if conv_in[1] != 4:
        raise CheckpointFormatError(
            f"{path.name} is a VAE with {conv_in[1]} latent channels; diffgraph loads the 4-channel "
            "SD1.x/SD2.x/SDXL VAEs and the 16-channel FLUX autoencoder"
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
    return to_model(vae, state, dtype, f"{name} ({family} vae, diffusers layout)")


def component_dtype(store: Any, component: str, precision: str | None = None) -> torch.dtype:
    """The compute dtype the store's device policy gives a component (VAE precise, UNet the denoiser).

    `precision` is the run's (RunContext.precision); None takes the policy's own.
    """
    if component == "vae":
        return store.policy.compute_dtype("precise")
    role = "denoiser" if component == "unet" else "compute"
    return store.policy.compute_dtype(role, precision=precision)


def effective_precision(store: Any, precision: str) -> str:
    """The precision a denoiser recipe records: "fast" only where it changes the dtype on this device.

    Elsewhere (CUDA, CPUs without native bf16) both precisions load the same module, so they share it.
    """
    if precision == "exact":
        return "exact"
    same = component_dtype(store, "unet", precision) == component_dtype(store, "unet", "exact")
    return "exact" if same else precision


def recipe_dtype(store: Any, recipe: ComponentRecipe) -> torch.dtype:
    """The compute dtype of a recipe's module: its component's, at the precision it was loaded for."""
    return component_dtype(store, recipe.component, recipe.precision)


def load_component_into(store: Any, recipe: ComponentRecipe) -> torch.nn.Module:
    """The recipe's module from the store, loading it (and LoRA-patching a base copy) on demand."""
    if recipe.patches:
        base = load_component_into(store, recipe.base())
        compute = recipe_dtype(store, recipe) if recipe.component == "unet" else None
        return store.get(
            recipe.store_key,
            lambda: patched_module(base, recipe, lambda other: load_component_into(store, other), compute),
        )
    if recipe.variant is Variant.TEXT_ENCODERS:
        from nodes.diffusion.text_encoders import load_text_stack  # heavy (T5); only when used

        # Encoders come from the store one file at a time, so two CLIPs sharing a file share its module.
        # The stack around them is not stored: holding them a second time would hide them from the
        # budget (counted twice, and kept alive after the store drops an encoder).
        return load_text_stack(recipe.family, [Path(p) for p in recipe.paths], store)
    dtype = recipe_dtype(store, recipe)
    # A standalone diffusion model file holds about its file size: room is made before it is read.
    path = Path(recipe.path)
    hint = weight_bytes(transformer_dir(path)) if recipe.variant is Variant.DIFFUSION_FILE else 0
    return store.get(
        recipe.store_key, lambda: load_component(recipe, dtype, load_device(store)), size_hint=hint
    )


def release_component(store: Any, recipe: ComponentRecipe) -> None:
    """Mark a standalone text encoder stack as done for this prompt (see ModelStore.release)."""
    if recipe.variant is Variant.TEXT_ENCODERS and not recipe.patches:
        from nodes.diffusion.text_encoders import release_text_encoders

        release_text_encoders(store, [Path(p) for p in recipe.paths])


def load_checkpoint_into(
    store: Any, path: Path, precision: str = "exact"
) -> tuple[CheckpointInfo, dict[str, ComponentRecipe]]:
    """Detect a checkpoint (file or diffusers folder) and make sure its components are in the store.

    A single file is read once for all missing components; the denoiser is built for `precision`.
    """
    folder = path.is_dir()
    stat = (path / "model_index.json").stat() if folder else path.stat()
    info_key = ("diffgraph", "info", str(path), stat.st_mtime_ns, stat.st_size)
    info = store.get(info_key, lambda: inspect_checkpoint(path), to_device=False)
    variant = Variant.DIFFUSERS if folder else Variant.CHECKPOINT
    unet_precision = effective_precision(store, precision)
    # A FLUX folder's or file's text encoders make the same "flux" CLIP as DualCLIPLoader's (one family
    # for all FLUX models).
    clip_family = flow_folder.text_family(info.family) if info.family in flux.FAMILIES else info.family
    recipes = {
        c: ComponentRecipe(
            str(path),
            clip_family if c == "clip" else info.family,
            c,
            variant=variant,
            precision=unet_precision if c == "unet" else "exact",
        )
        for c in info.components
    }
    missing = [r for r in recipes.values() if r.store_key not in store]
    if folder:
        for recipe in missing:
            # Room for a part is made before it is read (a FLUX transformer or T5 is many GB).
            hint = (
                flow_folder.part_bytes(path, recipe.component) if info.family in flow_folder.FAMILIES else 0
            )
            store.get(
                recipe.store_key,
                lambda r=recipe: load_component(r, recipe_dtype(store, r)),
                to_device=False,
                size_hint=hint,
            )
    elif missing:
        for recipe, model in _build_from_file(store, path, info.family, missing):
            store.put(recipe.store_key, model)
    return info, recipes


def _build_from_file(store: Any, path: Path, family: str, missing: list[ComponentRecipe]):
    """(recipe, module) for the missing components of a single file, reading the file once."""
    # Only these components' tensors are read (EMA copies and DDPM buffers never are), each
    # converted to its compute dtype while being read.
    prefixes = _prefixes(family)
    dtypes: dict[str, torch.dtype | None] = {
        p: recipe_dtype(store, r) for r in missing for p in prefixes[r.component]
    }
    if family == sd3.FAMILY:
        # The MMDiT and text encoders keep their stored weights (widened per layer): read them as they are.
        dtypes.update({p: None for p in (sd3.MMDIT_PREFIX, sd3.TEXT_PREFIX) if p in dtypes})
    if family in flux.FAMILIES:
        # So do FLUX's transformer and text encoders (an fp8 file stays fp8, not a float32 copy four times
        # its size; CLIP-L is narrowed to float16 when built).
        for component in ("unet", "clip"):
            if FLUX_CHECKPOINT_PREFIXES[component] in dtypes:
                dtypes[FLUX_CHECKPOINT_PREFIXES[component]] = None
    wanted = tuple(dtypes)

    def cast(key: str) -> torch.dtype | None:
        return next(d for p, d in dtypes.items() if key.startswith(p))

    sd = read_weights(path, lambda k: k.startswith(wanted), cast, load_device(store))
    for recipe in missing:
        model, _ = build_component(recipe.component, family, sd, recipe_dtype(store, recipe))
        yield recipe, model

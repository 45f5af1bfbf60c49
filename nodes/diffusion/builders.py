"""Building one model from converted tensors: UNet, VAE, CLIP text encoders and SD3's MMDiT/VAE.

Models are built on the meta device from configs and receive the tensors with
`load_state_dict(assign=True)`, so no random init is spent; a `LoadReport` lists key mismatches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils as sfu
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from nodes.diffusion import families, sd3
from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.text_encode import ClipStack

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """Keys a component's model expected but the file lacked, and converted keys the model rejected."""

    component: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)


def to_model(
    model: torch.nn.Module, state: dict[str, torch.Tensor], dtype: torch.dtype, name: str
) -> tuple[torch.nn.Module, LoadReport]:
    """Assign converted tensors into a meta-built model in `dtype`; report key mismatches."""
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    report = LoadReport(name, list(result.missing_keys), list(result.unexpected_keys))
    for buf_name, buf in list(model.named_buffers()):
        if buf.is_meta and buf_name.endswith("position_ids"):
            owner = model.get_submodule(buf_name.rsplit(".", 1)[0])
            # Beside the weights: a model read straight onto an accelerator must not get a CPU buffer.
            where = next(model.parameters()).device
            owner.register_buffer(
                "position_ids", torch.arange(buf.shape[-1], device=where).expand(buf.shape), persistent=False
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
    return to_model(unet, state, dtype, f"{family} unet")


def build_vae(
    family: str, sd: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str = families.VAE_PREFIX
) -> tuple[torch.nn.Module, LoadReport]:
    """AutoencoderKL from LDM `first_stage_model.*` tensors (or a bare VAE file with prefix '')."""
    cfg = families.vae_config(family, sd, prefix)
    sub = {k: v for k, v in sd.items() if k.startswith(prefix)}
    state = sfu.convert_ldm_vae_checkpoint(sub, cfg)
    with torch.device("meta"):
        vae = AutoencoderKL.from_config(cfg)
    return to_model(vae, state, dtype, f"{family} vae")


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
        encoders[spec.name], report = to_model(model, state, dtype, f"{family} {spec.name}")
        reports.append(report)
    return ClipStack(family, encoders, specs), reports


def build_mmdit(
    sd: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str = sd3.MMDIT_PREFIX
) -> tuple[torch.nn.Module, LoadReport]:
    """SD3Transformer2DModel from single-file MMDiT tensors (`prefix` '' for a bare transformer file).

    Linear weights stay in the dtype they were read in and are upcast to `dtype` per call.
    """
    model = sd3.build_transformer(sd, dtype, prefix)
    return model, LoadReport("sd3 transformer")


def build_sd3_vae(
    sd: dict[str, torch.Tensor], dtype: torch.dtype, prefix: str = sd3.VAE_PREFIX
) -> tuple[torch.nn.Module, LoadReport]:
    """The 16-channel SD3 AutoencoderKL (no quant convs) from LDM-layout tensors."""
    cfg = sd3.vae_config(sd, prefix)
    return to_model(sd3.new_vae(cfg), sd3.convert_vae(sd, cfg, prefix), dtype, "sd3 vae")

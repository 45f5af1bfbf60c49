"""Model families: shipped configs, detection from key names, and configs derived from tensor shapes.

Detection (works for full-size and tiny files alike, since tiny files keep the key structure):
  * text encoder layout decides the family: `cond_stage_model.transformer.*` (HF CLIP) -> sd15;
    `cond_stage_model.model.*` (open_clip) -> sd2, or sd2-unclip with an `embedder.model.visual.*` tower; `conditioner.embedders.0.transformer.*` plus
    `conditioner.embedders.1.model.*` -> sdxl; `conditioner.embedders.0.model.*` alone -> sdxl-refiner;
  * sd2 v-prediction: a `v_pred` key, safetensors metadata `modelspec.prediction_type` = v, or else
    ComfyUI's heuristic: std of `output_blocks.11.1.transformer_blocks.0.norm1.bias` > 0.09;
  * known unsupported layouts (Flux, video UNets) are named in the error; SD3-family MMDiT files are
    detected and configured by nodes.diffusion.sd3.
Channel counts, depths and context widths come from the tensor shapes, so one family config serves
every size; the JSON in configs/ supplies the rest (activation, heads rule, scaling factor...).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from functools import cache
from importlib import resources
from typing import Any, Literal

import torch

from nodes.types import FLUX_LATENT, SD3_LATENT, SD15_LATENT, SDXL_LATENT, LatentFormat

FAMILIES = ("sd15", "sd2", "sd2-v", "sd2-unclip", "sdxl", "sdxl-refiner")
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
# The CLIP image tower inside SD2.1 unCLIP checkpoints (OpenCLIP layout).
UNCLIP_VISION_PREFIX = "embedder.model.visual."
V_PRED_KEY = UNET_PREFIX + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
LATENT_FORMATS = {"sd15": SD15_LATENT, "sdxl": SDXL_LATENT, "flux": FLUX_LATENT}
# Families loaded by their own module rather than a configs/<name>.json UNet spec.
DIT_FAMILIES = {
    "sd3": SD3_LATENT,
    "flux-dev": FLUX_LATENT,
    "flux-schnell": FLUX_LATENT,
    "flux-fill": FLUX_LATENT,
    "flux-control": FLUX_LATENT,
}
_UNSUPPORTED = (
    ("model.diffusion_model.double_blocks.", "Flux"),
    ("double_blocks.", "Flux"),
    ("model.diffusion_model.time_stack.", "Stable Video Diffusion"),
)


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder of a family: where its weights sit, how it is built and how its output is read."""

    name: str  # "clip_l", "clip_h", "clip_g": the key in ClipStack.encoders
    ldm_prefix: str  # key prefix in a single-file checkpoint
    layout: Literal["hf", "open_clip"]  # key names under that prefix
    config: Mapping[str, Any]  # transformers CLIPTextConfig arguments (sizes come from the weights)
    with_projection: bool  # pooled output through text_projection (CLIPTextModelWithProjection)
    pad_token: int
    default_layer: int  # hidden layer used without clip skip (-1 = last)
    layer_norm_hidden_state: bool  # final layer norm applied to a chosen inner layer
    folder: str = ""  # subfolder in a diffusers folder (set when loaded from one)
    # Layers a diffusers export dropped at the top (SD2's text encoder saved with 23 of 24 layers).
    missing_top_layers: int = 0


@dataclass(frozen=True)
class FamilySpec:
    """A model family as shipped in configs/<name>.json; UNet and VAE configs are diffusers arguments."""

    name: str
    description: str
    prediction: Literal["eps", "v"]
    latent_format: str  # key of LATENT_FORMATS
    # Extra UNet conditioning: pooled text and sizes (sdxl, refiner) or a CLIP image embedding (unclip).
    adm: Literal["none", "sdxl", "refiner", "unclip"]
    head_rule: Literal["fixed_heads", "head_dim_64"]
    unet: Mapping[str, Any]
    vae: Mapping[str, Any]
    scheduler: Mapping[str, Any]
    text_encoders: tuple[TextEncoderSpec, ...]


def _strict(cls: type, data: dict[str, Any], where: str) -> dict[str, Any]:
    """The data's keys checked against a spec class: an unknown or missing key is a packaging error."""
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING}
    unknown, missing = set(data) - names, required - set(data)
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    return data


@cache
def family_spec(family: str) -> FamilySpec:
    """The shipped config of a family, typed."""
    where = f"configs/{family}.json"
    data = json.loads(resources.files("nodes.diffusion").joinpath("configs", f"{family}.json").read_text())
    encoders = tuple(TextEncoderSpec(**_strict(TextEncoderSpec, enc, where)) for enc in data["text_encoders"])
    top = _strict(FamilySpec, {**data, "name": family}, where)
    return FamilySpec(**{**top, "text_encoders": encoders})


def latent_format(family: str) -> LatentFormat:
    """The latent format (scale factor, preview colours) of a family."""
    if family in DIT_FAMILIES:
        return DIT_FAMILIES[family]
    return LATENT_FORMATS[family_spec(family).latent_format]


@dataclass(frozen=True)
class Detection:
    """What a state dict holds: family and which components are present."""

    family: str | None
    has_unet: bool
    has_vae: bool
    has_text: bool
    unsupported: str | None = None


def _has_prefix(keys: set[str] | list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)


def detect(keys: list[str]) -> Detection:
    """Family and components from key names alone (v-prediction is decided later by `is_v_prediction`)."""
    for prefix, name in _UNSUPPORTED:
        if _has_prefix(keys, prefix):
            return Detection(None, False, False, False, unsupported=name)
    has_unet = _has_prefix(keys, UNET_PREFIX + "input_blocks.")
    has_vae = _has_prefix(keys, VAE_PREFIX + "decoder.")
    family = None
    if _has_prefix(keys, "conditioner.embedders.0.transformer.") and _has_prefix(
        keys, "conditioner.embedders.1.model."
    ):
        family = "sdxl"
    elif _has_prefix(keys, "conditioner.embedders.0.model."):
        family = "sdxl-refiner"
    elif _has_prefix(keys, "cond_stage_model.transformer."):
        family = "sd15"
    elif _has_prefix(keys, "cond_stage_model.model.") and _has_prefix(keys, UNCLIP_VISION_PREFIX):
        family = "sd2-unclip"
    elif _has_prefix(keys, "cond_stage_model.model."):
        family = "sd2"
    elif has_unet and _has_prefix(keys, UNET_PREFIX + "label_emb."):
        family = "sdxl"
    return Detection(family, has_unet, has_vae, family is not None and not (has_unet and not family))


def is_v_prediction(sd: dict[str, torch.Tensor], metadata: dict[str, str]) -> bool:
    """SD2 v-prediction: explicit marker, modelspec metadata, else ComfyUI's norm-bias std heuristic."""
    if "v_pred" in sd:
        return True
    spec = metadata.get("modelspec.prediction_type", "").lower()
    if spec:
        return spec in ("v", "v_prediction", "v-prediction")
    bias = sd.get(V_PRED_KEY)
    return bias is not None and float(bias.float().std()) > 0.09


def _count(keys: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def unet_config(family: str, sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The diffusers UNet2DConditionModel config for this family with shapes read from the weights."""
    cfg = copy.deepcopy(dict(family_spec(family).unet))
    keys = [k[len(UNET_PREFIX) :] for k in sd if k.startswith(UNET_PREFIX)]
    w = {k[len(UNET_PREFIX) :]: v for k, v in sd.items() if k.startswith(UNET_PREFIX)}
    mc = w["input_blocks.0.0.weight"].shape[0]
    levels: list[dict[str, int]] = [{"res": 0, "ch": mc, "depth": 0}]
    for i in range(1, _count(keys, r"input_blocks\.(\d+)\.") + 1):
        if f"input_blocks.{i}.0.op.weight" in w:
            levels.append({"res": 0, "ch": levels[-1]["ch"], "depth": 0})
        elif f"input_blocks.{i}.0.out_layers.3.weight" in w:
            levels[-1]["res"] += 1
            levels[-1]["ch"] = w[f"input_blocks.{i}.0.out_layers.3.weight"].shape[0]
            levels[-1]["depth"] = _count(keys, rf"input_blocks\.{i}\.1\.transformer_blocks\.(\d+)\.")
    mid_depth = _count(keys, r"middle_block\.1\.transformer_blocks\.(\d+)\.")
    chans = [lv["ch"] for lv in levels]
    cfg["block_out_channels"] = chans
    cfg["layers_per_block"] = levels[0]["res"]
    cfg["in_channels"] = w["input_blocks.0.0.weight"].shape[1]
    if "out.2.weight" in w:  # a ControlNet's encoder-only copy of the UNet has no output layer
        cfg["out_channels"] = w["out.2.weight"].shape[0]
    cfg["down_block_types"] = ["CrossAttnDownBlock2D" if lv["depth"] else "DownBlock2D" for lv in levels]
    cfg["up_block_types"] = ["CrossAttnUpBlock2D" if lv["depth"] else "UpBlock2D" for lv in reversed(levels)]
    cfg["transformer_layers_per_block"] = [lv["depth"] or mid_depth for lv in levels]
    to_k = next(v for k, v in w.items() if k.endswith("attn2.to_k.weight"))
    cfg["cross_attention_dim"] = to_k.shape[1]
    cfg["use_linear_projection"] = next(v for k, v in w.items() if k.endswith(".1.proj_in.weight")).ndim == 2
    if family_spec(family).head_rule == "head_dim_64":
        cfg["attention_head_dim"] = [max(1, c // 64) for c in chans]
    if "label_emb.0.0.weight" in w:
        cfg["projection_class_embeddings_input_dim"] = w["label_emb.0.0.weight"].shape[1]
    return cfg


# Where a VAE's depth and widths are read, per tensor layout: (level pattern, first resnet's conv2 of
# level {i}, resnet pattern within level 0).
_VAE_LAYOUTS = {
    "ldm": (
        r"encoder\.down\.(\d+)\.",
        "encoder.down.{i}.block.0.conv2.weight",
        r"encoder\.down\.0\.block\.(\d+)\.",
    ),
    "diffusers": (
        r"encoder\.down_blocks\.(\d+)\.",
        "encoder.down_blocks.{i}.resnets.0.conv2.weight",
        r"encoder\.down_blocks\.0\.resnets\.(\d+)\.",
    ),
}


def vae_config(
    family: str, sd: dict[str, torch.Tensor], prefix: str = VAE_PREFIX, layout: str = "ldm"
) -> dict[str, Any]:
    """The diffusers AutoencoderKL config with channel counts read from the weights (LDM or diffusers keys)."""
    levels, conv2, blocks = _VAE_LAYOUTS[layout]
    cfg = copy.deepcopy(dict(family_spec(family).vae))
    w = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    keys = list(w)
    n_levels = _count(keys, levels)
    cfg["block_out_channels"] = [w[conv2.format(i=i)].shape[0] for i in range(n_levels)]
    cfg["down_block_types"] = ["DownEncoderBlock2D"] * n_levels
    cfg["up_block_types"] = ["UpDecoderBlock2D"] * n_levels
    cfg["layers_per_block"] = _count(keys, blocks)
    # FLUX's autoencoder has no quant convs: its latent width is the decoder's input.
    has_quant = "post_quant_conv.weight" in w
    cfg["use_quant_conv"] = cfg["use_post_quant_conv"] = has_quant
    cfg["latent_channels"] = w["post_quant_conv.weight" if has_quant else "decoder.conv_in.weight"].shape[
        0 if has_quant else 1
    ]
    return cfg


def text_config(encoder: TextEncoderSpec, sd: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The transformers CLIPTextConfig kwargs of one text encoder, sized from the weights."""
    cfg = dict(encoder.config)
    p = encoder.ldm_prefix
    if encoder.layout == "hf":
        emb = sd[p + "text_model.embeddings.token_embedding.weight"]
        layers = _count(list(sd), re.escape(p) + r"text_model\.encoder\.layers\.(\d+)\.")
        mlp = sd[p + "text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]
    else:
        emb = sd[p + "token_embedding.weight"]
        layers = _count(list(sd), re.escape(p) + r"transformer\.resblocks\.(\d+)\.")
        mlp = sd[p + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
        if p + "text_projection" in sd:
            cfg["projection_dim"] = sd[p + "text_projection"].shape[1]
    cfg.update(
        vocab_size=emb.shape[0], hidden_size=emb.shape[1], num_hidden_layers=layers, intermediate_size=mlp
    )
    cfg["num_attention_heads"] = max(1, emb.shape[1] // 64)
    return cfg

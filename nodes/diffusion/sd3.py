"""SD3 / SD3.5 family: MMDiT detection and config from tensors, diffusers builders, the 16-channel VAE.

Everything is read from the weights, never from a file name: depth from the patch embedding's width
(64 per block, as ComfyUI counts it), the position grid from `pos_embed`, the MMDiT-X dual-attention
blocks of 3.5 medium from their `x_block.attn2.*` keys, RMS q/k norms (3.5) from `ln_q`. The keys are
converted with diffusers' own single-file helper and loaded into `SD3Transformer2DModel`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from diffusers import AutoencoderKL, SD3Transformer2DModel
from diffusers.loaders import single_file_utils as sfu

from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.flux import apply_scaled_fp8, keep_linear_weights
from nodes.diffusion.stored_weights import converted_scales, scale_rows, split_weight_scales

FAMILY = "sd3"
MMDIT_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "text_encoders."
# ComfyUI's default for SD3-family models (ModelSamplingSD3 without a node): shift 3, timesteps x1000.
DEFAULT_SHIFT = 3.0
TIMESTEP_MULTIPLIER = 1000.0
# AuraFlow-style sampling feeds sigma itself (ModelSamplingAuraFlow's multiplier and default shift).
AURAFLOW_MULTIPLIER = 1.0
AURAFLOW_SHIFT = 1.73
# The SD3 VAE's latent statistics (what diffusers calls scaling and shift factor).
LATENT_SCALE = 1.5305
LATENT_SHIFT = 0.0609
_PROBE = "joint_blocks.0.context_block.attn.qkv.weight"


def mmdit_prefix(keys: Iterable[str]) -> str | None:
    """The key prefix of an MMDiT in a file ('' for a bare transformer file), None when there is none."""
    for key in keys:
        if key.endswith(_PROBE):
            return key[: -len(_PROBE)]
    return None


def is_mmdit(keys: Iterable[str]) -> bool:
    """Whether the keys hold an SD3-style MMDiT (single-file naming)."""
    return mmdit_prefix(keys) is not None


def _shape(shapes: Mapping[str, Any], key: str) -> list[int]:
    if key not in shapes:
        raise CheckpointFormatError(f"SD3 MMDiT: expected tensor {key!r} is missing from the file")
    value = shapes[key]
    return list(value.shape) if isinstance(value, torch.Tensor) else list(value)


def transformer_config(shapes: Mapping[str, Any], prefix: str = MMDIT_PREFIX) -> dict[str, Any]:
    """diffusers SD3Transformer2DModel arguments read from tensor shapes (tensors or shape lists)."""
    proj = _shape(shapes, prefix + "x_embedder.proj.weight")
    hidden, in_channels, patch = proj[0], proj[1], proj[2]
    if hidden % 64:
        raise CheckpointFormatError(f"SD3 MMDiT: width {hidden} is not a multiple of 64 (one head per 64)")
    depth = hidden // 64
    blocks = re.compile(re.escape(prefix) + r"joint_blocks\.(\d+)\.")
    found = {int(m.group(1)) for k in shapes if (m := blocks.match(k))}
    if found != set(range(depth)):
        raise CheckpointFormatError(
            f"SD3 MMDiT: width {hidden} means {depth} blocks but the file has {len(found)} joint blocks"
        )
    dual = re.compile(re.escape(prefix) + r"joint_blocks\.(\d+)\.x_block\.attn2\.qkv\.weight")
    positions = _shape(shapes, prefix + "pos_embed")[1]
    grid = round(math.sqrt(positions))
    if grid * grid != positions:
        raise CheckpointFormatError(f"SD3 MMDiT: pos_embed holds {positions} positions, not a square grid")
    final = _shape(shapes, prefix + "final_layer.linear.weight")[0]
    return {
        "sample_size": 128,
        "patch_size": patch,
        "in_channels": in_channels,
        "out_channels": final // (patch * patch),
        "num_layers": depth,
        "attention_head_dim": 64,
        "num_attention_heads": depth,
        "joint_attention_dim": _shape(shapes, prefix + "context_embedder.weight")[1],
        "caption_projection_dim": hidden,
        "pooled_projection_dim": _shape(shapes, prefix + "y_embedder.mlp.0.weight")[1],
        "pos_embed_max_size": grid,
        "dual_attention_layers": tuple(sorted(int(m.group(1)) for k in shapes if (m := dual.match(k)))),
        "qk_norm": "rms_norm" if prefix + _PROBE.replace("qkv.weight", "ln_q.weight") in shapes else None,
    }


def convert_transformer(
    sd: Mapping[str, torch.Tensor], prefix: str = MMDIT_PREFIX
) -> dict[str, torch.Tensor]:
    """Single-file MMDiT tensors -> diffusers names (fused qkv split, final scale/shift swapped)."""
    sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    converted = sfu.convert_sd3_transformer_checkpoint_to_diffusers(sub)
    if sub:
        raise CheckpointFormatError(
            f"SD3 MMDiT: {len(sub)} tensors were not converted, e.g. {sorted(sub)[:3]}"
        )
    return converted


def new_transformer(config: Mapping[str, Any]) -> torch.nn.Module:
    """An SD3Transformer2DModel on the meta device (weights come from the file)."""
    with torch.device("meta"):
        return SD3Transformer2DModel.from_config(dict(config))


def build_transformer(sd: Mapping[str, torch.Tensor], compute: torch.dtype, prefix: str = MMDIT_PREFIX):
    """SD3Transformer2DModel with Linear weights kept as stored (fp16, bf16, fp8) and upcast per call.

    Everything else (convolution, norms, the position table) is widened to `compute` once; a file
    that does not fill the model exactly is refused.
    """
    sd, scales, fp8 = split_weight_scales({k: v for k, v in sd.items() if k.startswith(prefix)}, prefix)
    model = new_transformer(transformer_config(sd, prefix))
    try:
        model.load_state_dict(convert_transformer(sd, prefix), strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(
            f"SD3 MMDiT: the tensors do not fit the model read from them: {exc}"
        ) from exc
    keep_linear_weights(model, compute)
    if fp8 is not None:
        # Scaled fp8: the scales take the same key conversion as their weights (fused qkv split by rows).
        rows = convert_transformer(scale_rows(sd, scales), prefix)
        apply_scaled_fp8(model, converted_scales(rows), fp8)
    _widen_buffers(model, compute)
    return model.eval().requires_grad_(False)


def _widen_buffers(model: torch.nn.Module, compute: torch.dtype) -> None:
    for module in model.modules():
        for name, buf in module.named_buffers(recurse=False):
            if buf.is_floating_point() and buf.dtype != compute:
                setattr(module, name, buf.to(compute))


def build_transformer_diffusers(
    state: Mapping[str, torch.Tensor], config: Mapping[str, Any], compute: torch.dtype
) -> torch.nn.Module:
    """SD3Transformer2DModel from a diffusers folder's config and tensors (already in diffusers' names).

    Weights are held as `build_transformer` holds them, so a folder and its single file run alike.
    """
    model = new_transformer({k: v for k, v in config.items() if not k.startswith("_")})
    try:
        model.load_state_dict(dict(state), strict=True, assign=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"SD3 MMDiT: the tensors do not fit the folder's config: {exc}") from exc
    keep_linear_weights(model, compute)
    _widen_buffers(model, compute)
    return model.eval().requires_grad_(False)


def vae_config(shapes: Mapping[str, Any], prefix: str = VAE_PREFIX) -> dict[str, Any]:
    """diffusers AutoencoderKL arguments of the SD3 VAE, widths and depth read from the LDM keys."""
    levels = re.compile(re.escape(prefix) + r"encoder\.down\.(\d+)\.")
    n_levels = len({m.group(1) for k in shapes if (m := levels.match(k))})
    resnets = re.compile(re.escape(prefix) + r"encoder\.down\.0\.block\.(\d+)\.")
    widths = [_shape(shapes, f"{prefix}encoder.down.{i}.block.0.conv2.weight")[0] for i in range(n_levels)]
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * n_levels,
        "up_block_types": ["UpDecoderBlock2D"] * n_levels,
        "block_out_channels": widths,
        "layers_per_block": len({m.group(1) for k in shapes if (m := resnets.match(k))}),
        "act_fn": "silu",
        "latent_channels": _shape(shapes, prefix + "decoder.conv_in.weight")[1],
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": LATENT_SCALE,
        "shift_factor": LATENT_SHIFT,
        "use_quant_conv": prefix + "quant_conv.weight" in shapes,
        "use_post_quant_conv": prefix + "post_quant_conv.weight" in shapes,
    }


def convert_vae(sd: Mapping[str, torch.Tensor], config: Mapping[str, Any], prefix: str = VAE_PREFIX) -> dict:
    """LDM VAE tensors -> diffusers AutoencoderKL names."""
    sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sfu.convert_ldm_vae_checkpoint(sub, dict(config))


def new_vae(config: Mapping[str, Any]) -> torch.nn.Module:
    """An AutoencoderKL on the meta device."""
    with torch.device("meta"):
        return AutoencoderKL.from_config(dict(config))


def pad_to_patches(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Latents whose sides are not a multiple of the patch size get wrapped-around rows/columns, as ComfyUI."""
    pad_h, pad_w = (-x.shape[-2]) % patch, (-x.shape[-1]) % patch
    if not (pad_h or pad_w):
        return x
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="circular")


def mmdit_forward(
    transformer: torch.nn.Module,
    x_in: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: torch.Tensor,
    pooled: torch.Tensor | None,
    device: torch.device,
    dtype: torch.dtype,
    skip_layers: tuple[int, ...] = (),
) -> torch.Tensor:
    """One MMDiT call on `device` in `dtype`; returns float32 velocity shaped like x_in.

    `timesteps` are sigma * 1000 (ModelSamplingSD3's multiplier); `skip_layers` are joint blocks that
    are passed over entirely (Skip Layer Guidance).
    """
    if pooled is None:
        raise ValueError("SD3 needs pooled text embeddings (CLIP-L + CLIP-G pooled, 2048 wide)")
    blocks = int(transformer.config.num_layers)  # type: ignore[union-attr,arg-type]
    missing = [i for i in skip_layers if i >= blocks]
    if missing:
        raise ValueError(f"cannot skip blocks {missing}: this model has {blocks} blocks (0 to {blocks - 1})")
    dev, dt = device, dtype
    height, width = x_in.shape[-2:]
    patch = int(transformer.config.patch_size)  # type: ignore[union-attr,arg-type]
    x = pad_to_patches(x_in.to(dev, dt), patch)
    out = transformer(
        x,
        embeds.to(dev, dt),
        pooled.to(dev, dt),
        timesteps.to(dev, torch.float32),
        return_dict=False,
        skip_layers=list(skip_layers) or None,
    )[0]
    return out[..., :height, :width].float()

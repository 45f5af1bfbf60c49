"""FLUX.1 diffusion models: detection from BFL single-file tensors, key conversion, per-layer upcast, forward.

The model class is diffusers' FluxTransformer2DModel, built on the meta device from the shipped config
(configs/flux-transformer.json) with its sizes read from the tensors: hidden size from `img_in`, heads of 128
channels, block counts from the keys, `guidance_in` present for dev and absent for schnell. BFL key
names are mapped to diffusers' here (fused qkv / linear1 split by rows, the final modulation's shift
and scale swapped), a fact-level mapping of the two published layouts.

Linear weights stay in their stored dtype (bf16, fp16, fp8) and are upcast to the compute dtype one
layer at a time; the small norm and embedding tensors are converted once.

FLUX.1 Fill takes 96 input channels (latent, masked-image latent, the mask packed 8x8 into 64 channels),
FLUX.1 Canny/Depth dev 32 (latent, control-image latent); both are told apart by `img_in`'s width. Kontext reference latents are extra image tokens appended after
the noisy latent's, with their own position ids (see `reference_positions`); their outputs are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import FluxTransformer2DModel

from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.flux_kontext import reference_positions
from nodes.diffusion.stored_weights import converted_scales, scale_rows, split_weight_scales

CONFIG_PATH = Path(__file__).parent / "configs" / "flux-transformer.json"
PREFIXES = ("model.diffusion_model.", "")
FAMILIES = ("flux-dev", "flux-schnell", "flux-fill", "flux-control")
LATENT_CHANNELS = 16
# img_in input features: 16 latent channels per 2x2 patch; Fill adds 16 image + 64 mask channels,
# Canny/Depth dev (and dev with a BFL control LoRA) 16 control-image channels.
PLAIN_FEATURES, FILL_FEATURES, CONTROL_FEATURES = 64, 384, 128
FILL_CHANNELS, CONTROL_CHANNELS = FILL_FEATURES // 4, CONTROL_FEATURES // 4
# The families whose input is wider than the latent, by img_in width.
WIDE_FAMILIES = {FILL_FEATURES: "flux-fill", CONTROL_FEATURES: "flux-control"}
INPUT_CHANNELS = {family: features // 4 for features, family in WIDE_FAMILIES.items()}
HEAD_DIM = 128
PATCH = 2
# What ComfyUI's FLUX model assumes when a conditioning carries no guidance value.
DEFAULT_GUIDANCE = 3.5
DETECT_KEYS = ("double_blocks.0.img_attn.norm.key_norm.scale", "img_in.weight")


def flux_prefix(keys: Sequence[str]) -> str | None:
    """The key prefix under which a file holds a BFL FLUX model, or None when it holds none."""
    names = set(keys)
    for prefix in PREFIXES:
        if all(prefix + k in names for k in DETECT_KEYS):
            return prefix
    return None


def flux_family(keys: Sequence[str], prefix: str, shapes: dict[str, list[int]] | None = None) -> str:
    """flux-fill (384 input features), flux-control (128: Canny/Depth dev), flux-dev (has the guidance
    embedder) or flux-schnell.

    Without `shapes` the input width is not checked (dev or schnell by the keys alone).
    """
    if shapes is not None:
        features = shapes[prefix + "img_in.weight"][1]
        if features in WIDE_FAMILIES:
            return WIDE_FAMILIES[features]
        if features != PLAIN_FEATURES:
            raise CheckpointFormatError(
                f"FLUX model with {features} input features (img_in); supported are {PLAIN_FEATURES} "
                f"(dev, schnell, Kontext), {CONTROL_FEATURES} (Canny/Depth dev) and {FILL_FEATURES} (Fill)"
            )
    return "flux-dev" if prefix + "guidance_in.in_layer.weight" in set(keys) else "flux-schnell"


def _count(keys: Sequence[str], stem: str) -> int:
    """Number of numbered blocks `stem.N.` among the keys."""
    found = {int(k[len(stem) :].split(".", 1)[0]) for k in keys if k.startswith(stem)}
    return max(found) + 1 if found else 0


def flux_config(shapes: dict[str, list[int]], prefix: str) -> dict[str, Any]:
    """The FluxTransformer2DModel config for a file's tensor shapes."""
    cfg = json.loads(CONFIG_PATH.read_text())
    keys = list(shapes)
    hidden, in_features = shapes[prefix + "img_in.weight"]
    cfg.update(
        in_channels=in_features,
        out_channels=shapes[prefix + "final_layer.linear.weight"][0],
        num_layers=_count(keys, prefix + "double_blocks."),
        num_single_layers=_count(keys, prefix + "single_blocks."),
        attention_head_dim=HEAD_DIM,
        num_attention_heads=hidden // HEAD_DIM,
        joint_attention_dim=shapes[prefix + "txt_in.weight"][1],
        pooled_projection_dim=shapes[prefix + "vector_in.in_layer.weight"][1],
        guidance_embeds=prefix + "guidance_in.in_layer.weight" in shapes,
    )
    if hidden % HEAD_DIM:
        raise CheckpointFormatError(
            f"FLUX hidden size {hidden} is not a multiple of {HEAD_DIM}-channel heads"
        )
    return cfg


_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}
_SINGLE = {
    "modulation.lin": "norm.linear",
    "linear2": "proj_out",
    "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight",
}
_DOUBLE_QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v")}
_DOUBLE_QKV["txt_attn.qkv"] = ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")


def _rename(name: str, table: dict[str, str]) -> str | None:
    """A module or parameter name through a table (exact parameter names, or module + .weight/.bias)."""
    if name in table:
        return table[name]
    module, _, leaf = name.rpartition(".")
    if leaf in ("weight", "bias") and module in table:
        return f"{table[module]}.{leaf}"
    return None


def bfl_to_diffusers(sd: dict[str, torch.Tensor], prefix: str, hidden: int) -> dict[str, torch.Tensor]:
    """BFL FLUX tensors (under `prefix`) renamed and split into FluxTransformer2DModel's layout."""
    out: dict[str, torch.Tensor] = {}
    for full, tensor in sd.items():
        if not full.startswith(prefix):
            continue
        key = full[len(prefix) :]
        if key.startswith("final_layer.adaLN_modulation.1."):
            # BFL's final modulation is (shift, scale); diffusers' AdaLayerNormContinuous reads (scale, shift).
            shift, scale = tensor.chunk(2, dim=0)
            out["norm_out.linear." + key.rsplit(".", 1)[1]] = torch.cat([scale, shift], dim=0)
        elif key.startswith("double_blocks."):
            _, index, rest = key.split(".", 2)
            _double(out, f"transformer_blocks.{index}.", rest, tensor)
        elif key.startswith("single_blocks."):
            _, index, rest = key.split(".", 2)
            _single(out, f"single_transformer_blocks.{index}.", rest, tensor, hidden)
        elif (name := _rename(key, _TOP)) is not None:
            out[name] = tensor
        else:
            raise CheckpointFormatError(f"unexpected FLUX tensor {full!r}")
    return out


def _double(out: dict[str, torch.Tensor], stem: str, rest: str, tensor: torch.Tensor) -> None:
    module, _, leaf = rest.rpartition(".")
    if module in _DOUBLE_QKV:
        for target, part in zip(_DOUBLE_QKV[module], tensor.chunk(3, dim=0), strict=True):
            out[f"{stem}{target}.{leaf}"] = part
        return
    name = _rename(rest, _DOUBLE)
    if name is None:
        raise CheckpointFormatError(f"unexpected FLUX double-block tensor {rest!r}")
    out[stem + name] = tensor


def _single(out: dict[str, torch.Tensor], stem: str, rest: str, tensor: torch.Tensor, hidden: int) -> None:
    module, _, leaf = rest.rpartition(".")
    if module == "linear1":
        mlp = tensor.shape[0] - 3 * hidden
        parts = torch.split(tensor, [hidden, hidden, hidden, mlp], dim=0)
        for target, part in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts, strict=True):
            out[f"{stem}{target}.{leaf}"] = part
        return
    name = _rename(rest, _SINGLE)
    if name is None:
        raise CheckpointFormatError(f"unexpected FLUX single-block tensor {rest!r}")
    out[stem + name] = tensor


class UpcastLinear(torch.nn.Linear):
    """A Linear whose weight stays in its stored dtype and is cast to the input's dtype per call.

    A scaled-fp8 layer also holds a `weight_scale` buffer: the widened weight is multiplied by it.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x @ W^T + b with W (and b) cast to x's dtype for this call only."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        weight = self.weight.to(x.dtype)
        scale = self._buffers.get("weight_scale")
        if scale is not None:
            weight = weight * scale.to(x.device, x.dtype)
        return F.linear(x, weight, bias)


def apply_scaled_fp8(model: torch.nn.Module, scales: dict[str, torch.Tensor], fp8: torch.dtype) -> None:
    """Make a model from a scaled-fp8 file hold its Linear layers as ComfyUI's scaled fp8 layers do.

    Every Linear weight and bias is held in the file's fp8 dtype (ComfyUI narrows a layer's bias, and
    an unscaled weight, to it too: a scale of 1), and each scaled Linear (by its weight's parameter
    name) gets the scale its widened weight is multiplied by.
    """
    for module in model.modules():
        if isinstance(module, UpcastLinear):
            for param in module.parameters(recurse=False):
                param.data = param.data.to(fp8)
    for name, scale in scales.items():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if not isinstance(module, UpcastLinear) or not name.endswith(".weight"):
            raise CheckpointFormatError(f"scaled fp8: {name!r} is not the weight of a linear layer")
        module.register_buffer("weight_scale", scale.float())


def keep_linear_weights(model: torch.nn.Module, compute: torch.dtype) -> None:
    """Make every Linear upcast per call and convert all other floating tensors to `compute`."""
    linear_params: set[int] = set()
    for module in model.modules():
        if type(module) is torch.nn.Linear:
            module.__class__ = UpcastLinear
            linear_params.update(id(p) for p in module.parameters(recurse=False))
    for param in model.parameters():
        if id(param) not in linear_params and param.is_floating_point() and param.dtype != compute:
            param.data = param.data.to(compute)


class FluxModel(torch.nn.Module):
    """FLUX as the samplers call it: latent [B, 16, h, w] in, velocity [B, 16, h, w] out."""

    def __init__(self, transformer: FluxTransformer2DModel, family: str, compute: torch.dtype):
        super().__init__()
        # diffusers' model classes are untyped for mypy (config, __call__): held as Any.
        self.transformer: Any = transformer
        self.family, self.compute = family, compute

    @property
    def in_channels(self) -> int:
        """Input channels per latent pixel, as img_in reads them (a BFL control LoRA widens it to 32)."""
        return int(self.transformer.x_embedder.weight.shape[1]) // (PATCH * PATCH)

    @property
    def has_guidance(self) -> bool:
        """Whether the model takes a distilled guidance value (FLUX dev)."""
        return bool(self.transformer.config.guidance_embeds)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        pooled: torch.Tensor | None,
        guidance: torch.Tensor | None,
        references: Sequence[torch.Tensor] = (),
        reference_method: str = "offset",
        text_prefix: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One model call; `timesteps` are sigmas in [0, 1], `guidance` one value per batch item.

        `references` are Kontext reference latents [B, 16, h_i, w_i] in model space (any sizes); they
        join the image tokens at the positions `reference_method` gives and are cut from the output.
        `text_prefix` [B, N, hidden] (USO's style tokens) goes before the text tokens once they are
        embedded, with position ids of zero like theirs.
        """
        batch, _, height, width = x.shape
        dt = self.compute
        tokens, img_ids, (h_len, w_len) = _patchify(x.to(dt), (0, 0, 0))
        image_tokens = tokens.shape[1]
        if references:
            places = reference_positions(
                [tuple(r.shape[-2:]) for r in references], h_len, w_len, reference_method
            )
            parts, ids = [tokens], [img_ids]
            for ref, place in zip(references, places, strict=True):
                ref_tokens, ref_ids, _ = _patchify(ref.to(x.device, dt), place)
                parts.append(ref_tokens)
                ids.append(ref_ids)
            tokens, img_ids = torch.cat(parts, dim=1), torch.cat(ids, dim=0)
        extra_text = 0 if text_prefix is None else text_prefix.shape[1]
        txt_ids = torch.zeros((context.shape[1] + extra_text, 3), dtype=dt, device=x.device)
        if pooled is None:
            pooled = torch.zeros((batch, self.transformer.config.pooled_projection_dim), device=x.device)
        kwargs: dict[str, Any] = {}
        embedder, text_in = self.transformer.time_text_embed, self.transformer.context_embedder
        if text_prefix is not None:
            self.transformer.context_embedder = _Prefixed(text_in, text_prefix.to(x.device, dt))
        if self.has_guidance and guidance is not None:
            kwargs["guidance"] = guidance.to(x.device, dt)
        elif self.has_guidance:
            # FluxDisableGuidance: the guidance embedding is left out of the model's vector entirely.
            self.transformer.time_text_embed = _WithoutGuidance(embedder)
        try:
            out = self.transformer(
                hidden_states=tokens,
                encoder_hidden_states=context.to(x.device, dt),
                pooled_projections=pooled.to(x.device, dt),
                timestep=timesteps.to(x.device, dt),
                img_ids=img_ids,
                txt_ids=txt_ids,
                return_dict=False,
                **kwargs,
            )[0]
        finally:
            self.transformer.time_text_embed = embedder
            self.transformer.context_embedder = text_in
        channels = out.shape[-1] // (PATCH * PATCH)
        out = (
            out[:, :image_tokens]
            .reshape(batch, h_len, w_len, channels, PATCH, PATCH)
            .permute(0, 3, 1, 4, 2, 5)
        )
        out = out.reshape(batch, channels, h_len * PATCH, w_len * PATCH)
        return out[:, :, :height, :width].float()


def _patchify(
    x: torch.Tensor, place: tuple[int, int, int]
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
    """Tokens [B, h*w, C*4] of 2x2 patches, their position ids [h*w, 3] and the token grid (h, w).

    `place` is (index, row offset, column offset) in tokens: ids are (index, row, column).
    """
    batch, channels = x.shape[:2]
    padded = _pad_to_patch(x)
    h_len, w_len = padded.shape[2] // PATCH, padded.shape[3] // PATCH
    tokens = padded.reshape(batch, channels, h_len, PATCH, w_len, PATCH)
    tokens = tokens.permute(0, 2, 4, 1, 3, 5).reshape(batch, h_len * w_len, channels * PATCH * PATCH)
    index, h_off, w_off = place
    dt, dev = x.dtype, x.device
    ids = torch.zeros((h_len, w_len, 3), dtype=dt, device=dev)
    ids[:, :, 0] += index
    ids[:, :, 1] += torch.linspace(h_off, h_off + h_len - 1, steps=h_len, dtype=dt, device=dev).unsqueeze(1)
    ids[:, :, 2] += torch.linspace(w_off, w_off + w_len - 1, steps=w_len, dtype=dt, device=dev).unsqueeze(0)
    return tokens, ids.reshape(-1, 3), (h_len, w_len)


class _WithoutGuidance(torch.nn.Module):
    """A guidance model's time/text embedder called without guidance: timestep + pooled text only."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner: Any = inner

    def forward(self, timestep: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The time embedding plus the pooled-text embedding, added in the same order as with guidance."""
        proj = self.inner.time_proj(timestep)
        return self.inner.timestep_embedder(proj.to(dtype=pooled.dtype)) + self.inner.text_embedder(pooled)


class _Prefixed(torch.nn.Module):
    """The text input layer followed by fixed tokens put before its output (USO's post-input hook)."""

    def __init__(self, inner: torch.nn.Module, prefix: torch.Tensor):
        super().__init__()
        self.inner, self.prefix = inner, prefix

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        """[B, N + L, hidden]: the prefix, then the embedded text."""
        return torch.cat([self.prefix, self.inner(context)], dim=1)


def _pad_to_patch(x: torch.Tensor) -> torch.Tensor:
    """Pad height and width up to the patch size, wrapping around as ComfyUI does."""
    pad_h, pad_w = (-x.shape[2]) % PATCH, (-x.shape[3]) % PATCH
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="circular")
    return x


def guidance_vector(extras: Sequence[dict[str, Any]] | None, batch: int) -> torch.Tensor | None:
    """Per-item guidance from the conditioning extras (3.5 where unset); None if any item disabled it."""
    items = list(extras) if extras else [{}] * batch
    values = [e.get("guidance", DEFAULT_GUIDANCE) for e in items]
    if any(v is None for v in values):
        return None
    return torch.tensor(values, dtype=torch.float32)


def build_flux(sd: dict[str, torch.Tensor], prefix: str, family: str, compute: torch.dtype) -> FluxModel:
    """A FluxModel from BFL tensors (kept in their dtype for Linear layers; scaled fp8 scaled as widened)."""
    sd, scales, fp8 = split_weight_scales(sd, prefix)
    shapes = {k: list(v.shape) for k, v in sd.items()}
    cfg = flux_config(shapes, prefix)
    hidden = cfg["num_attention_heads"] * HEAD_DIM
    state = bfl_to_diffusers(sd, prefix, hidden)
    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config(cfg)
    result = transformer.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointFormatError(f"FLUX tensors do not fit the model: {result}")
    keep_linear_weights(transformer, compute)
    if fp8 is not None:
        scaled = {k: v for k, v in sd.items() if k in scales}
        rows = bfl_to_diffusers(scale_rows(scaled, scales), prefix, hidden)
        apply_scaled_fp8(transformer, converted_scales(rows), fp8)
    return FluxModel(transformer.eval().requires_grad_(False), family, compute)


def build_flux_diffusers(
    sd: dict[str, torch.Tensor], cfg: dict[str, Any], family: str, compute: torch.dtype
) -> FluxModel:
    """A FluxModel from a diffusers folder's tensors and config (already in diffusers' layout)."""
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    with torch.device("meta"):
        transformer = FluxTransformer2DModel.from_config(cfg)
    result = transformer.load_state_dict(sd, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointFormatError(f"FLUX tensors do not fit the model: {result}")
    keep_linear_weights(transformer, compute)
    return FluxModel(transformer.eval().requires_grad_(False), family, compute)

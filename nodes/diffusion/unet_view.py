"""A run-private view of a diffusers UNet whose attention and block hook points call a run's patches.

The view is a copy of the module tree that shares every parameter and buffer with the loaded UNet
(nothing is copied but the module objects), so the UNet in the model store is never changed. In the
copy, every attention gets a processor that knows its ComfyUI block address, and the modules that end
an input block, the middle block and the resnets that open an output block are wrapped so the patch
lists of `unet_patches` run there. Which functions run comes from the options of each call, so one
view serves a whole sampling run, extra guidance calls with different replacements included.

ComfyUI block numbers on diffusers' layout (L = resnets per down block): input 0 is conv_in; down
block l's pair j is input 1 + l*(L+1) + j and its downsampler input 1 + l*(L+1) + L; the middle block
is ("middle", 0); up block l's resnet j (with its attention, and the upsampler after the last) is
output l*(L+1) + j, up blocks holding L+1 resnets. The transformer index inside a block is the position in `transformer_blocks`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nodes.diffusion.unet_patches import AttnName, ModelOptions, PatchFn


class _CallState:
    """The options and per-call facts (cond_or_uncond, sigmas, shape) of the UNet call in progress."""

    def __init__(self) -> None:
        self.options: ModelOptions = ModelOptions()
        self.call: dict[str, Any] = {}

    def extra(self, block: tuple[str, int], **more: Any) -> dict[str, Any]:
        """The dict handed to patch functions (ComfyUI's extra_options / transformer_options)."""
        return {**self.call, "block": block, **more}


def multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Scaled dot-product attention over [B, L, heads*d] projections, result [B, L, heads*d]."""
    b, _, inner = q.shape
    d = inner // heads
    q, k, v = (t.view(b, -1, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=0.0, is_causal=False)
    return out.transpose(1, 2).reshape(b, -1, inner).to(q.dtype)


class _PatchedAttention:
    """Attention processor that runs the default one unless this call patches its block."""

    def __init__(self, inner: Any, state: _CallState, name: AttnName, block: tuple[str, int], index: int):
        self.inner, self.state, self.name, self.block, self.index = inner, state, name, block, index

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        options = self.state.options
        before, after = options.attn_patches(self.name)
        replace = options.find_replace(self.name, self.block, self.index)
        if not (before or after or replace):
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if attention_mask is not None:
            raise NotImplementedError("attention patches do not support attention masks")
        extra = self.state.extra(
            self.block,
            block_index=self.index,
            n_heads=attn.heads,
            dim_head=attn.to_q.out_features // attn.heads,
            attn_precision=None,
        )
        n, context, value = hidden_states, encoder_hidden_states, None
        if before:
            context = n if context is None else context
            value = context
            for p in before:
                n, context, value = p(n, context, value, extra)
        context = n if context is None else context
        value = context if value is None else value
        q, k, v = attn.to_q(n), attn.to_k(context), attn.to_v(value)
        out = replace(q, k, v, extra) if replace is not None else multihead_attention(q, k, v, attn.heads)
        out = attn.to_out[1](attn.to_out[0](out))
        for p in after:
            out = p(out, extra)
        return out


class _AfterBlock(nn.Module):
    """Runs a module, then a block patch list on its output (tensor, or the first item of a tuple)."""

    def __init__(self, inner: nn.Module, state: _CallState, patch: str, block: tuple[str, int]):
        super().__init__()
        self.inner, self.state, self.patch, self.block = inner, state, patch, block
        if hasattr(inner, "has_cross_attention"):
            # diffusers' UNet forward reads this flag to decide whether to pass the text embeddings.
            self.has_cross_attention = inner.has_cross_attention

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        fns: list[PatchFn] = self.state.options.patches.get(self.patch, [])
        if not fns:
            return out
        h = out[0] if isinstance(out, tuple) else out
        for p in fns:
            h = p(h, self.state.extra(self.block))
        return (h, *out[1:]) if isinstance(out, tuple) else h


class _BeforeOutputBlock(nn.Module):
    """Wraps an up-block resnet: splits its concatenated input back into (h, skip) for output_block_patch."""

    def __init__(self, inner: nn.Module, state: _CallState, h_channels: int, block: tuple[str, int]):
        super().__init__()
        self.inner, self.state, self.h_channels, self.block = inner, state, h_channels, block

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        fns: list[PatchFn] = self.state.options.patches.get("output_block_patch", [])
        if fns:
            h, hsp = hidden_states[:, : self.h_channels], hidden_states[:, self.h_channels :]
            for p in fns:
                h, hsp = p(h, hsp, self.state.extra(self.block))
            hidden_states = torch.cat([h, hsp], dim=1)
        return self.inner(hidden_states, *args, **kwargs)


def _check_attention(attn: Any) -> None:
    """Refuse attention variants the patched processor does not reproduce."""
    odd = [
        n for n in ("spatial_norm", "group_norm", "norm_q", "norm_k") if getattr(attn, n, None) is not None
    ]
    if odd or attn.norm_cross or attn.residual_connection or attn.rescale_output_factor != 1.0:
        raise NotImplementedError(f"attention patches do not support this attention layout ({odd})")


def _patch_transformers(holder: Any, state: _CallState, block: tuple[str, int]) -> None:
    """Give every attention of a Transformer2DModel a block-addressed patching processor."""
    for index, tb in enumerate(holder.transformer_blocks):
        for name in ("attn1", "attn2"):
            attn = getattr(tb, name, None)
            if attn is None:
                continue
            _check_attention(attn)
            attn.set_processor(_PatchedAttention(attn.processor, state, name, block, index))


class UnetView:
    """A UNet copy sharing the loaded module's tensors, with every hook point wired to the call's options."""

    def __init__(self, unet: nn.Module):
        memo = {id(t): t for t in (*unet.parameters(), *unet.buffers())}
        # Any: diffusers' UNet2DConditionModel attributes (blocks, config) are not typed on nn.Module.
        self.module: Any = copy.deepcopy(unet, memo)
        self.state = _CallState()
        self._wire()

    def _wire(self) -> None:
        m, st = self.module, self.state
        m.conv_in = _AfterBlock(m.conv_in, st, "input_block_patch", ("input", 0))
        per_level = len(m.down_blocks[0].resnets) + 1
        for level, down in enumerate(m.down_blocks):
            first = 1 + level * per_level
            attns = getattr(down, "attentions", None)
            for j in range(len(down.resnets)):
                if attns is not None:
                    _patch_transformers(attns[j], st, ("input", first + j))
                    attns[j] = _AfterBlock(attns[j], st, "input_block_patch", ("input", first + j))
                else:
                    down.resnets[j] = _AfterBlock(
                        down.resnets[j], st, "input_block_patch", ("input", first + j)
                    )
            if down.downsamplers is not None:
                block = ("input", first + len(down.resnets))
                down.downsamplers[0] = _AfterBlock(down.downsamplers[0], st, "input_block_patch", block)
        for holder in getattr(m.mid_block, "attentions", []):
            _patch_transformers(holder, st, ("middle", 0))
        m.mid_block = _AfterBlock(m.mid_block, st, "middle_block_patch", ("middle", 0))
        self._wire_up_blocks()

    def _wire_up_blocks(self) -> None:
        m, st = self.module, self.state
        rev = list(reversed(m.config.block_out_channels))
        for level, up in enumerate(m.up_blocks):
            per_level = len(up.resnets)
            attns = getattr(up, "attentions", None)
            for j in range(per_level):
                block = ("output", level * per_level + j)
                # The flowing part's channels, as diffusers builds the block (the rest is the skip).
                h_channels = (rev[level - 1] if level > 0 else rev[0]) if j == 0 else rev[level]
                up.resnets[j] = _BeforeOutputBlock(up.resnets[j], st, h_channels, block)
                if attns is not None:
                    _patch_transformers(attns[j], st, block)

    def __call__(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        transformer_options: Mapping[str, Any],
        **kwargs: Any,
    ) -> Any:
        """Run the UNet with this call's options (`model_options`) and facts (cond_or_uncond, sigmas)."""
        self.state.options = transformer_options["model_options"]
        self.state.call = {k: v for k, v in transformer_options.items() if k != "model_options"}
        self.state.call["original_shape"] = list(sample.shape)
        try:
            return self.module(sample, timestep, encoder_hidden_states=encoder_hidden_states, **kwargs)
        finally:
            self.state.options, self.state.call = ModelOptions(), {}

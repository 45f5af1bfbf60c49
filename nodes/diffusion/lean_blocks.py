"""Leaner forwards for the UNet's ResNet blocks and attentions: the same arithmetic with fewer memory passes.

diffusers' `ResnetBlock2D` ends with `(input + hidden) / output_scale_factor` and its SDPA attention
processor with `hidden / rescale_output_factor`; both factors are 1.0 in every SD1.x/SD2.x/SDXL UNet, so
each call makes a full extra pass over the activations to divide by one (55 passes per SD1.5 UNet call).
The ResNet block also writes a fresh tensor for every add and SiLU. On a CPU, where these elementwise
passes are memory-bound, that is a few percent of a float32 step.

`install` gives eligible blocks a forward that runs the same operations in the same order, skipping the
division by one and doing the adds and SiLUs in place on tensors the block itself just created. Division
by one and in-place arithmetic are exact, so outputs are bit-identical to diffusers'. Anything outside
the common configuration (other norms or scale factors, up/down-sampling ResNets, masks, spatial or
group norms in attention, autograd) keeps diffusers' code.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.resnet import ResnetBlock2D

_INSTALLED_ATTR = "_diffgraph_lean_block"


def _resnet_eligible(block: torch.nn.Module) -> bool:
    """A plain ResnetBlock2D: default time-embedding add, SiLU, no resampling, output factor 1."""
    return (
        type(block) is ResnetBlock2D
        and block.time_embedding_norm == "default"
        and block.upsample is None
        and block.downsample is None
        and block.output_scale_factor == 1.0
        and type(block.nonlinearity) is torch.nn.SiLU
    )


def _resnet_forward(
    self: ResnetBlock2D, input_tensor: torch.Tensor, temb: Any, *args: Any, **kwargs: Any
) -> Any:
    """ResnetBlock2D.forward without the division by one and with in-place adds and SiLUs."""
    in_place_step = temb is None or temb.shape[0] in (1, input_tensor.shape[0])
    if args or kwargs or torch.is_grad_enabled() or self.training or not in_place_step:
        return ResnetBlock2D.forward(self, input_tensor, temb, *args, **kwargs)
    hidden = F.silu(self.norm1(input_tensor), inplace=True)
    hidden = self.conv1(hidden)
    if self.time_emb_proj is not None and temb is not None:
        if not self.skip_time_act:
            temb = F.silu(temb)
        hidden.add_(self.time_emb_proj(temb)[:, :, None, None])
    hidden = F.silu(self.norm2(hidden), inplace=True)
    hidden = self.conv2(hidden)
    shortcut = input_tensor if self.conv_shortcut is None else self.conv_shortcut(input_tensor)
    # diffusers computes `input + hidden`; float addition is commutative, so the bits are the same.
    return hidden.add_(shortcut)


class LeanAttnProcessor(AttnProcessor2_0):
    """diffusers' SDPA attention for 3-d token inputs without the final division by one."""

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Same result as AttnProcessor2_0; calls outside the lean case are handed to it."""
        if (
            args
            or kwargs
            or attention_mask is not None
            or hidden_states.ndim != 3
            or (encoder_hidden_states is not None and attn.norm_cross)
            or torch.is_grad_enabled()
        ):
            return super().__call__(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )
        batch = hidden_states.shape[0]
        context = hidden_states if encoder_hidden_states is None else encoder_hidden_states
        query = attn.to_q(hidden_states)
        key = attn.to_k(context)
        value = attn.to_v(context)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim).to(query.dtype)
        return attn.to_out[1](attn.to_out[0](out))


def _attention_eligible(attn: torch.nn.Module) -> bool:
    """An Attention on diffusers' default SDPA processor with nothing the lean processor leaves out."""
    return (
        isinstance(attn, Attention)
        and type(attn.processor) is AttnProcessor2_0
        and attn.spatial_norm is None
        and attn.group_norm is None
        and attn.norm_q is None
        and attn.norm_k is None
        and not attn.residual_connection
        and attn.rescale_output_factor == 1.0
    )


def install(module: torch.nn.Module) -> int:
    """Give every eligible ResNet block and attention in `module` its lean forward; returns how many."""
    count = 0
    for child in module.modules():
        if child.__dict__.get(_INSTALLED_ATTR):
            continue
        if _resnet_eligible(child):
            child.forward = types.MethodType(_resnet_forward, child)  # type: ignore[method-assign]
        elif _attention_eligible(child):
            assert isinstance(child, Attention)
            # diffusers' stub names a fixed set of processor classes; a subclass of AttnProcessor2_0 works.
            child.set_processor(LeanAttnProcessor())  # type: ignore[arg-type]
        else:
            continue
        child.__dict__[_INSTALLED_ATTR] = True
        count += 1
    return count


def uninstall(module: torch.nn.Module) -> None:
    """Undo `install`: diffusers' own ResNet forward and SDPA processor again."""
    for child in module.modules():
        if not child.__dict__.pop(_INSTALLED_ATTR, False):
            continue
        if isinstance(child, Attention):
            if type(child.processor) is LeanAttnProcessor:
                child.set_processor(AttnProcessor2_0())
        else:
            del child.forward

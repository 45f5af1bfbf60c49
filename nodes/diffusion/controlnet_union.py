"""Union ControlNets (ControlNet++, diffusers layout) run the way ComfyUI runs them.

The weights load into diffusers' ControlNetUnionModel; its forward is not used, because ComfyUI's
differs: facts followed (comfy.cldm union path, reimplemented): the task one-hot (all zeros for
"auto") goes through a sinusoidal embedding and `control_add_embedding` into the time embedding; with
a task chosen, the hint's embedding is averaged to one token per image, the task's embedding added,
one residual attention block applied per image, and `spatial_ch_projs` of the result added to every
pixel of the hint embedding; without one the hint embedding is used as it is. The encoder, zero
convolutions and middle block then run as in a plain ControlNet.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from diffusers.models.controlnets.controlnet_union import ControlNetUnionModel

from nodes.diffusion.checkpoint_io import CheckpointFormatError

UNION_MARKER = "control_add_embedding.linear_1.bias"
HEADS = 8


def union_config(plain: dict[str, Any], state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """ControlNetUnionModel arguments: a plain ControlNet's config plus the union parts' sizes."""
    accepted = set(inspect.signature(ControlNetUnionModel.__init__).parameters) - {"self"}
    cfg = {k: v for k, v in plain.items() if k in accepted}
    tasks, width = state["task_embedding"].shape
    layers = {int(m.group(1)) for k in state if (m := re.match(r"transformer_layes\.(\d+)\.", k))}
    cfg.update(
        num_control_type=tasks,
        num_trans_channel=width,
        num_trans_head=HEADS,
        num_trans_layer=len(layers),
        num_proj_channel=state["spatial_ch_projs.weight"].shape[0],
        addition_time_embed_dim=state["control_add_embedding.linear_1.weight"].shape[1] // tasks,
    )
    return cfg


def build_union(state: dict[str, torch.Tensor], plain: dict[str, Any], dtype: torch.dtype, name: str) -> Any:
    """A ControlNetUnionModel holding a union file's tensors (diffusers names)."""
    cfg = union_config(plain, state)
    with torch.device("meta"):
        model: Any = ControlNetUnionModel.from_config(cfg)
    result = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointFormatError(
            f"{name}: the union ControlNet lacks {result.missing_keys[:3]} and has unknown {result.unexpected_keys[:3]}"
        )
    return model.eval().requires_grad_(False)


def _attention_block(layer: Any, tokens: torch.Tensor) -> torch.Tensor:
    """One residual attention block over each image's own tokens ([B, T, C], attention within T)."""
    h = layer.ln_1(tokens).transpose(0, 1)
    tokens = tokens + layer.attn(h, h, h, need_weights=False)[0].transpose(0, 1)
    return tokens + layer.mlp(layer.ln_2(tokens))


def run_union(
    module: Any,
    x_in: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: torch.Tensor,
    hint: torch.Tensor,
    added_cond: dict[str, torch.Tensor] | None,
    control_type: tuple[int, ...],
) -> tuple[list[torch.Tensor | None], torch.Tensor]:
    """One union ControlNet forward with ComfyUI's task handling: unscaled skip and middle residuals."""
    tasks = module.config.num_control_type
    if any(t >= tasks for t in control_type):
        raise ValueError(
            f"this union ControlNet knows {tasks} task types; type {max(control_type)} is beyond them"
        )
    dtype = next(module.parameters()).dtype
    x = x_in.to(dtype)
    t_emb = module.time_proj(timesteps.expand(x.shape[0])).to(dtype)
    emb = module.time_embedding(t_emb)
    one_hot = torch.zeros(tasks, device=x.device)
    one_hot[list(control_type)] = 1.0
    emb = emb + module.control_add_embedding(module.control_type_proj(one_hot).to(dtype).reshape(1, -1))
    if added_cond is not None:
        time_ids = module.add_time_proj(added_cond["time_ids"].flatten()).reshape(x.shape[0], -1)
        emb = emb + module.add_embedding(torch.cat([added_cond["text_embeds"], time_ids], dim=-1).to(dtype))
    cond = module.controlnet_cond_embedding(hint.to(dtype))
    if control_type:
        tokens = (cond.mean(dim=(2, 3)) + module.task_embedding[control_type[0]]).unsqueeze(1)
        for layer in module.transformer_layes:
            tokens = _attention_block(layer, tokens)
        cond = cond + module.spatial_ch_projs(tokens[:, 0])[..., None, None]
    sample = module.conv_in(x) + cond
    skips: tuple[torch.Tensor, ...] = (sample,)
    context = embeds.to(dtype)
    for block in module.down_blocks:
        if getattr(block, "has_cross_attention", False):
            sample, res = block(hidden_states=sample, temb=emb, encoder_hidden_states=context)
        else:
            sample, res = block(hidden_states=sample, temb=emb)
        skips += res
    sample = module.mid_block(sample, emb, encoder_hidden_states=context)
    down: list[torch.Tensor | None] = [
        conv(s) for conv, s in zip(module.controlnet_down_blocks, skips, strict=True)
    ]
    return down, module.controlnet_mid_block(sample)

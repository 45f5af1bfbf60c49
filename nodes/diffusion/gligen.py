"""GLIGEN text boxes: the position net and the gated self-attention layers added to a UNet's blocks.

A GLIGEN file (e.g. gligen_sd14_textbox_pruned) holds one gated self-attention "fuser" per UNet
transformer block (`input_blocks.N.1.transformer_blocks.0.fuser.*`, then middle and output blocks) and a
`position_net` that turns up to 30 (box, phrase embedding) pairs into grounding tokens. diffusers'
UNet2DConditionModel runs exactly this when its blocks carry a `fuser` and it has a `position_net`
(its "gated" attention type): after each block's self-attention, the fuser attends over the visual
and grounding tokens and adds the result through tanh gates. The key names of both parts are the
ones diffusers uses, so the file's tensors load as they are.

The gated UNet is a deep copy of the base UNet (never the shared module) with those layers added,
kept in the model store per (base model, GLIGEN file). Items of a batch without boxes run the base UNet.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers.models.attention import BasicTransformerBlock, GatedSelfAttentionDense
from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

from engine import UserFacingError
from nodes.diffusion.checkpoint_io import read_weights

MAX_OBJECTS = 30
_BLOCK = re.compile(r"(?:^|\.)(input_blocks|middle_block|output_blocks)\.(\d+)\.(.*)\.fuser\.(.+)$")
_ORDER = {"input_blocks": 0, "middle_block": 1, "output_blocks": 2}


class GligenError(UserFacingError):
    """A GLIGEN file or box set diffgraph cannot apply."""

    code = "unsupported_gligen"


@dataclass(frozen=True, eq=False)
class GligenBox:
    """One text box: the phrase's pooled text embedding [1, D] and its place in latent cells."""

    pooled: torch.Tensor
    height: int
    width: int
    y: int
    x: int


def split_gligen(sd: dict[str, torch.Tensor], where: str) -> tuple[list[dict[str, torch.Tensor]], dict]:
    """The file's fusers in UNet order (input, middle, output blocks) and its position-net tensors."""
    groups: dict[tuple[int, int, str], dict[str, torch.Tensor]] = {}
    position: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if m := _BLOCK.search(key):
            groups.setdefault((_ORDER[m.group(1)], int(m.group(2)), m.group(3)), {})[m.group(4)] = value
        elif "position_net." in key:
            position[key.split("position_net.", 1)[1]] = value
    if not groups or "null_positive_feature" not in position:
        raise GligenError(f"{where} is not a GLIGEN text-box file (expected fuser layers and a position_net)")
    return [groups[k] for k in sorted(groups)], position


def transformer_blocks(unet: torch.nn.Module) -> list[BasicTransformerBlock]:
    """The UNet's transformer blocks in the order the input runs through them (down, middle, up).

    Module registration order differs (diffusers registers the up blocks before the middle block).
    """
    parts = [
        unet.get_submodule("down_blocks"),
        unet.get_submodule("mid_block"),
        unet.get_submodule("up_blocks"),
    ]
    return [m for part in parts for m in part.modules() if isinstance(m, BasicTransformerBlock)]


def gated_unet(base: torch.nn.Module, sd: dict[str, torch.Tensor], where: str) -> torch.nn.Module:
    """A copy of `base` with the file's fusers in its transformer blocks and its position net."""
    fusers, position = split_gligen(sd, where)
    blocks = transformer_blocks(base)
    if len(blocks) != len(fusers):
        raise GligenError(
            f"{where} has {len(fusers)} gated layers but the model has {len(blocks)} transformer blocks; "
            "use a GLIGEN file made for this model"
        )
    param = next(iter(base.parameters()))
    unet = copy.deepcopy(base)
    for block, tensors in zip(transformer_blocks(unet), fusers, strict=True):
        query_dim, context_dim = tensors["linear.weight"].shape
        heads = block.attn1.heads
        fuser = GatedSelfAttentionDense(query_dim, context_dim, heads, query_dim // heads)
        fuser.load_state_dict(tensors)
        block.fuser = fuser.to(param.device, param.dtype)
    positive = position["null_positive_feature"].shape[0]
    out_dim = position["linears.4.weight"].shape[0]
    net = GLIGENTextBoundingboxProjection(positive, out_dim, feature_type="text-only")
    net.load_state_dict(position)
    unet.position_net = net.to(param.device, param.dtype)
    return unet.eval().requires_grad_(False)


def box_inputs(boxes: Sequence[GligenBox], height: int, width: int, batch: int) -> dict[str, torch.Tensor]:
    """The position net's inputs for a latent of height x width cells: boxes, masks, phrase embeddings."""
    if len(boxes) > MAX_OBJECTS:
        raise GligenError(f"GLIGEN takes at most {MAX_OBJECTS} text boxes, got {len(boxes)}")
    dim = boxes[0].pooled.shape[-1]
    corners = torch.zeros(MAX_OBJECTS, 4)
    masks = torch.zeros(MAX_OBJECTS)
    phrases = torch.zeros(MAX_OBJECTS, dim)
    for i, b in enumerate(boxes):
        corners[i] = torch.tensor(
            [b.x / width, b.y / height, (b.x + b.width) / width, (b.y + b.height) / height]
        )
        masks[i] = 1.0
        phrases[i] = b.pooled.reshape(-1).float().cpu()
    return {
        "boxes": corners.expand(batch, -1, -1),
        "masks": masks.expand(batch, -1),
        "positive_embeddings": phrases.expand(batch, -1, -1),
    }


def gligen_groups(extras: Sequence[dict[str, Any]] | None, batch: int) -> list[tuple[list[int], Any]] | None:
    """Batch rows grouped by their GLIGEN boxes (None when no row has any); rows without boxes share a group."""
    if not extras or not any(e.get("gligen") for e in extras):
        return None
    if len(extras) != batch:
        raise ValueError(f"extras has {len(extras)} entries for a batch of {batch}")
    groups: dict[Any, tuple[list[int], Any]] = {}
    for i, e in enumerate(extras):
        boxes = e.get("gligen")
        key = None if not boxes else (boxes[0], tuple(id(b) for b in boxes[1]))
        groups.setdefault(key, ([], boxes or None))[0].append(i)
    return list(groups.values())


def take_rows(value: Any, rows: list[int]) -> Any:
    """The given batch rows of every tensor in nested tuples, lists and dicts (None stays None)."""
    if isinstance(value, torch.Tensor):
        return value[rows]
    if isinstance(value, dict):
        return {k: take_rows(v, rows) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(take_rows(v, rows) for v in value)
    return value


def run_groups(
    store: Any,
    base_key: tuple[Any, ...],
    unet: torch.nn.Module,
    call: Callable[[Any, tuple[torch.Tensor, ...], dict[str, Any]], torch.Tensor],
    groups: list[tuple[list[int], Any]],
    args: tuple[torch.Tensor, ...],
    kwargs: dict[str, Any],
) -> torch.Tensor:
    """One UNet call per group of rows: boxed rows through the gated copy (kept in the store), the rest plain."""
    x = args[0]
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    for rows, boxes in groups:
        sub_args, sub_kwargs = take_rows(args, rows), take_rows(kwargs, rows)
        model = unet
        if boxes is not None:
            path, items = boxes
            name = Path(path).name
            model = store.get(
                (*base_key, "gligen", path), lambda p=path, n=name: gated_unet(unet, read_weights(Path(p)), n)
            )
            inputs = box_inputs(items, x.shape[2], x.shape[3], len(rows))
            sub_kwargs["cross_attention_kwargs"] = {
                "gligen": {k: v.to(x.device, x.dtype) for k, v in inputs.items()}
            }
        out[rows] = call(model, sub_args, sub_kwargs).float()
    return out

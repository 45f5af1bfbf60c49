"""Value shapes at the ComfyUI boundary: diffgraph's typed edge values to ComfyUI's and back.

IMAGE is a float tensor [B,H,W,C] on both sides, MASK [B,H,W]; LATENT is a dict there
({"samples", "batch_index", "noise_mask"}) and a Latent here; CONDITIONING a list of
[embeds, {"pooled_output", ...}] there and a Conditioning here. Primitives pass unchanged, and model
handles (MODEL, CLIP, VAE...) pass through opaquely in both directions.
"""

from __future__ import annotations

from typing import Any

import torch

from engine import ExecutionBlocker
from nodes.types import CondEntry, Conditioning, Image, Latent, Mask


def to_comfy(value: Any) -> Any:
    """A diffgraph value as a ComfyUI node expects it."""
    if isinstance(value, Image):
        return value.pixels
    if isinstance(value, Mask):
        return value.mask
    if isinstance(value, Latent):
        latent: dict[str, Any] = {"samples": value.samples}
        if value.batch_index is not None:
            latent["batch_index"] = list(value.batch_index)
        if value.noise_mask is not None:
            latent["noise_mask"] = value.noise_mask
        return latent
    if isinstance(value, Conditioning):
        items = []
        for entry in value.entries:
            options = dict(entry.extras)
            if entry.pooled is not None:
                options["pooled_output"] = entry.pooled
            items.append([entry.embeds, options])
        return items
    return value


def guess_type(value: Any) -> str:
    """The type of a wildcard ("*") output, read from its shape, so typed nodes downstream can take it."""
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        if value.ndim == 4 and value.shape[-1] in (3, 4):
            return "IMAGE"
        if value.ndim == 3:
            return "MASK"
    if isinstance(value, dict) and isinstance(value.get("samples"), torch.Tensor):
        return "LATENT"
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], dict) for item in value
        )
    ):
        return "CONDITIONING"
    return "*"


def from_comfy(value: Any, io_type: str) -> Any:
    """A ComfyUI node's output as the diffgraph value its declared type names (others unchanged).

    Wildcard outputs are typed by their shape; values of other types pass unchanged.
    """
    if isinstance(value, ExecutionBlocker):
        return value
    if io_type == "*":
        io_type = guess_type(value)
    if io_type == "IMAGE" and isinstance(value, torch.Tensor):
        return Image(pixels=value)
    if io_type == "MASK" and isinstance(value, torch.Tensor):
        return Mask(mask=value)
    if io_type == "LATENT" and isinstance(value, dict) and "samples" in value:
        index = value.get("batch_index")
        return Latent(
            samples=value["samples"],
            batch_index=tuple(index) if index is not None else None,
            noise_mask=value.get("noise_mask"),
        )
    if io_type == "CONDITIONING" and isinstance(value, list):
        entries = []
        for embeds, options in value:
            options = dict(options)
            pooled = options.pop("pooled_output", None)
            entries.append(CondEntry(embeds=embeds, pooled=pooled, extras=options))
        return Conditioning(entries=tuple(entries))
    return value

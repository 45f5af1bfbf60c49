"""ComfyUI's `node_helpers` for packs: conditioning edits and image-file helpers."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image, ImageFile, UnidentifiedImageError


def conditioning_set_values(
    conditioning: list[Any], values: dict[str, Any] | None = None, append: bool = False
) -> list[Any]:
    """A copy of a CONDITIONING list with values set (or appended to lists) in every entry's dict."""
    result = []
    for embeds, options in conditioning:
        options = dict(options)
        for key, value in (values or {}).items():
            options[key] = options.get(key, []) + value if append and key in options else value
        result.append([embeds, options])
    return result


def pillow(fn: Callable[..., Any], arg: Any) -> Any:
    """Call a PIL function, retrying with truncated-file loading on damaged images."""
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher() -> Any:
    """The hash used for file fingerprints."""
    return hashlib.sha256()


def string_to_torch_dtype(name: str) -> torch.dtype | None:
    """ "fp32"/"fp16"/"bf16" to a torch dtype."""
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(name)


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two [B,H,W,C] images agree on channels (add an opaque alpha, or drop it)."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., : destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        pad = torch.ones_like(source[..., :1])
        source = torch.cat(
            [source, pad.repeat_interleave(destination.shape[-1] - source.shape[-1], dim=-1)], dim=-1
        )
    return destination, source


__all__ = ["Image", "conditioning_set_values", "hasher", "image_alpha_fix", "pillow", "string_to_torch_dtype"]

"""FLUX Kontext reference latents: where their tokens sit and how a model call's batch gathers them.

ReferenceLatent stores raw VAE latents on the conditioning (`REFERENCE_LATENTS`); FluxModel patchifies
them like the noisy latent and appends their tokens with the position ids computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# Keys of a conditioning entry's extras: the raw VAE latents of Kontext reference images (a tuple, in
# the order ReferenceLatent added them) and how their positions are laid out (REFERENCE_METHODS).
REFERENCE_LATENTS = "reference_latents"
REFERENCE_METHOD = "reference_latents_method"
REFERENCE_METHODS = ("offset", "index", "uxo")
# FLUX's 2x2 patches: latent-pixel offsets become token offsets.
PATCH = 2


def reference_positions(
    sizes: Sequence[tuple[int, ...]], h_len: int, w_len: int, method: str
) -> list[tuple[int, int, int]]:
    """(index, row offset, column offset) in tokens of each reference latent of (height, width) `sizes`.

    The facts of ComfyUI 0.3.64's FLUX model: "offset" (Kontext's default) gives every reference index 1
    and places each one below or beside the ones before it, whichever keeps the covered area squarer;
    "index" gives the n-th reference index n at offset 0; "uxo" keeps index 0 and moves each reference
    diagonally past the image and the references before it. Offsets are in latent pixels, rounded to
    tokens.
    """
    if method not in REFERENCE_METHODS:
        raise ValueError(f"unknown reference latents method {method!r}; one of {REFERENCE_METHODS}")
    out = []
    covered_h = covered_w = 0
    for n, (ref_h, ref_w) in enumerate(sizes, start=1):
        if method == "index":
            index, h_off, w_off = n, 0, 0
        elif method == "uxo":
            index, h_off, w_off = 0, h_len * PATCH + covered_h, w_len * PATCH + covered_w
            covered_h, covered_w = covered_h + ref_h, covered_w + ref_w
        else:
            index, h_off, w_off = 1, 0, 0
            if ref_h + covered_h > ref_w + covered_w:
                w_off = covered_w
            else:
                h_off = covered_h
            covered_h, covered_w = max(covered_h, ref_h + h_off), max(covered_w, ref_w + w_off)
        out.append((index, (h_off + PATCH // 2) // PATCH, (w_off + PATCH // 2) // PATCH))
    return out


def reference_key(extras: dict[str, Any]) -> tuple[Any, ...]:
    """What must agree for two conditioning items to share a model call: reference shapes and method."""
    refs = extras.get(REFERENCE_LATENTS, ())
    return tuple(tuple(r.shape[1:]) for r in refs), extras.get(REFERENCE_METHOD, "offset")


def reference_batch(extras: Sequence[dict[str, Any]] | None, batch: int) -> tuple[list[torch.Tensor], str]:
    """Each reference latent gathered over a call's batch items (raw VAE space), and the layout method.

    An item takes item p of its reference batch (repeated as needed), p counting the items in a row that
    carry the same references, as ComfyUI repeats a conditioning's tensors to the batch size.
    """
    items = list(extras) if extras else [{}] * batch
    keys = {reference_key(e) for e in items}
    if len(keys) != 1:
        raise ValueError("FLUX items with different reference latents cannot share one model call")
    per_ref: list[list[torch.Tensor]] = []
    previous: Any = None
    position = 0
    for e in items:
        refs = e.get(REFERENCE_LATENTS, ())
        position = position + 1 if refs is previous else 0
        previous = refs
        for k, ref in enumerate(refs):
            if len(per_ref) <= k:
                per_ref.append([])
            per_ref[k].append(ref[position % ref.shape[0]])
    method = items[0].get(REFERENCE_METHOD, "offset") if items else "offset"
    return [torch.stack(parts) for parts in per_ref], method

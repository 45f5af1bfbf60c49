"""RebatchLatents / RebatchImages: regroup a list of batches into batches of a chosen size.

Both take their inputs as whole lists (ComfyUI's INPUT_IS_LIST) and return a list, so the nodes after
them run once per new batch.
"""

from __future__ import annotations

import torch

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext
from nodes.types import Image, Latent

BATCH_TIP = "How many items each new batch holds (the last one may hold fewer)."
Parts = tuple[torch.Tensor, torch.Tensor, list[int]]


def _latent_parts(latent: Latent, offset: int) -> Parts:
    """(samples, per-item mask, batch indices) of one input latent; a missing mask is all ones."""
    samples = latent.samples
    b, _, h, w = samples.shape
    # ComfyUI pads unmasked latents with a pixel-resolution mask of ones.
    mask = latent.noise_mask if latent.noise_mask is not None else torch.ones((b, 1, h * 8, w * 8))
    if mask.shape[0] < b:
        mask = mask.repeat((b - 1) // mask.shape[0] + 1, 1, 1, 1)[:b]
    indices = list(latent.batch_index) if latent.batch_index is not None else list(range(offset, offset + b))
    return samples, mask, indices


def _cut(parts: Parts, part: slice) -> Latent:
    samples, mask, indices = parts[0][part], parts[1][part], parts[2][part]
    # A mask that keeps everything is no mask: drop it so the sampler denoises freely.
    noise_mask = None if float(mask.mean()) == 1.0 else mask
    return Latent(samples=samples, batch_index=tuple(indices), noise_mask=noise_mask)


def rebatch_latents(latents: list[Latent], batch_size: int) -> list[Latent]:
    """Join same-size latents and cut them into batch_size pieces; a size change closes the batch."""
    out: list[Latent] = []
    current: Parts | None = None
    processed = 0
    for latent in latents:
        nxt = _latent_parts(latent, processed)
        processed += len(nxt[2])
        if current is None:
            current = nxt
        elif nxt[0].shape[-2:] != current[0].shape[-2:]:
            out.append(_cut(current, slice(0, batch_size)))
            current = nxt
        else:
            current = (torch.cat((current[0], nxt[0])), torch.cat((current[1], nxt[1])), current[2] + nxt[2])
        if current[0].shape[0] > batch_size:
            count = current[0].shape[0] // batch_size
            out.extend(_cut(current, slice(i * batch_size, (i + 1) * batch_size)) for i in range(count))
            rest = count * batch_size
            current = (
                None if rest >= len(current[2]) else (current[0][rest:], current[1][rest:], current[2][rest:])
            )
    if current is not None:
        out.append(_cut(current, slice(0, batch_size)))
    return out


class RebatchLatents(Node):
    """Regroups a list of latent batches into batches of batch_size."""

    class_type = "RebatchLatents"
    display_name = "Rebatch Latents"
    category = "latent/batch"
    description = "Splits and joins latent batches so each holds batch_size items; sizes never mix."
    input_is_list = True

    class Inputs(NodeInputs):
        latents: list[Latent] = Input(description="The latent batches to regroup.")
        batch_size: list[int] = Input(1, ge=1, le=4096, description=BATCH_TIP)

    class Outputs(NodeOutputs):
        LATENT: list[Latent] = Output(
            name="LATENT", description="The new batches, one list item each.", is_list=True
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """The regrouped batches (the first batch_size given is used)."""
        return self.Outputs(LATENT=rebatch_latents(inputs.latents, inputs.batch_size[0]))


def rebatch_images(images: list[Image], batch_size: int) -> list[Image]:
    """Every image in order, cut into batch_size pieces (sizes must agree within a piece)."""
    singles = [image.pixels[i : i + 1] for image in images for i in range(image.pixels.shape[0])]
    return [Image(pixels=torch.cat(singles[i : i + batch_size])) for i in range(0, len(singles), batch_size)]


class RebatchImages(Node):
    """Regroups a list of image batches into batches of batch_size."""

    class_type = "RebatchImages"
    display_name = "Rebatch Images"
    category = "image/batch"
    description = "Splits and joins image batches so each holds batch_size images."
    input_is_list = True

    class Inputs(NodeInputs):
        images: list[Image] = Input(description="The image batches to regroup.")
        batch_size: list[int] = Input(1, ge=1, le=4096, description=BATCH_TIP)

    class Outputs(NodeOutputs):
        IMAGE: list[Image] = Output(
            name="IMAGE", description="The new batches, one list item each.", is_list=True
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """The regrouped image batches."""
        return self.Outputs(IMAGE=rebatch_images(inputs.images, inputs.batch_size[0]))


NODES = [RebatchLatents, RebatchImages]

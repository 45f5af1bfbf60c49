"""Value shapes at the ComfyUI boundary, and V1 class details the adapter must read as ComfyUI does."""

from __future__ import annotations

import torch

from engine import ExecutionBlocker
from nodes.comfy_compat.v1 import adapt_v1
from nodes.comfy_compat.values import from_comfy, to_comfy
from nodes.types import Conditioning, Image, Latent, Mask


def test_values_round_trip_through_comfyui_shapes():
    image = Image(pixels=torch.rand(1, 4, 4, 3))
    latent = Latent(samples=torch.rand(1, 4, 2, 2), batch_index=(3,), noise_mask=torch.ones(1, 1, 2, 2))
    assert from_comfy(to_comfy(image), "IMAGE").pixels is image.pixels
    back = from_comfy(to_comfy(latent), "LATENT")
    assert back.batch_index == (3,) and back.noise_mask is latent.noise_mask
    cond = from_comfy(
        [[torch.zeros(1, 77, 8), {"pooled_output": torch.ones(1, 8), "width": 64}]], "CONDITIONING"
    )
    assert isinstance(cond, Conditioning) and cond.entries[0].extras == {"width": 64}
    assert to_comfy(cond)[0][1]["pooled_output"].shape == (1, 8)
    handle = object()
    assert from_comfy(handle, "MODEL") is handle and to_comfy(handle) is handle


def test_wildcard_outputs_are_typed_by_their_shape():
    assert isinstance(from_comfy(torch.rand(2, 8, 8, 3), "*"), Image)
    assert isinstance(from_comfy(torch.rand(2, 8, 8), "*"), Mask)
    assert isinstance(from_comfy({"samples": torch.rand(1, 4, 2, 2)}, "*"), Latent)
    assert from_comfy("text", "*") == "text"
    blocker = ExecutionBlocker("x")
    assert from_comfy(blocker, "IMAGE") is blocker


class Opener:
    """A V1 class whose "hidden" entry is an input an expansion sets (ComfyUI's loop pattern)."""

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802 - the protocol's name
        return {"required": {"n": ("INT", {})}, "hidden": {"start": ("*",), "node": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "go"

    def go(self, n, node, start=None):
        return (n if start is None else start,)


def test_unusual_hidden_entries_are_inputs_and_known_ones_are_hidden_values():
    adapter = adapt_v1("Opener", Opener, None, "custom_nodes.test")
    spec = adapter.declared_spec()
    assert "start" in spec.input_names and adapter.hidden == {"node": "UNIQUE_ID"}
    assert spec.signs_node_id  # reads its UNIQUE_ID: its id joins the cache key

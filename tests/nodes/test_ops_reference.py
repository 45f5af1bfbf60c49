"""Latent, image and mask nodes against ComfyUI's own outputs on the same seeded inputs.

The fixtures in data/ops_reference were made by running ComfyUI 0.3.64's node classes on CPU
(data/ops_reference/make_reference.py says how); this test needs nothing from ComfyUI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from engine import Registry
from nodes.pack import register
from nodes.types import Image, Latent, Mask

DATA = Path(__file__).parent / "data" / "ops_reference"
CASES = json.loads((DATA / "cases.json").read_text())["cases"]
# Ops that only move, copy or threshold values must match bit for bit.
EXACT_NODES = frozenset(
    {
        "LatentFromBatch",
        "RepeatLatentBatch",
        "LatentBatchSeedBehavior",
        "LatentCrop",
        "LatentFlip",
        "LatentRotate",
        "SetLatentNoiseMask",
        "LatentBatch",
        "ImageInvert",
        "ImageFromBatch",
        "RepeatImageBatch",
        "ImageCrop",
        "ImageFlip",
        "ImageScaleToMaxDimension",
        "ImageRotate",
        "LatentConcat",
        "LatentCut",
        "ImageQuantize",
        "EmptyImage",
        "ImageToMask",
        "MaskToImage",
        "ImageColorToMask",
        "SolidMask",
        "InvertMask",
        "CropMask",
        "GrowMask",
        "ThresholdMask",
    }
)


@pytest.fixture(scope="module")
def tensors() -> dict[str, torch.Tensor]:
    """Inputs and ComfyUI's outputs."""
    return load_file(str(DATA / "reference.safetensors"))


@pytest.fixture(scope="module")
def registry() -> Registry:
    """The builtin node pack."""
    reg = Registry()
    register(reg)
    return reg


def our_value(spec: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """A case input as a diffgraph edge value."""
    if not isinstance(spec, dict):
        return spec
    if "latent" in spec:
        indices = spec.get("batch_index")
        mask = tensors[f"in.{spec['noise_mask']}"] if "noise_mask" in spec else None
        return Latent(
            samples=tensors[f"in.{spec['latent']}"].clone(),
            batch_index=tuple(indices) if indices is not None else None,
            noise_mask=mask,
        )
    if "image" in spec:
        return Image(pixels=tensors[f"in.{spec['image']}"].clone())
    return Mask(mask=tensors[f"in.{spec['mask']}"].clone())


def assert_close(name: str, ours: torch.Tensor, theirs: torch.Tensor, exact: bool) -> None:
    """Same shape; equal, or within 1e-6."""
    assert tuple(ours.shape) == tuple(theirs.shape), (
        f"{name}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    )
    if exact:
        assert torch.equal(ours.float(), theirs.float()), f"{name}: values differ"
    else:
        diff = (ours.float() - theirs.float()).abs().max().item() if ours.numel() else 0.0
        assert diff <= 1e-6, f"{name}: max abs diff {diff}"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_op_matches_comfyui(
    case: dict[str, Any], tensors: dict[str, torch.Tensor], registry: Registry
) -> None:
    """Each node's outputs equal ComfyUI's on the same inputs (1e-6; exact for moving/integer ops)."""
    node_cls = registry.get(case["node"])
    assert node_cls is not None, f"{case['node']} is not registered"
    inputs = node_cls.Inputs(**{k: our_value(v, tensors) for k, v in case["inputs"].items()})
    outputs = node_cls().run(None, inputs)  # type: ignore[arg-type]
    exact = case["node"] in EXACT_NODES
    for slot, (field, extra) in enumerate(zip(type(outputs).model_fields, case["outputs"], strict=True)):
        value = getattr(outputs, field)
        key = f"out.{case['name']}.{slot}"
        if isinstance(value, Latent):
            assert_close(key, value.samples, tensors[f"{key}.samples"], exact)
            expected_mask = tensors.get(f"{key}.noise_mask")
            assert (value.noise_mask is None) == (expected_mask is None), f"{key}: noise_mask presence"
            if expected_mask is not None and value.noise_mask is not None:
                assert_close(f"{key}.noise_mask", value.noise_mask, expected_mask, True)
            expected_index = extra["batch_index"]
            got_index = list(value.batch_index) if value.batch_index is not None else None
            assert got_index == expected_index, f"{key}: batch_index {got_index} != {expected_index}"
        elif isinstance(value, Image):
            assert_close(key, value.pixels, tensors[key], exact)
        elif isinstance(value, Mask):
            assert_close(key, value.mask, tensors[key], exact)
        else:
            assert value == extra["value"], f"{key}: {value!r} != {extra['value']!r}"


def test_image_scale_to_max_dimension_lists_comfyuis_methods_once(registry: Registry) -> None:
    """ComfyUI 0.3.64 lists "bilinear" twice (area, lanczos, bilinear, nearest-exact, bilinear, bicubic);
    a client sees the same methods in the same order, each once, and the same size bounds."""
    from engine import object_info

    info = object_info(registry.get("ImageScaleToMaxDimension"))  # type: ignore[arg-type]
    required = info["input"]["required"]
    assert info["input_order"]["required"] == ["image", "upscale_method", "largest_size"]
    assert required["upscale_method"][0] == ["area", "lanczos", "bilinear", "nearest-exact", "bicubic"]
    size = required["largest_size"][1]
    assert (size["default"], size["min"], size["max"], size["step"]) == (512, 0, 16384, 1)
    assert (info["category"], info["output"]) == ("image/upscaling", ["IMAGE"])

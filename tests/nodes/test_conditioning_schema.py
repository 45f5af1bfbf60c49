"""/object_info entries of the conditioning and inpainting nodes against ComfyUI 0.3.64's facts.

Facts (read from ComfyUI's nodes.py): input names in order with type, default and bounds; output types
and names; category. Tooltips are ours and not compared.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import ModelPaths
from nodes.pack import build_registry

C, F, N, M = "CONDITIONING", "FLOAT", "INT", "MASK"
STRENGTH = (F, 1.0, 0.0, 10.0, 0.01)
PX = 16384
FACTS: dict[str, tuple[str, list[tuple], list[str], list[str]]] = {
    "ConditioningCombine": ("conditioning", [("conditioning_1", C), ("conditioning_2", C)], [C], [C]),
    "ConditioningAverage": (
        "conditioning",
        [
            ("conditioning_to", C),
            ("conditioning_from", C),
            ("conditioning_to_strength", F, 1.0, 0.0, 1.0, 0.01),
        ],
        [C],
        [C],
    ),
    "ConditioningConcat": ("conditioning", [("conditioning_to", C), ("conditioning_from", C)], [C], [C]),
    "ConditioningSetArea": (
        "conditioning",
        [
            ("conditioning", C),
            ("width", N, 64, 64, PX, 8),
            ("height", N, 64, 64, PX, 8),
            ("x", N, 0, 0, PX, 8),
            ("y", N, 0, 0, PX, 8),
            ("strength", *STRENGTH),
        ],
        [C],
        [C],
    ),
    "ConditioningSetAreaPercentage": (
        "conditioning",
        [
            ("conditioning", C),
            ("width", F, 1.0, 0.0, 1.0, 0.01),
            ("height", F, 1.0, 0.0, 1.0, 0.01),
            ("x", F, 0.0, 0.0, 1.0, 0.01),
            ("y", F, 0.0, 0.0, 1.0, 0.01),
            ("strength", *STRENGTH),
        ],
        [C],
        [C],
    ),
    "ConditioningSetAreaStrength": ("conditioning", [("conditioning", C), ("strength", *STRENGTH)], [C], [C]),
    "ConditioningSetMask": (
        "conditioning",
        [
            ("conditioning", C),
            ("mask", M),
            ("strength", *STRENGTH),
            ("set_cond_area", ["default", "mask bounds"]),
        ],
        [C],
        [C],
    ),
    "ConditioningZeroOut": ("advanced/conditioning", [("conditioning", C)], [C], [C]),
    "ConditioningSetTimestepRange": (
        "advanced/conditioning",
        [("conditioning", C), ("start", F, 0.0, 0.0, 1.0, 0.001), ("end", F, 1.0, 0.0, 1.0, 0.001)],
        [C],
        [C],
    ),
    "VAEEncodeForInpaint": (
        "latent/inpaint",
        [("pixels", "IMAGE"), ("vae", "VAE"), ("mask", M), ("grow_mask_by", N, 6, 0, 64, 1)],
        ["LATENT"],
        ["LATENT"],
    ),
    "InpaintModelConditioning": (
        "conditioning/inpaint",
        [
            ("positive", C),
            ("negative", C),
            ("vae", "VAE"),
            ("pixels", "IMAGE"),
            ("mask", M),
            ("noise_mask", "BOOLEAN", True),
        ],
        [C, C, "LATENT"],
        ["positive", "negative", "latent"],
    ),
}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("schema")
    return build_registry(ModelPaths(root), Path(root))


@pytest.mark.parametrize("class_type", sorted(FACTS))
def test_conditioning_node_object_info_matches_comfyui(registry, class_type):
    category, inputs, output_types, output_names = FACTS[class_type]
    info = registry.node_info(class_type)
    assert info["category"] == category
    assert info["input_order"] == {"required": [spec[0] for spec in inputs]}
    for name, kind, *numbers in inputs:
        entry = info["input"]["required"][name]
        assert entry[0] == kind, name
        options = entry[1]
        if numbers:
            got = [options.get(k) for k in ("default", "min", "max", "step")][: len(numbers)]
            assert got == numbers, name
    assert info["output"] == output_types and info["output_name"] == output_names

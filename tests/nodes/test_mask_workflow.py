"""The MASK type end to end: loaded from files, transformed, composited, turned into images and saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from diffgraph.api import Session


@pytest.fixture
def session(tmp_path: Path) -> Session:
    """A session whose input folder holds a 6x5 RGBA image with a known alpha channel."""
    (tmp_path / "input").mkdir()
    rgba = np.zeros((5, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    rgba[2, 3, 3] = 0  # one fully transparent pixel
    PILImage.fromarray(rgba, mode="RGBA").save(tmp_path / "input" / "cutout.png")
    return Session(models_dir=tmp_path / "models", input_dir=tmp_path / "input", output_dir=tmp_path / "out")


PROMPT = {
    "1": {"class_type": "LoadImageMask", "inputs": {"image": "cutout.png", "channel": "alpha"}},
    "2": {"class_type": "GrowMask", "inputs": {"mask": ["1", 0], "expand": 1, "tapered_corners": True}},
    "3": {"class_type": "LoadImageMask", "inputs": {"image": "cutout.png", "channel": "red"}},
    "4": {
        "class_type": "MaskComposite",
        "inputs": {"destination": ["2", 0], "source": ["3", 0], "x": 4, "y": 0, "operation": "subtract"},
    },
    "5": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 0]}},
    "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "mask"}},
}


def test_mask_workflow_runs_and_saves_the_mask_as_an_image(session: Session):
    result = session.run(session.load(PROMPT))
    grown = torch.zeros(1, 5, 6)
    grown[0, 2, 2:5] = 1.0
    grown[0, 1:4, 3] = 1.0
    # The red channel (200/255) is subtracted from columns 4.. and clamped at 0.
    expected = grown.clone()
    expected[:, :, 4:] = torch.clamp(grown[:, :, 4:] - 200 / 255, 0, 1)
    assert torch.equal(result.outputs["4"].MASK.mask, expected)
    saved = result.files["6"]
    assert len(saved) == 1
    pixels = np.asarray(PILImage.open(saved[0]))
    assert pixels.shape == (5, 6, 3) and pixels[2, 3, 0] == 255 and pixels[0, 0, 0] == 0


def test_mask_workflow_refuses_a_missing_mask_file_and_a_mask_fed_to_an_image_input(session: Session):
    prompt = {
        "1": {"class_type": "LoadImageMask", "inputs": {"image": "absent.png", "channel": "alpha"}},
        "2": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 8, "height": 8}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "y"}},
    }
    result = session.validate(session.load(prompt))
    assert not result.ok
    kinds = {(node_id, e["type"]) for node_id, entry in result.node_errors.items() for e in entry["errors"]}
    assert ("3", "return_type_mismatch") in kinds
    assert any(node_id == "1" for node_id, _ in kinds)
    assert "absent.png" in str(result.node_errors["1"])


def test_image_composite_pastes_rgb_onto_rgba_with_opaque_alpha():
    from nodes.defs.image_ops import ImageCompositeMasked
    from nodes.types import Image

    destination = Image(pixels=torch.zeros(1, 4, 4, 4))
    source = Image(pixels=torch.full((1, 2, 2, 3), 0.5))
    inputs = ImageCompositeMasked.Inputs(
        destination=destination, source=source, x=1, y=1, resize_source=False
    )
    out = ImageCompositeMasked().run(None, inputs).IMAGE.pixels  # type: ignore[arg-type]
    assert out.shape == (1, 4, 4, 4)
    assert torch.equal(out[0, 1, 1], torch.tensor([0.5, 0.5, 0.5, 1.0]))
    assert torch.equal(out[0, 0, 0], torch.zeros(4))

"""Primitive and string utility nodes: values flow into other nodes' widget inputs, as in the templates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from diffgraph.api import Session
from nodes.defs.utilities import CaseConverter, StringCompare, StringSubstring, StringTrim


def test_primitives_and_strings_feed_widget_inputs_of_other_nodes(tmp_path: Path):
    session = Session(
        models_dir=tmp_path / "models", input_dir=tmp_path / "input", output_dir=tmp_path / "out"
    )
    prompt = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 12}},
        "2": {"class_type": "PrimitiveFloat", "inputs": {"value": 0.25}},
        "3": {"class_type": "PrimitiveStringMultiline", "inputs": {"value": "night\nsky"}},
        "4": {"class_type": "StringReplace", "inputs": {"string": ["3", 0], "find": "\n", "replace": "_"}},
        "5": {
            "class_type": "StringConcatenate",
            "inputs": {"string_a": "run", "string_b": ["4", 0], "delimiter": "-"},
        },
        "6": {"class_type": "SolidMask", "inputs": {"value": ["2", 0], "width": ["1", 0], "height": 4}},
        "7": {"class_type": "MaskToImage", "inputs": {"mask": ["6", 0]}},
        "8": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": ["5", 0]}},
    }
    result = session.run(session.load(prompt))
    (saved,) = result.files["8"]
    assert saved.name.startswith("run-night_sky_")
    pixels = np.asarray(PILImage.open(saved))
    assert pixels.shape == (4, 12, 3) and int(pixels[0, 0, 0]) == int(0.25 * 255)


def test_string_nodes_follow_python_string_rules():
    def run(node, **inputs):
        return node().run(None, node.Inputs(**inputs))

    assert run(StringSubstring, string="diffgraph", start=-5, end=-1).STRING == "grap"
    assert run(CaseConverter, string="a cat", mode="Title Case").STRING == "A Cat"
    assert run(StringTrim, string="  x ", mode="Left").STRING == "x "
    assert run(
        StringCompare, string_a="Photo.PNG", string_b=".png", mode="Ends With", case_sensitive=False
    ).BOOLEAN
    assert not run(
        StringCompare, string_a="Photo.PNG", string_b=".png", mode="Ends With", case_sensitive=True
    ).BOOLEAN

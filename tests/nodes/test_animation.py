"""ComfyUI's SaveAnimatedWEBP, SaveAnimatedPNG and SaveWEBM: files, timing, metadata and UI output."""

from __future__ import annotations

import av
import pytest
import torch
from PIL import Image as PILImage

from engine import Environment, Input, Node, NodeInputs, NodeOutputs, Output, Registry
from engine.executor import Executor
from engine.formats.media_metadata import read_embedded_workflow, read_png_text
from engine.formats.workflow import load_workflow
from engine.validation import validate_prompt
from nodes.defs.animation import NODES
from nodes.types import Image

EXTRA = {"workflow": {"nodes": [{"id": 2}], "links": [], "note": "naïve"}}


class Ramp(Node):
    """Test source: frames whose red channel rises with the index."""

    class_type = "Ramp"

    class Inputs(NodeInputs):
        count: int = Input(4, description="frames")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE")

    def run(self, ctx, inputs):
        pixels = torch.zeros(inputs.count, 64, 64, 3)
        pixels[..., 0] = torch.linspace(0.1, 0.9, inputs.count).view(-1, 1, 1)
        return self.Outputs(IMAGE=Image(pixels=pixels))


@pytest.fixture
def setup(tmp_path):
    env = Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")
    registry = Registry()
    for cls in [Ramp, *NODES]:
        registry.register(cls)
    executor = Executor(registry, env)

    def run(class_type, count=4, **inputs):
        prompt = {
            "1": {"class_type": "Ramp", "inputs": {"count": count}},
            "2": {"class_type": class_type, "inputs": {"images": ["1", 0], **inputs}},
        }
        checked = validate_prompt(prompt, registry, env=env)
        assert checked.ok, checked.node_errors
        result = executor.execute(
            checked.prompt, prompt_id="p", outputs=checked.outputs, extra_data={"extra_pnginfo": EXTRA}
        )
        assert result.status == "success", result.error and result.error.data()
        ui = result.ui_outputs["2"]
        (entry,) = ui["images"]
        return checked.prompt, ui, env.output_dir / entry["subfolder"] / entry["filename"]

    return run, registry, env


def test_save_animated_webp_writes_comfyui_named_animated_webp(setup):
    run, _, _ = setup
    prompt, ui, path = run("SaveAnimatedWEBP", fps=4.0, lossless=False, quality=90)
    assert ui == {
        "images": [{"filename": "ComfyUI_00001_.webp", "subfolder": "", "type": "output"}],
        "animated": [True],
    }
    with PILImage.open(path) as image:
        assert image.n_frames == 4
        image.seek(3)
        image.load()
        assert image.info["duration"] == 250
        assert image.convert("RGB").getpixel((5, 5))[0] > 200
        exif = image.getexif()
    assert exif[0x0110].startswith("prompt:{") and exif[0x010F].startswith("workflow:{")
    assert load_workflow(path).prompt == prompt and load_workflow(path).ui == EXTRA["workflow"]


def test_save_animated_webp_single_frame_is_not_marked_animated(setup):
    run, _, _ = setup
    _, ui, path = run("SaveAnimatedWEBP", count=1, method="fastest")
    assert ui["animated"] == [False]
    assert read_embedded_workflow(path).workflow == EXTRA["workflow"]


def test_save_animated_png_writes_apng_with_comf_chunks(setup):
    run, _, _ = setup
    prompt, ui, path = run("SaveAnimatedPNG", fps=2.0, filename_prefix="anim/%width%")
    assert ui["images"][0] == {"filename": "64_00001_.png", "subfolder": "anim", "type": "output"}
    assert ui["animated"] == [True]
    data = path.read_bytes()
    assert b"comfprompt\x00" in data and b"tEXt" not in data
    assert data.index(b"comfprompt") > data.index(b"IDAT")  # after the image data, as ComfyUI writes it
    assert set(read_png_text(data)) == {"prompt", "workflow"}
    with PILImage.open(path) as image:
        assert image.n_frames == 4 and image.info["duration"] == 500
    embedded = read_embedded_workflow(path)
    assert embedded.prompt == prompt and embedded.workflow == EXTRA["workflow"]


@pytest.mark.parametrize(("codec", "decoded"), [("vp9", "vp9"), ("av1", "av1")])
def test_save_webm_encodes_the_chosen_codec_at_the_chosen_fps(setup, codec, decoded):
    run, _, _ = setup
    prompt, ui, path = run("SaveWEBM", count=3, codec=codec, fps=3.0, crf=40.0)
    assert ui["images"][0]["filename"] == "ComfyUI_00001_.webm" and ui["animated"] == [True]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.average_rate == 3 and len(frames) == 3
        assert decoded in stream.codec_context.name
    assert load_workflow(path).prompt == prompt


def test_animation_writers_refuse_prefixes_outside_the_output_folder(setup):
    _, registry, env = setup
    for class_type in ("SaveAnimatedWEBP", "SaveAnimatedPNG", "SaveWEBM"):
        prompt = {
            "1": {"class_type": "Ramp", "inputs": {}},
            "2": {"class_type": class_type, "inputs": {"images": ["1", 0], "filename_prefix": "../out"}},
        }
        checked = validate_prompt(prompt, registry, env=env)
        assert not checked.ok and "filename_prefix" in checked.node_errors["2"]["errors"][0]["details"]

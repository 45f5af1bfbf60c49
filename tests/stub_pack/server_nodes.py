"""Stub nodes for server tests: progress, previews, files, failures, slow steps (IMAGE holds a PIL image)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from engine import Input, Node, NodeInputs, NodeOutputs, Output, Registry, UserFacingError, atomic_write
from tests.stub_pack.types import Number, StubImage


class StubConstant(Node):
    class_type = "StubConstant"
    category = "stub/math"

    class Inputs(NodeInputs):
        value: float = Input(1.0, ge=-1000.0, le=1000.0, description="the number")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx: Any, inputs: Any) -> Any:
        return self.Outputs(number=Number(inputs.value))


class StubRender(Node):
    """Makes a coloured picture in `steps` steps, with progress and a preview at each step."""

    class_type = "StubRender"
    category = "stub/image"

    class Inputs(NodeInputs):
        seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True, description="colour seed")
        width: int = Input(64, ge=8, le=1024, step=8, description="width")
        height: int = Input(64, ge=8, le=1024, step=8, description="height")
        steps: int = Input(3, ge=1, le=1000, description="steps")
        delay: float = Input(0.0, ge=0.0, le=10.0, description="seconds per step")

    class Outputs(NodeOutputs):
        image: StubImage = Output()

    def run(self, ctx: Any, inputs: Any) -> Any:
        colour = (inputs.seed * 37 % 256, inputs.seed * 91 % 256, 128)
        image = Image.new("RGB", (inputs.width, inputs.height), colour)
        for step in range(inputs.steps):
            deadline = time.monotonic() + inputs.delay
            while time.monotonic() < deadline:  # sleep in slices so an interrupt lands quickly
                ctx.check_cancelled()
                time.sleep(min(0.02, inputs.delay))
            ctx.progress(step + 1, inputs.steps)
            ctx.preview(image)
            if ctx.latents_requested:
                ctx.step_latent(
                    step, inputs.steps, torch.full((1, 4, inputs.height // 8, inputs.width // 8), step / 1.0)
                )
        return self.Outputs(image=StubImage(image))


class StubSave(Node):
    """Writes PNGs into output/ and lists them as UI images."""

    class_type = "StubSave"
    category = "stub/image"
    output_node = True
    cacheable = False

    class Inputs(NodeInputs):
        images: StubImage = Input(description="picture to save")
        filename_prefix: str = Input("stub", description="file name prefix")
        write_pause: float = Input(0.0, ge=0.0, le=1.0, description="seconds between 64 KB slices")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: Any, inputs: Any) -> Any:
        out_dir = Path(ctx.output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = f"{inputs.filename_prefix}_{ctx.prompt_id[:8]}_{ctx.node_id}.png"
        buffer = io.BytesIO()
        inputs.images.value.save(buffer, format="PNG", compress_level=0)
        data = buffer.getvalue()

        def write(handle: Any) -> None:
            # In slices with pauses, like a slow disk, so a kill -9 can land in the middle.
            for start in range(0, len(data), 65536):
                handle.write(data[start : start + 65536])
                time.sleep(inputs.write_pause)

        atomic_write(out_dir / name, write)
        ctx.set_ui({"images": [{"filename": name, "subfolder": "", "type": "output"}]})
        return self.Outputs()


class StubShow(Node):
    """Shows a number as UI text."""

    class_type = "StubShow"
    category = "stub/math"
    output_node = True

    class Inputs(NodeInputs):
        number: Number = Input(description="shown")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: Any, inputs: Any) -> Any:
        ctx.set_ui({"text": [str(inputs.number.value)]})
        return self.Outputs()


class StubFail(Node):
    class_type = "StubFail"
    category = "stub/math"

    class Inputs(NodeInputs):
        number: Number = Input(description="input")

    class Outputs(NodeOutputs):
        number: Number = Output()

    def run(self, ctx: Any, inputs: Any) -> Any:
        raise UserFacingError("stub failure: change nothing, this node always fails")


NODES = [StubConstant, StubRender, StubSave, StubShow, StubFail]


def stub_registry() -> Registry:
    """A fresh registry with the stub nodes."""
    return Registry(NODES)


def render_prompt(seed: int = 1, steps: int = 3, delay: float = 0.0, prefix: str = "stub") -> dict[str, Any]:
    """An API prompt: StubRender -> StubSave."""
    return {
        "1": {
            "class_type": "StubRender",
            "inputs": {"seed": seed, "width": 32, "height": 32, "steps": steps, "delay": delay},
        },
        "2": {"class_type": "StubSave", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }

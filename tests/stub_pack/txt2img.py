"""Pure-Python stand-ins for the txt2img nodes (ComfyUI names and inputs) to test the CLI machinery."""

from __future__ import annotations

import _thread
import json
import time
from typing import Any, Literal

from engine import (
    Input,
    ModelPaths,
    Node,
    NodeInputs,
    NodeOutputs,
    Output,
    Registry,
    UserFacingError,
)
from tests.stub_pack.types import StubClip, StubCond, StubImage, StubLatent, StubModel, StubVae

CALLS: list[str] = []  # class_types in the order stubs ran; reset per test


class CheckpointLoaderSimple(Node):
    class_type = "CheckpointLoaderSimple"
    category = "loaders"

    class Inputs(NodeInputs):
        ckpt_name: str = Input(description="checkpoint file", combo_source="checkpoints")

    class Outputs(NodeOutputs):
        model: StubModel = Output()
        clip: StubClip = Output()
        vae: StubVae = Output()

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        path = ctx.model_paths.resolve("checkpoints", inputs.ckpt_name)
        return self.Outputs(model=StubModel(path.name), clip=StubClip(path.name), vae=StubVae(path.name))


class CLIPTextEncode(Node):
    class_type = "CLIPTextEncode"
    category = "conditioning"

    class Inputs(NodeInputs):
        text: str = Input(description="prompt", multiline=True)
        clip: StubClip = Input(description="text encoder")

    class Outputs(NodeOutputs):
        conditioning: StubCond = Output()

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        return self.Outputs(conditioning=StubCond(inputs.text))


class EmptyLatentImage(Node):
    class_type = "EmptyLatentImage"
    category = "latent"

    class Inputs(NodeInputs):
        width: int = Input(512, ge=16, le=16384, step=8)
        height: int = Input(512, ge=16, le=16384, step=8)
        batch_size: int = Input(1, ge=1, le=4096)

    class Outputs(NodeOutputs):
        latent: StubLatent = Output()

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        return self.Outputs(latent=StubLatent({"w": inputs.width, "h": inputs.height}))


class KSampler(Node):
    class_type = "KSampler"
    category = "sampling"

    class Inputs(NodeInputs):
        model: StubModel = Input(description="model")
        seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)
        steps: int = Input(20, ge=1, le=10000)
        cfg: float = Input(8.0, ge=0.0, le=100.0)
        sampler_name: Literal["euler", "dpmpp_2m"] = Input("euler")
        scheduler: Literal["normal", "karras"] = Input("normal")
        positive: StubCond = Input(description="positive")
        negative: StubCond = Input(description="negative")
        latent_image: StubLatent = Input(description="latent")
        denoise: float = Input(1.0, ge=0.0, le=1.0)

    class Outputs(NodeOutputs):
        latent: StubLatent = Output()

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        if inputs.seed == 666:
            raise UserFacingError("unlucky seed 666; pick another seed")
        if inputs.seed == 130:
            # Acts like Ctrl-C in the terminal, then waits for the cancellation to reach the node.
            _thread.interrupt_main()
            for _ in range(500):
                time.sleep(0.01)
                ctx.progress(1, 2)
        for step in range(inputs.steps):
            ctx.progress(step + 1, inputs.steps)
        value = {
            "seed": inputs.seed,
            "steps": inputs.steps,
            "cfg": inputs.cfg,
            "positive": inputs.positive.value,
            "negative": inputs.negative.value,
            "ckpt": inputs.model.value,
            **inputs.latent_image.value,
        }
        return self.Outputs(latent=StubLatent(value))


class KSamplerAdvanced(Node):
    """ComfyUI's KSamplerAdvanced inputs that matter here: `noise_seed` and a step window."""

    class_type = "KSamplerAdvanced"
    category = "sampling"

    class Inputs(NodeInputs):
        model: StubModel = Input(description="model")
        add_noise: Literal["enable", "disable"] = Input("enable")
        noise_seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True)
        steps: int = Input(20, ge=1, le=10000)
        positive: StubCond = Input(description="positive")
        negative: StubCond = Input(description="negative")
        latent_image: StubLatent = Input(description="latent")
        start_at_step: int = Input(0, ge=0, le=10000)
        end_at_step: int = Input(10000, ge=0, le=10000)

    class Outputs(NodeOutputs):
        latent: StubLatent = Output()

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        seeds = [*inputs.latent_image.value.get("seeds", []), inputs.noise_seed]
        return self.Outputs(latent=StubLatent({**inputs.latent_image.value, "seeds": seeds}))


class VAEDecode(Node):
    class_type = "VAEDecode"
    category = "latent"

    class Inputs(NodeInputs):
        samples: StubLatent = Input(description="latent")
        vae: StubVae = Input(description="vae")

    class Outputs(NodeOutputs):
        image: StubImage = Output()

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        return self.Outputs(image=StubImage(inputs.samples.value))


class SaveImage(Node):
    """Writes the decoded 'image' (a JSON dict of everything upstream) as a file, ComfyUI naming."""

    class_type = "SaveImage"
    display_name = "Save Image"
    category = "image"
    output_node = True

    class Inputs(NodeInputs):
        images: StubImage = Input(description="images")
        filename_prefix: str = Input("ComfyUI")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx, inputs):
        CALLS.append(self.class_type)
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        counter = len(list(ctx.output_dir.glob(f"{inputs.filename_prefix}_*"))) + 1
        name = f"{inputs.filename_prefix}_{counter:05}_.json"
        (ctx.output_dir / name).write_text(json.dumps(inputs.images.value), encoding="utf-8")
        ctx.set_ui({"images": [{"filename": name, "subfolder": "", "type": "output"}]})
        return self.Outputs()


ALL = [
    CheckpointLoaderSimple,
    CLIPTextEncode,
    EmptyLatentImage,
    KSampler,
    KSamplerAdvanced,
    VAEDecode,
    SaveImage,
]


def stub_registry_factory(model_paths: ModelPaths, input_dir: Any) -> Registry:
    """A fresh registry of the stubs, with checkpoint choices read from the models folder."""

    def choices(source: str) -> list[str]:
        return model_paths.list(source)

    return Registry(ALL, choices=choices)


def txt2img_prompt(ckpt: str = "tiny.safetensors") -> dict[str, Any]:
    """ComfyUI's default txt2img graph (same ids, titles on the two text encoders)."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": 4,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
            "_meta": {"title": "KSampler"},
        },
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": ckpt},
            "_meta": {"title": "Load Checkpoint"},
        },
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a cat", "clip": ["4", 1]},
            "_meta": {"title": "Positive"},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "blurry", "clip": ["4", 1]},
            "_meta": {"title": "Negative"},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "test", "images": ["8", 0]}},
    }


def two_sampler_prompt() -> dict[str, Any]:
    """txt2img with two KSamplerAdvanced in a chain (steps 0-2, then 2-4), each with its own noise_seed."""
    prompt = txt2img_prompt()
    del prompt["3"]
    common = {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "steps": 4}
    prompt["10"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {**common, "noise_seed": 1, "latent_image": ["5", 0], "start_at_step": 0, "end_at_step": 2},
        "_meta": {"title": "First pass"},
    }
    prompt["11"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {**common, "noise_seed": 2, "latent_image": ["10", 0], "start_at_step": 2},
        "_meta": {"title": "Second pass"},
    }
    prompt["8"]["inputs"]["samples"] = ["11", 0]
    return prompt

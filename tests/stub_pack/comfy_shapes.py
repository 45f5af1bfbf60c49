"""Stub nodes shaped like ComfyUI's, for UI <-> API conversion tests (they never run)."""

from __future__ import annotations

from typing import Any, Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, Registry
from tests.stub_pack.txt2img import SaveImage
from tests.stub_pack.types import StubCond, StubImage, StubLatent, StubMask, StubModel


class Stub(Node):
    """Base: conversion tests never run nodes."""

    def run(self, ctx: Any, inputs: Any) -> Any:
        raise AssertionError("conversion stubs do not run")


class LoadModel(Stub):
    class_type = "LoadModel"
    display_name = "Load Model"

    class Inputs(NodeInputs):
        ckpt_name: Literal["a.safetensors", "b.safetensors"] = Input(description="checkpoint")

    class Outputs(NodeOutputs):
        model: StubModel = Output()
        cond: StubCond = Output()


class TextEncode(Stub):
    class_type = "TextEncode"
    display_name = "Text Encode"

    class Inputs(NodeInputs):
        text: str = Input(description="prompt", multiline=True)

    class Outputs(NodeOutputs):
        cond: StubCond = Output()


class EmptyLatent(Stub):
    class_type = "EmptyLatent"

    class Inputs(NodeInputs):
        width: int = Input(512, ge=16, le=8192)
        height: int = Input(512, ge=16, le=8192)
        batch_size: int = Input(1, ge=1, le=64)

    class Outputs(NodeOutputs):
        latent: StubLatent = Output()


class Sampler(Stub):
    """KSampler-shaped: `seed` has no control_after_generate option, the client adds one by name."""

    class_type = "Sampler"
    display_name = "Sampler"

    class Inputs(NodeInputs):
        model: StubModel = Input(description="model")
        seed: int = Input(0, ge=0, le=2**64 - 1)
        steps: int = Input(20, ge=1, le=10000)
        cfg: float = Input(8.0, ge=0.0, le=100.0)
        sampler_name: Literal["euler", "dpmpp_2m"] = Input("euler")
        positive: StubCond = Input(description="positive")
        latent_image: StubLatent = Input(description="latent")
        denoise: float = Input(1.0, ge=0.0, le=1.0)
        noise_scale: float = Input(1.0, optional=True)

    class Outputs(NodeOutputs):
        latent: StubLatent = Output()


class Noise(Stub):
    """`noise_seed` by name; `offset` has control_after_generate explicitly; `fixed_seed` opts out."""

    class_type = "Noise"

    class Inputs(NodeInputs):
        noise_seed: int = Input(0, ge=0)
        offset: int = Input(0, control_after_generate=True)
        seed: int = Input(0, control_after_generate=False)
        sampler: Literal["euler", "ddim"] = Input("euler", control_after_generate=True)
        strength: float = Input(1.0)

    class Outputs(NodeOutputs):
        latent: StubLatent = Output()


class SeedSource(Stub):
    class_type = "SeedSource"

    class Inputs(NodeInputs):
        value: int = Input(7)

    class Outputs(NodeOutputs):
        seed: int = Output(name="INT")


class Decode(Stub):
    class_type = "Decode"

    class Inputs(NodeInputs):
        samples: StubLatent = Input(description="latent")

    class Outputs(NodeOutputs):
        image: StubImage = Output()


class LoadImage(Stub):
    class_type = "LoadImage"
    display_name = "Load Image"

    class Inputs(NodeInputs):
        image: str = Input(combo_source="input_images", image_upload=True)

    class Outputs(NodeOutputs):
        image: StubImage = Output()
        mask: StubMask = Output()


class LoadVideo(Stub):
    class_type = "LoadVideo"

    class Inputs(NodeInputs):
        file: str = Input(combo_source="input_images", video_upload=True)
        frames: int = Input(16)

    class Outputs(NodeOutputs):
        image: StubImage = Output()


class Invert(Stub):
    class_type = "Invert"

    class Inputs(NodeInputs):
        image: StubImage = Input(description="image")

    class Outputs(NodeOutputs):
        image: StubImage = Output()


class MaskImage(Stub):
    """Output 0 is an IMAGE but input 0 is a MASK: bypassing it must pick input 1 by type."""

    class_type = "MaskImage"

    class Inputs(NodeInputs):
        mask: StubMask = Input(description="mask")
        image: StubImage = Input(description="image")

    class Outputs(NodeOutputs):
        image: StubImage = Output()


class Scale(Stub):
    class_type = "Scale"

    class Inputs(NodeInputs):
        image: StubImage = Input(description="image")
        factor: float = Input(1.0, forceInput=True)
        points: str = Input("[]", description="a widget whose saved value may be a list")

    class Outputs(NodeOutputs):
        image: StubImage = Output()


ALL = [
    LoadModel,
    TextEncode,
    EmptyLatent,
    Sampler,
    Noise,
    SeedSource,
    Decode,
    LoadImage,
    LoadVideo,
    Invert,
    MaskImage,
    Scale,
    SaveImage,
]
INPUT_FILES = ["cat.png", "dog.png", "clip.mp4"]


def ui_registry() -> Registry:
    """A fresh registry of the conversion stubs, with a fixed list of input files."""
    return Registry(ALL, choices=lambda source: list(INPUT_FILES) if source == "input_images" else [])

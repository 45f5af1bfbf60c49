"""Stub nodes shaped like ComfyUI's, for UI <-> API conversion tests (they never run)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from engine import EdgeType, Input, Node, NodeInputs, NodeOutputs, Output, Registry


class Model(EdgeType):
    io_type: ClassVar[str] = "MODEL"


class Cond(EdgeType):
    io_type: ClassVar[str] = "CONDITIONING"


class Latent(EdgeType):
    io_type: ClassVar[str] = "LATENT"


class Image(EdgeType):
    io_type: ClassVar[str] = "IMAGE"


class Mask(EdgeType):
    io_type: ClassVar[str] = "MASK"


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
        model: Model = Output()
        cond: Cond = Output()


class TextEncode(Stub):
    class_type = "TextEncode"
    display_name = "Text Encode"

    class Inputs(NodeInputs):
        text: str = Input(description="prompt", multiline=True)

    class Outputs(NodeOutputs):
        cond: Cond = Output()


class EmptyLatent(Stub):
    class_type = "EmptyLatent"

    class Inputs(NodeInputs):
        width: int = Input(512, ge=16, le=8192)
        height: int = Input(512, ge=16, le=8192)
        batch_size: int = Input(1, ge=1, le=64)

    class Outputs(NodeOutputs):
        latent: Latent = Output()


class Sampler(Stub):
    """KSampler-shaped: `seed` has no control_after_generate option, the client adds one by name."""

    class_type = "Sampler"
    display_name = "Sampler"

    class Inputs(NodeInputs):
        model: Model = Input(description="model")
        seed: int = Input(0, ge=0, le=2**64 - 1)
        steps: int = Input(20, ge=1, le=10000)
        cfg: float = Input(8.0, ge=0.0, le=100.0)
        sampler_name: Literal["euler", "dpmpp_2m"] = Input("euler")
        positive: Cond = Input(description="positive")
        latent_image: Latent = Input(description="latent")
        denoise: float = Input(1.0, ge=0.0, le=1.0)
        noise_scale: float = Input(1.0, optional=True)

    class Outputs(NodeOutputs):
        latent: Latent = Output()


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
        latent: Latent = Output()


class SeedSource(Stub):
    class_type = "SeedSource"

    class Inputs(NodeInputs):
        value: int = Input(7)

    class Outputs(NodeOutputs):
        seed: int = Output(name="INT")


class Decode(Stub):
    class_type = "Decode"

    class Inputs(NodeInputs):
        samples: Latent = Input(description="latent")

    class Outputs(NodeOutputs):
        image: Image = Output()


class LoadImage(Stub):
    class_type = "LoadImage"
    display_name = "Load Image"

    class Inputs(NodeInputs):
        image: str = Input(combo_source="input_images", image_upload=True)

    class Outputs(NodeOutputs):
        image: Image = Output()
        mask: Mask = Output()


class LoadVideo(Stub):
    class_type = "LoadVideo"

    class Inputs(NodeInputs):
        file: str = Input(combo_source="input_images", video_upload=True)
        frames: int = Input(16)

    class Outputs(NodeOutputs):
        image: Image = Output()


class Invert(Stub):
    class_type = "Invert"

    class Inputs(NodeInputs):
        image: Image = Input(description="image")

    class Outputs(NodeOutputs):
        image: Image = Output()


class MaskImage(Stub):
    """Output 0 is an IMAGE but input 0 is a MASK: bypassing it must pick input 1 by type."""

    class_type = "MaskImage"

    class Inputs(NodeInputs):
        mask: Mask = Input(description="mask")
        image: Image = Input(description="image")

    class Outputs(NodeOutputs):
        image: Image = Output()


class Scale(Stub):
    class_type = "Scale"

    class Inputs(NodeInputs):
        image: Image = Input(description="image")
        factor: float = Input(1.0, forceInput=True)
        points: str = Input("[]", description="a widget whose saved value may be a list")

    class Outputs(NodeOutputs):
        image: Image = Output()


class SaveImage(Stub):
    class_type = "SaveImage"
    display_name = "Save Image"
    output_node = True

    class Inputs(NodeInputs):
        images: Image = Input(description="images")
        filename_prefix: str = Input("ComfyUI")

    class Outputs(NodeOutputs):
        pass


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

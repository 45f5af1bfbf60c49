"""ComfyUI's animation writers SaveAnimatedWEBP, SaveAnimatedPNG and SaveWEBM, for its workflows.

Same class names, inputs, file names, metadata and UI output as ComfyUI's, so workflows using them load
unchanged. Animated WebP and PNG go through Pillow like ComfyUI's nodes (frame duration int(1000 / fps)
ms); WebM through PyAV with the shared encoder table of nodes.defs.video. diffgraph's own
SaveVideoFrames covers MP4 and GIF as well.
"""

from __future__ import annotations

import io
from typing import Any, Literal

from PIL import Image as PILImage

from engine import Input, NodeInputs, NodeOutputs, RunContext, apng_info, webp_exif_bytes
from nodes.defs.image import to_pil_frames
from nodes.defs.video import video_bytes
from nodes.media.save_paths import PREFIX_TIP, OutputFileNode, save_target
from nodes.types import Image

FPS_TIP = "Playback speed in frames per second."
WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}


def frame_duration_ms(fps: float) -> int:
    """Pillow's per-frame duration for an fps, truncated as ComfyUI does."""
    return int(1000.0 / fps)


def animated_webp_bytes(
    frames: list[PILImage.Image], fps: float, lossless: bool, quality: int, method: int, exif: bytes
) -> bytes:
    """An animated (or single-frame) WebP with ComfyUI's EXIF workflow tags."""
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="WEBP",
        save_all=True,
        append_images=frames[1:],
        duration=frame_duration_ms(fps),
        exif=exif,
        lossless=lossless,
        quality=quality,
        method=method,
    )
    return buffer.getvalue()


def animated_png_bytes(frames: list[PILImage.Image], fps: float, compress_level: int, pnginfo: Any) -> bytes:
    """An APNG with ComfyUI's `comf` metadata chunks."""
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="PNG",
        save_all=True,
        append_images=frames[1:],
        duration=frame_duration_ms(fps),
        pnginfo=pnginfo,
        compress_level=compress_level,
    )
    return buffer.getvalue()


def _write(ctx: RunContext, images: Image, prefix: str, suffix: str, data: bytes) -> dict[str, str]:
    """Write one file under the output folder with ComfyUI's naming; returns its UI entry."""
    pixels = images.pixels
    target = save_target(ctx.output_dir, prefix, pixels.shape[2], pixels.shape[1], prompt=ctx.prompt)
    name = target.write(suffix, 0, lambda handle: handle.write(data))
    return {"filename": name, "subfolder": target.subfolder, "type": "output"}


class SaveAnimatedWEBP(OutputFileNode):
    """ComfyUI's SaveAnimatedWEBP: the image batch as one animated WebP."""

    class_type = "SaveAnimatedWEBP"
    display_name = "SaveAnimatedWEBP"
    category = "image/animation"
    description = "Saves the images as the frames of an animated WebP, with the workflow in its EXIF."

    class Inputs(NodeInputs):
        images: Image = Input(description="The frames, in order.")
        filename_prefix: str = Input("ComfyUI", description=PREFIX_TIP)
        fps: float = Input(6.0, description=FPS_TIP, ge=0.01, le=1000.0, step=0.01)
        lossless: bool = Input(True, description="Lossless WebP (quality then means effort).")
        quality: int = Input(80, description="WebP quality, 0-100.", ge=0, le=100)
        method: Literal["default", "fastest", "slowest"] = Input(
            "default", description="Encoder effort: fastest = 0, default = 4, slowest = 6."
        )

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode with Pillow and write `{prefix}_{counter:05}_.webp`; animated when over one frame."""
        frames = to_pil_frames(inputs.images.pixels)
        exif = webp_exif_bytes(ctx.prompt, ctx.extra_pnginfo)
        data = animated_webp_bytes(
            frames, inputs.fps, inputs.lossless, inputs.quality, WEBP_METHODS[inputs.method], exif
        )
        entry = _write(ctx, inputs.images, inputs.filename_prefix, ".webp", data)
        ctx.set_ui({"images": [entry], "animated": [len(frames) != 1]})
        return self.Outputs()


class SaveAnimatedPNG(OutputFileNode):
    """ComfyUI's SaveAnimatedPNG: the image batch as one APNG."""

    class_type = "SaveAnimatedPNG"
    display_name = "SaveAnimatedPNG"
    category = "image/animation"
    description = "Saves the images as the frames of an animated PNG, with the workflow in `comf` chunks."

    class Inputs(NodeInputs):
        images: Image = Input(description="The frames, in order.")
        filename_prefix: str = Input("ComfyUI", description=PREFIX_TIP)
        fps: float = Input(6.0, description=FPS_TIP, ge=0.01, le=1000.0, step=0.01)
        compress_level: int = Input(4, description="zlib level, 0 (none) to 9 (smallest).", ge=0, le=9)

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode with Pillow and write `{prefix}_{counter:05}_.png`."""
        frames = to_pil_frames(inputs.images.pixels)
        pnginfo = apng_info(ctx.prompt, ctx.extra_pnginfo)
        data = animated_png_bytes(frames, inputs.fps, inputs.compress_level, pnginfo)
        entry = _write(ctx, inputs.images, inputs.filename_prefix, ".png", data)
        ctx.set_ui({"images": [entry], "animated": [True]})
        return self.Outputs()


class SaveWEBM(OutputFileNode):
    """ComfyUI's SaveWEBM: the image batch as a VP9 or AV1 WebM."""

    class_type = "SaveWEBM"
    display_name = "SaveWEBM"
    category = "image/video"
    description = "Saves the images as the frames of a WebM (VP9 or AV1), with the workflow in its tags."

    class Inputs(NodeInputs):
        images: Image = Input(description="The frames, in order.")
        filename_prefix: str = Input("ComfyUI", description=PREFIX_TIP)
        codec: Literal["vp9", "av1"] = Input("vp9", description="vp9 = libvpx-vp9, av1 = SVT-AV1 (10-bit).")
        fps: float = Input(24.0, description=FPS_TIP, ge=0.01, le=1000.0, step=0.01)
        crf: float = Input(
            32.0,
            description="Constant rate factor: each step up trades picture quality for a smaller file.",
            ge=0,
            le=63.0,
            step=1,
        )

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode through PyAV and write `{prefix}_{counter:05}_.webm`."""
        fmt = "webm" if inputs.codec == "vp9" else "webm_av1"
        data = video_bytes(
            inputs.images.pixels, fmt, inputs.fps, int(inputs.crf), ctx.prompt, ctx.extra_pnginfo
        )
        entry = _write(ctx, inputs.images, inputs.filename_prefix, ".webm", data)
        ctx.set_ui({"images": [entry], "animated": [True]})
        return self.Outputs()


NODES = [SaveAnimatedWEBP, SaveAnimatedPNG, SaveWEBM]

"""Videos of image batches (MP4/H.264, WebM/VP9, animated WebP, GIF) and frames of a sampler's steps.

Encoding goes through PyAV, whose wheel carries ffmpeg with libx264, libvpx-vp9, libwebp_anim and gif.
A missing encoder is an error naming it; there is no silent switch to another codec. Like SaveImage,
the writer is cacheable: an identical resubmission replays the cached UI instead of writing again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
from PIL import Image as PILImage

if TYPE_CHECKING:
    import av

from engine import (
    Input,
    Node,
    NodeInputError,
    NodeInputs,
    NodeOutputs,
    Output,
    RunContext,
    UserFacingError,
    container_metadata,
    embed_gif_metadata,
    embed_webp_metadata,
)
from nodes.defs.image import to_pil_frames
from nodes.diffusion.model_handle import VaeHandle
from nodes.media.previews import latent_rgb
from nodes.media.save_paths import PREFIX_TIP, OutputFileNode, save_target
from nodes.types import Image, LatentSequence

VideoFormat = Literal["mp4", "webm", "webp", "gif"]


@dataclass(frozen=True)
class Encoding:
    """How one output format is written: container, encoder, pixel format, encoder options."""

    container: str
    codec: str
    pix_fmt: str
    suffix: str
    even_size: bool = False


ENCODINGS: dict[str, Encoding] = {
    "mp4": Encoding("mp4", "libx264", "yuv420p", ".mp4", even_size=True),
    "webm": Encoding("webm", "libvpx-vp9", "yuv420p", ".webm"),
    "webp": Encoding("webp", "libwebp_anim", "yuv420p", ".webp"),
    "gif": Encoding("gif", "gif", "pal8", ".gif"),
    # SaveWEBM's av1 choice: SVT-AV1 in 10-bit, as ComfyUI encodes it.
    "webm_av1": Encoding("webm", "libsvtav1", "yuv420p10le", ".webm"),
}


def _pyav() -> Any:
    """PyAV, imported when a video is made: a run without video nodes never pays for loading ffmpeg."""
    import av

    return av


def require_encoder(name: str) -> None:
    """Fail clearly when this PyAV build lacks an encoder (no fallback to another codec)."""
    try:
        _pyav().codec.Codec(name, "w")
    except _pyav().codec.codec.UnknownCodecError as exc:
        raise UserFacingError(
            f"the ffmpeg inside PyAV {_pyav().__version__} has no {name} encoder; install a PyAV wheel "
            "that includes it or pick another format",
            code="encoder_missing",
        ) from exc


def _encoder_options(fmt: str, crf: int) -> dict[str, object]:
    if fmt == "mp4":
        return {"crf": str(min(crf, 51)), "preset": "medium"}
    if fmt == "webm":
        # VP9 honours crf only with a zero target bitrate (constant-quality mode).
        return {"crf": str(crf), "b": "0", "row-mt": "1"}
    if fmt == "webm_av1":
        return {"crf": str(crf), "preset": "6"}
    if fmt == "webp":
        return {"quality": "80", "lossless": "0"}
    return {}


def _pal8_frame(image: PILImage.Image) -> av.VideoFrame:
    """A GIF frame with its own 256-colour palette (median cut), far better than a fixed palette."""
    quantized = image.quantize(256, method=PILImage.Quantize.MEDIANCUT)
    palette = np.array(quantized.getpalette(), dtype=np.uint8).reshape(-1, 3)[:256]
    palette = np.concatenate([palette, np.zeros((256 - len(palette), 3), dtype=np.uint8)])
    argb = np.concatenate([np.full((256, 1), 255, dtype=np.uint8), palette], axis=1)
    # PyAV takes pal8 as an (indices, ARGB palette) pair; its type stubs only know single arrays.
    return _pyav().VideoFrame.from_ndarray((np.asarray(quantized), argb), format="pal8")  # type: ignore[arg-type]


def encode_video(
    frames: list[PILImage.Image],
    fmt: str,
    fps: float,
    crf: int = 23,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """Encode RGB frames at `fps` into one container's bytes (fmt: a key of ENCODINGS), tags from `metadata`."""
    spec = ENCODINGS[fmt]
    require_encoder(spec.codec)
    width, height = frames[0].size
    if spec.even_size and (width % 2 or height % 2):
        raise NodeInputError("images", f"H.264 MP4 needs even width and height, got {width}x{height}")
    rate = Fraction(fps).limit_denominator(1001)
    buffer = io.BytesIO()
    # mp4 keeps arbitrary tags (prompt, workflow) only with use_metadata_tags; loop=0 loops WebP/GIF.
    options = {"mp4": {"movflags": "use_metadata_tags"}, "webp": {"loop": "0"}, "gif": {"loop": "0"}}
    pyav = _pyav()
    with pyav.open(buffer, "w", format=spec.container, options=options.get(fmt, {})) as container:
        container.metadata.update(metadata or {})
        stream = cast("av.VideoStream", container.add_stream(spec.codec, rate=rate))
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        stream.options = _encoder_options(fmt, crf)
        for index, image in enumerate(frames):
            frame = _pal8_frame(image) if fmt == "gif" else pyav.VideoFrame.from_image(image)
            frame.pts = index
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def video_bytes(
    pixels: torch.Tensor, fmt: str, fps: float, crf: int, prompt: Any, extra_pnginfo: Any
) -> bytes:
    """An IMAGE batch as a video file (fmt: a key of ENCODINGS) with the workflow embedded its way."""
    frames = [frame.convert("RGB") for frame in to_pil_frames(pixels)]
    if fmt in ("mp4", "webm", "webm_av1"):
        return encode_video(frames, fmt, fps, crf, container_metadata(prompt, extra_pnginfo))
    data = encode_video(frames, fmt, fps, crf)
    if fmt == "webp":
        return embed_webp_metadata(data, prompt, extra_pnginfo)
    return embed_gif_metadata(data, prompt, extra_pnginfo)


class SaveVideoFrames(OutputFileNode):
    """Writes an image batch as a video (one frame per image) with the workflow embedded."""

    class_type = "SaveVideoFrames"
    display_name = "Save Video (from frames)"
    category = "image/video"
    description = "Saves the images as the frames of an MP4 (H.264), WebM (VP9), animated WebP or GIF."

    class Inputs(NodeInputs):
        images: Image = Input(description="The frames, in order.")
        filename_prefix: str = Input("video/ComfyUI", description=PREFIX_TIP)
        fps: float = Input(
            8.0, description="Playback speed in frames per second.", ge=0.01, le=1000.0, step=0.01
        )
        format: VideoFormat = Input("mp4", description="mp4 = H.264, webm = VP9, webp/gif = animated images.")
        crf: int = Input(
            23,
            description="Constant rate factor for H.264 (0-51) and VP9 (0-63); lower is better.",
            ge=0,
            le=63,
        )

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode and write the file; the UI marks it animated so the client plays it."""
        pixels = inputs.images.pixels
        data = video_bytes(pixels, inputs.format, inputs.fps, inputs.crf, ctx.prompt, ctx.extra_pnginfo)
        target = save_target(
            ctx.output_dir, inputs.filename_prefix, pixels.shape[2], pixels.shape[1], prompt=ctx.prompt
        )
        name = target.write(ENCODINGS[inputs.format].suffix, 0, lambda handle: handle.write(data))
        ctx.set_ui(
            {
                "images": [{"filename": name, "subfolder": target.subfolder, "type": "output"}],
                "animated": [True],
            }
        )
        return self.Outputs()


def preview_frames(steps: torch.Tensor, sequence: LatentSequence, upscale: int) -> torch.Tensor:
    """Cheap frames: the linear latent-to-RGB projection, [S, h*upscale, w*upscale, 3] in 0..1."""
    signed = latent_rgb(sequence.latent_format.process_in(steps), sequence.latent_format)
    pixels = ((signed + 1.0) / 2.0).clamp(0, 1)
    if upscale > 1:
        pixels = torch.nn.functional.interpolate(
            pixels.movedim(-1, 1), scale_factor=upscale, mode="bilinear", align_corners=False
        ).movedim(1, -1)
    return pixels.clamp(0, 1)


class LatentStepsToImages(Node):
    """Turns a sampler's per-step latents into image frames, so "every step as a frame" is one link."""

    class_type = "LatentStepsToImages"
    display_name = "Latent Steps to Images"
    category = "latent/video"
    description = (
        "Decodes each sampler step (VAE, batched) or projects it cheaply (preview colours) into frames."
    )

    class Inputs(NodeInputs):
        latent_steps: LatentSequence = Input(description="The sampler's LATENT_SEQUENCE output.")
        vae: VaeHandle | None = Input(
            None, description="The VAE; needed when method is 'vae'.", optional=True
        )
        method: Literal["vae", "preview"] = Input(
            "vae", description="vae = full decode; preview = fast projection."
        )
        batch_index: int = Input(0, description="Which item of the sampled batch to follow.", ge=0, le=4095)
        decode_batch: int = Input(
            8, description="Steps decoded per VAE call (memory vs speed).", ge=1, le=256
        )

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="One frame per step, in step order.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Pick the batch item, then decode or project each step."""
        steps = inputs.latent_steps.steps
        if inputs.batch_index >= steps.shape[1]:
            raise NodeInputError(
                "batch_index", f"the sampled batch has {steps.shape[1]} item(s); use 0..{steps.shape[1] - 1}"
            )
        item = steps[:, inputs.batch_index]
        if inputs.method == "preview":
            return self.Outputs(IMAGE=Image(pixels=preview_frames(item, inputs.latent_steps, 8)))
        if inputs.vae is None:
            raise NodeInputError(
                "vae", "method 'vae' needs a VAE linked; link one or choose method 'preview'"
            )
        chunks = []
        for start in range(0, item.shape[0], inputs.decode_batch):
            ctx.progress(start, item.shape[0])
            chunks.append(decode_latents(ctx, inputs.vae, item[start : start + inputs.decode_batch]))
        ctx.progress(item.shape[0], item.shape[0])
        return self.Outputs(IMAGE=Image(pixels=torch.cat(chunks)))


def decode_latents(ctx: RunContext, vae: VaeHandle, latents: torch.Tensor) -> torch.Tensor:
    """VAE-space latents [N, C, h, w] -> IMAGE pixels [N, H, W, 3] through the model stack's decoder."""
    from nodes.diffusion import vae as vae_ops

    return vae_ops.decode(vae.autoencoder(ctx.models), latents)


NODES = [SaveVideoFrames, LatentStepsToImages]

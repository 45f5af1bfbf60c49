"""SaveImage, PreviewImage and LoadImage: PNG writing with the workflow inside, and image loading.

File naming (prefix tokens, subfolders, counters) lives in nodes.media.save_paths and is shared by every writer.

Caching decision: output nodes here are cacheable and deterministic, as in ComfyUI. Resubmitting an
identical prompt executes nothing and replays the cached UI output (the same file names); it does not
write a second copy. A changed input (seed, prefix, upstream node) re-runs the writer, which then picks a
fresh counter, so earlier files are never overwritten.
"""

from __future__ import annotations

import hashlib
import random
import string
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence

from engine import (
    Input,
    Node,
    NodeInputError,
    NodeInputs,
    NodeOutputs,
    Output,
    PathRefused,
    RunContext,
    UserFacingError,
    png_info,
    resolve_relative,
)
from nodes.media.save_paths import HIDDEN_METADATA, PREFIX_TIP, OutputFileNode, save_target
from nodes.types import Image, Mask

DIR_TYPES = ("output", "input", "temp")


def to_pil_frames(pixels: torch.Tensor) -> list[PILImage.Image]:
    """IMAGE [B, H, W, 3] in 0..1 -> PIL RGB images (clip(255 x) truncated to uint8, as ComfyUI)."""
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3, 4):
        raise UserFacingError(f"expected an IMAGE batch [B, H, W, 3], got shape {tuple(pixels.shape)}")
    array = np.clip(255.0 * pixels.detach().float().cpu().numpy(), 0, 255).astype(np.uint8)
    return [PILImage.fromarray(frame.squeeze(-1) if frame.shape[-1] == 1 else frame) for frame in array]


def save_png_batch(
    ctx: RunContext, pixels: torch.Tensor, root: Path, prefix: str, dir_type: str, compress_level: int
) -> list[dict[str, str]]:
    """Write each image of a batch as PNG with the prompt/workflow chunks; returns the UI entries."""
    frames = to_pil_frames(pixels)
    target = save_target(root, prefix, frames[0].width, frames[0].height, prompt=ctx.prompt)
    metadata = png_info(ctx.prompt, ctx.extra_pnginfo)
    results = []
    for index, frame in enumerate(frames):
        ctx.check_cancelled()

        def write_png(handle: IO[bytes], image: PILImage.Image = frame) -> None:
            image.save(handle, format="PNG", pnginfo=metadata, compress_level=compress_level)

        name = target.write(".png", index, write_png)
        results.append({"filename": name, "subfolder": target.subfolder, "type": dir_type})
    return results


class SaveImage(OutputFileNode):
    """Saves images to the output directory as PNG, with the workflow embedded."""

    class_type = "SaveImage"
    display_name = "Save Image"
    category = "image"
    description = "Writes each image as a PNG into the output folder, with the prompt and workflow inside."

    class Inputs(NodeInputs):
        images: Image = Input(description="One PNG is written per image of the batch.")
        filename_prefix: str = Input("ComfyUI", description=PREFIX_TIP)

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Write the PNGs and publish them as this node's UI images."""
        images = save_png_batch(
            ctx, inputs.images.pixels, ctx.output_dir, inputs.filename_prefix, "output", 4
        )
        ctx.set_ui({"images": images})
        return self.Outputs()


class PreviewImage(Node):
    """Shows images in the client without keeping them: PNGs in the temp directory."""

    class_type = "PreviewImage"
    display_name = "Preview Image"
    category = "image"
    description = "Shows the images in the client; they go to the temp folder, which is cleared on restart."
    output_node = True
    hidden = HIDDEN_METADATA

    class Inputs(NodeInputs):
        images: Image = Input(description="The batch to show.")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Write low-compression PNGs to temp/ with a random suffix, as ComfyUI does."""
        suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        images = save_png_batch(ctx, inputs.images.pixels, ctx.temp_dir, f"ComfyUI_temp_{suffix}", "temp", 1)
        ctx.set_ui({"images": images})
        return self.Outputs()


def resolve_annotated(name: str, dirs: Mapping[str, Path], input_name: str = "image") -> Path:
    """A file name, optionally annotated `name [output]`, resolved inside its directory (input by default)."""
    dir_type = "input"
    for candidate in DIR_TYPES:
        if name.endswith(f" [{candidate}]"):
            name, dir_type = name[: -len(candidate) - 3], candidate
    try:
        path = resolve_relative(dirs[dir_type], name)
    except PathRefused as exc:
        raise NodeInputError(
            input_name, f"{name!r} is not a file name inside the {dir_type} folder: {exc.message}"
        ) from None
    if not path.is_file():
        raise NodeInputError(input_name, f"Invalid image file: {name} (not found in the {dir_type} folder)")
    return path


def load_image_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode an image file (all frames of the first frame's size) to IMAGE [B,H,W,3] and MASK [B,H,W].

    The mask is 1 - alpha (1 = masked, ComfyUI's convention); without alpha it is all zeros.
    """
    pixels, masks = [], []
    with PILImage.open(path) as image:
        frames = [image] if image.format == "MPO" else ImageSequence.Iterator(image)
        size = None
        for frame in frames:
            frame = ImageOps.exif_transpose(frame)
            if frame.mode == "I":
                frame = frame.point(lambda v: v * (1 / 255))
            rgb = frame.convert("RGB")
            size = size or rgb.size
            if rgb.size != size:
                continue
            pixels.append(torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0))
            if "A" in frame.getbands() or (frame.mode == "P" and "transparency" in frame.info):
                alpha = np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - torch.from_numpy(alpha))
            else:
                masks.append(torch.zeros(rgb.height, rgb.width, dtype=torch.float32))
    return torch.stack(pixels), torch.stack(masks)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _env_dirs(env: Any) -> dict[str, Path]:
    return {"input": Path(env.input_dir), "output": Path(env.output_dir), "temp": Path(env.temp_dir)}


class LoadImage(Node):
    """Loads an image from the input directory, with its alpha channel as a mask."""

    class_type = "LoadImage"
    display_name = "Load Image"
    category = "image"
    description = "Loads an image (and its alpha as MASK) from the input directory."
    # The web client also sends "name [output]" / "clipspace/... [input]" (mask editor), not in the list.
    self_validated_inputs = frozenset({"image"})

    class Inputs(NodeInputs):
        image: str = Input(
            description="An image file in the input folder.", combo_source="input_images", image_upload=True
        )

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE", description="The image's pixels.")
        MASK: Mask = Output(name="MASK", description="1 - alpha; zeros when the image has no alpha.")

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], env: Any) -> str:
        """The file's sha256, so editing the file in place re-runs the node."""
        return file_sha256(resolve_annotated(str(values["image"]), _env_dirs(env)))

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Refuse names that are missing or escape the input folder, before anything runs."""
        if values.get("image") is None or env is None:
            return None
        try:
            resolve_annotated(str(values["image"]), _env_dirs(env))
        except NodeInputError as exc:
            return exc.message
        return None

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Decode the file into pixels and mask."""
        dirs = {"input": ctx.input_dir, "output": ctx.output_dir, "temp": ctx.temp_dir}
        pixels, mask = load_image_file(resolve_annotated(inputs.image, dirs))
        return self.Outputs(IMAGE=Image(pixels=pixels), MASK=Mask(mask=mask))


class LoadImageOutput(LoadImage):
    """LoadImage for results: the web client lists the output folder and sends "name [output]"."""

    class_type = "LoadImageOutput"
    display_name = "Load Image (from Outputs)"
    description = (
        "Loads an image this server wrote to its output folder (and its alpha as MASK), to feed a result "
        "back into the next edit. The refresh button re-reads the folder and picks its first image."
    )
    experimental = True

    class Inputs(NodeInputs):
        image: str = Input(
            description="An image in the output folder, as the client names it ('name.png [output]').",
            image_upload=True,
            image_folder="output",
            remote={
                "route": "/internal/files/output",
                "refresh_button": True,
                "control_after_refresh": "first",
            },
        )


NODES = [SaveImage, PreviewImage, LoadImage, LoadImageOutput]

"""SaveImage, PreviewImage and LoadImage, plus ComfyUI's output file naming shared by every writer.

Caching decision: output nodes here are cacheable and deterministic, as in ComfyUI. Resubmitting an
identical prompt executes nothing and replays the cached UI output (the same file names); it does not
write a second copy. A changed input (seed, prefix, upstream node) re-runs the writer, which then picks a
fresh counter, so earlier files are never overwritten.
"""

from __future__ import annotations

import hashlib
import io
import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import ImageOps, ImageSequence

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from engine.media_metadata import png_info
from nodes.types import Image, Mask

HIDDEN_METADATA = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
DIR_TYPES = ("output", "input", "temp")


@dataclass
class SaveTarget:
    """Where a writer puts its files: folder, file base name, first free counter, UI subfolder."""

    folder: Path
    base: str
    counter: int
    subfolder: str

    def write(self, suffix: str, batch_index: int, writer: Callable[[io.BufferedWriter], None]) -> str:
        """Write one file `{base}_{counter:05}_{suffix}` without ever replacing an existing one.

        `%batch_num%` in the base becomes the batch index. Returns the file name; the counter moves on.
        """
        base = self.base.replace("%batch_num%", str(batch_index))
        while True:
            name = f"{base}_{self.counter:05}_{suffix}"
            self.counter += 1
            try:
                # Exclusive create: a file that appeared since the scan bumps the counter instead.
                with open(self.folder / name, "xb") as handle:
                    writer(handle)
                return name
            except FileExistsError:
                continue


def expand_prefix_tokens(prefix: str, width: int, height: int, now: datetime | None = None) -> str:
    """Substitute ComfyUI's %width% %height% %year% %month% %day% %hour% %minute% %second% tokens."""
    if "%" not in prefix:
        return prefix
    now = now or datetime.now()
    tokens = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.year),
        "%month%": f"{now.month:02}",
        "%day%": f"{now.day:02}",
        "%hour%": f"{now.hour:02}",
        "%minute%": f"{now.minute:02}",
        "%second%": f"{now.second:02}",
    }
    for token, value in tokens.items():
        prefix = prefix.replace(token, value)
    return prefix


def next_counter(folder: Path, base: str) -> int:
    """1 + the largest N among files named `<base>_N...` in folder (ComfyUI's rule), else 1."""
    highest = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            name = entry.name
            if not name.startswith(base + "_"):
                continue
            digits = name[len(base) + 1 :].split("_")[0]
            if digits.isdigit():
                highest = max(highest, int(digits))
    return highest + 1


def save_target(
    root: Path, prefix: str, width: int, height: int, input_name: str = "filename_prefix"
) -> SaveTarget:
    """Resolve a filename prefix (tokens, subfolders) under root; refuses paths leaving root."""
    expanded = expand_prefix_tokens(prefix, width, height)
    relative = Path(expanded.replace("\\", "/"))
    root = root.resolve()
    folder = (root / relative).parent.resolve()
    if relative.is_absolute() or (folder != root and root not in folder.parents):
        raise NodeInputError(
            input_name, f"{prefix!r} would save outside the output folder; use a relative prefix"
        )
    if not relative.name or relative.name in (".", ".."):
        raise NodeInputError(
            input_name, f"{prefix!r} has no file name part; end it with a name like 'ComfyUI'"
        )
    folder.mkdir(parents=True, exist_ok=True)
    subfolder = folder.relative_to(root).as_posix()
    return SaveTarget(
        folder, relative.name, next_counter(folder, relative.name), "" if subfolder == "." else subfolder
    )


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
    target = save_target(root, prefix, frames[0].width, frames[0].height)
    metadata = png_info(ctx.prompt, ctx.extra_pnginfo)
    results = []
    for index, frame in enumerate(frames):
        ctx.check_cancelled()
        name = target.write(
            ".png",
            index,
            lambda h, f=frame: f.save(h, format="PNG", pnginfo=metadata, compress_level=compress_level),
        )
        results.append({"filename": name, "subfolder": target.subfolder, "type": dir_type})
    return results


class SaveImage(Node):
    """Saves images to the output directory as PNG, with the workflow embedded."""

    class_type = "SaveImage"
    display_name = "Save Image"
    category = "image"
    description = "Saves the input images to your ComfyUI output directory."
    output_node = True
    hidden = HIDDEN_METADATA

    class Inputs(NodeInputs):
        images: Image = Input(description="The images to save.")
        filename_prefix: str = Input(
            "ComfyUI",
            description="The prefix for the file to save. This may include formatting information such as "
            "%date:yyyy-MM-dd% or %Empty Latent Image.width% to include values from nodes.",
        )

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
    description = "Saves the input images to the temp directory to show them."
    output_node = True
    hidden = HIDDEN_METADATA

    class Inputs(NodeInputs):
        images: Image = Input(description="The images to preview.")

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
    root = dirs[dir_type].resolve()
    path = (root / name).resolve()
    if not name or Path(name).is_absolute() or root not in path.parents:
        raise NodeInputError(input_name, f"{name!r} is not a file name inside the {dir_type} folder")
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


NODES = [SaveImage, PreviewImage, LoadImage]

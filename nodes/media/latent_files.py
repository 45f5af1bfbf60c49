"""ComfyUI's `.latent` file format (safetensors): reading, writing and listing latent files.

A `.latent` file holds `latent_tensor` (float32 [B, C, h, w], VAE space) and an empty
`latent_format_version_0` marker; its metadata carries the prompt and workflow as JSON text. Files
without the marker predate ComfyUI's switch to unscaled latents and are divided by 0.18215 on load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save

from engine import NodeInputError, PathRefused, resolve_relative
from nodes.diffusion.checkpoint_io import read_safetensors

LATENT_KEY = "latent_tensor"
VERSION_MARKER = "latent_format_version_0"
LATENT_SUFFIX = ".latent"
# Files written before the marker existed stored latents multiplied by SD1.x's scale factor.
LEGACY_SCALE = 0.18215


def read_latent_file(path: Path) -> torch.Tensor:
    """The float32 VAE-space latent of a `.latent` file, legacy (unmarked) files rescaled."""
    tensors = read_safetensors(path)
    if LATENT_KEY not in tensors:
        raise NodeInputError("latent", f"{path.name} has no {LATENT_KEY!r} tensor; it is not a .latent file")
    multiplier = 1.0 if VERSION_MARKER in tensors else 1.0 / LEGACY_SCALE
    return tensors[LATENT_KEY].float() * multiplier


def list_latent_files(input_dir: Path) -> list[str]:
    """`.latent` files in the input folder, relative POSIX names, sorted."""
    if not input_dir.is_dir():
        return []
    return sorted(
        p.relative_to(input_dir).as_posix() for p in input_dir.rglob(f"*{LATENT_SUFFIX}") if p.is_file()
    )


def resolve_input_latent(input_dir: Path, name: str) -> Path:
    """A name inside the input folder; refuses missing files and paths that leave it."""
    try:
        path = resolve_relative(Path(input_dir), name)
    except PathRefused as exc:
        raise NodeInputError(
            "latent", f"{name!r} is outside the input folder or not a plain name ({exc.message}); pick a file"
        ) from None
    if not path.is_file():
        raise NodeInputError("latent", f"{name!r} does not exist in the input folder; pick a .latent file")
    return path


def latent_bytes(samples: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """The serialized `.latent` file (tensor, version marker, JSON metadata)."""

    tensors = {LATENT_KEY: samples.contiguous().cpu(), VERSION_MARKER: torch.tensor([])}
    return save(tensors, metadata=metadata or None)

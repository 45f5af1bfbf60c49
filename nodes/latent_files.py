"""SaveLatent / LoadLatent with ComfyUI's `.latent` file format (safetensors).

A `.latent` file holds `latent_tensor` (float32 [B, C, h, w], VAE space) and an empty
`latent_format_version_0` marker; its metadata carries the prompt and workflow as JSON text. Files
without the marker predate ComfyUI's switch to unscaled latents and are divided by 0.18215 on load.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from engine import (
    Input,
    Node,
    NodeInputError,
    NodeInputs,
    NodeOutputs,
    Output,
    PathRefused,
    RunContext,
    atomic_write_bytes,
    resolve_relative,
)
from engine.media_metadata import metadata_items
from nodes.diffusion.checkpoint_io import read_safetensors
from nodes.save_paths import OutputFileNode, save_target
from nodes.types import Latent

LATENT_KEY = "latent_tensor"
VERSION_MARKER = "latent_format_version_0"
LATENT_SUFFIX = ".latent"
# Files written before the marker existed stored latents multiplied by SD1.x's scale factor.
LEGACY_SCALE = 0.18215


def write_latent_file(path: Path | Any, samples: torch.Tensor, metadata: dict[str, str]) -> None:
    """Write a ComfyUI `.latent` file (tensor, version marker, JSON metadata)."""
    tensors = {LATENT_KEY: samples.contiguous().cpu(), VERSION_MARKER: torch.tensor([])}
    data = _safetensors_bytes(tensors, metadata)
    atomic_write_bytes(Path(path), data)


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


def _resolve_input(input_dir: Path, name: str) -> Path:
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


class SaveLatent(OutputFileNode):
    """Writes a latent to the output folder as a `.latent` file ComfyUI can load."""

    class_type = "SaveLatent"
    display_name = "Save Latent"
    category = "_for_testing"
    description = "Saves the latent (VAE space) with the prompt and workflow in its metadata."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="The latent to save.")
        filename_prefix: str = Input("latents/ComfyUI", description="The prefix for the file to save.")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Write `{prefix}_{counter:05}_.latent` and list it as this node's UI `latents`."""
        target = save_target(ctx.output_dir, inputs.filename_prefix, 0, 0)
        metadata = dict(metadata_items(ctx.prompt, ctx.extra_pnginfo))
        samples = inputs.samples.samples
        name = target.write(LATENT_SUFFIX, 0, lambda handle: handle.write(_latent_bytes(samples, metadata)))
        ctx.set_ui({"latents": [{"filename": name, "subfolder": target.subfolder, "type": "output"}]})
        return self.Outputs()


def _latent_bytes(samples: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """The serialized `.latent` file."""
    tensors = {LATENT_KEY: samples.contiguous().cpu(), VERSION_MARKER: torch.tensor([])}
    return _safetensors_bytes(tensors, metadata)


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    from safetensors.torch import save

    return save(tensors, metadata=metadata or None)


class LoadLatent(Node):
    """Loads a `.latent` file from the input folder."""

    class_type = "LoadLatent"
    display_name = "Load Latent"
    category = "_for_testing"
    description = "Loads a latent saved by SaveLatent (ComfyUI's .latent format)."

    class Inputs(NodeInputs):
        latent: str = Input(description="A .latent file in the input folder.", combo_source="input_latents")

    class Outputs(NodeOutputs):
        LATENT: Latent = Output(name="LATENT", description="The loaded latent.")

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """The file's sha256, so replacing the file re-runs the node."""
        if env is None or values.get("latent") is None:
            return None
        path = _resolve_input(Path(env.input_dir), str(values["latent"]))
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Refuse missing files before anything runs."""
        if env is None or values.get("latent") is None:
            return None
        try:
            _resolve_input(Path(env.input_dir), str(values["latent"]))
        except NodeInputError as exc:
            return exc.message
        return None

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Read the tensor (legacy files rescaled)."""
        return self.Outputs(
            LATENT=Latent(samples=read_latent_file(_resolve_input(ctx.input_dir, inputs.latent)))
        )


NODES = [SaveLatent, LoadLatent]

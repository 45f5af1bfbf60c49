"""SaveLatent / LoadLatent: latents to and from ComfyUI's `.latent` files."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext, metadata_items
from nodes.media.latent_files import LATENT_SUFFIX, latent_bytes, read_latent_file, resolve_input_latent
from nodes.media.save_paths import PREFIX_TIP, OutputFileNode, save_target
from nodes.types import Latent


class SaveLatent(OutputFileNode):
    """Writes a latent to the output folder as a `.latent` file ComfyUI can load."""

    class_type = "SaveLatent"
    display_name = "Save Latent"
    category = "_for_testing"
    description = "Saves the latent (VAE space) with the prompt and workflow in its metadata."

    class Inputs(NodeInputs):
        samples: Latent = Input(description="Written as a .latent file (safetensors) with its batch.")
        filename_prefix: str = Input("latents/ComfyUI", description=PREFIX_TIP)

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Write `{prefix}_{counter:05}_.latent` and list it as this node's UI `latents`."""
        target = save_target(ctx.output_dir, inputs.filename_prefix, 0, 0)
        metadata = dict(metadata_items(ctx.prompt, ctx.extra_pnginfo))
        samples = inputs.samples.samples
        name = target.write(LATENT_SUFFIX, 0, lambda handle: handle.write(latent_bytes(samples, metadata)))
        ctx.set_ui({"latents": [{"filename": name, "subfolder": target.subfolder, "type": "output"}]})
        return self.Outputs()


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
        path = resolve_input_latent(Path(env.input_dir), str(values["latent"]))
        return hashlib.sha256(path.read_bytes()).hexdigest()

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Refuse missing files before anything runs."""
        if env is None or values.get("latent") is None:
            return None
        try:
            resolve_input_latent(Path(env.input_dir), str(values["latent"]))
        except NodeInputError as exc:
            return exc.message
        return None

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Read the tensor (legacy files rescaled)."""
        return self.Outputs(
            LATENT=Latent(samples=read_latent_file(resolve_input_latent(ctx.input_dir, inputs.latent)))
        )


NODES = [SaveLatent, LoadLatent]

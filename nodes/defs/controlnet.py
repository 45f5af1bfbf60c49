"""ControlNet nodes: load a control model, attach it (with a hint image) to conditioning, union task type.

Attaching never runs the control model: each conditioning entry gets a ControlApplication linked to the
one it had before, and the sampler evaluates the chain at every step where it is active.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.controlnet import inspect_control_file
from nodes.diffusion.model_handle import DiffusionModel, VaeHandle
from nodes.types import Conditioning, ControlApplication, ControlNet, Image, Mask

# ComfyUI's union ControlNet task ids (its control_types table), in its order.
UNION_TYPES = {
    "openpose": 0,
    "depth": 1,
    "hed/pidi/scribble/ted": 2,
    "canny/lineart/anime_lineart/mlsd": 3,
    "normal": 4,
    "segment": 5,
    "tile": 6,
    "repaint": 7,
}
UnionType = Literal[
    "auto",
    "openpose",
    "depth",
    "hed/pidi/scribble/ted",
    "canny/lineart/anime_lineart/mlsd",
    "normal",
    "segment",
    "tile",
    "repaint",
]
STRENGTH: dict[str, Any] = {"ge": 0.0, "le": 10.0, "step": 0.01}
PERCENT: dict[str, Any] = {"ge": 0.0, "le": 1.0, "step": 0.001}


def load_control_net(ctx: RunContext, name: str, base: DiffusionModel | None = None) -> ControlNet:
    """The CONTROL_NET handle of a file in models/controlnet, its layout checked from the tensors."""
    path = Path(ctx.model_paths.resolve("controlnet", name))
    kind, layout, family = inspect_control_file(path)
    stem = path.stem
    # Shuffle ControlNets average their residuals over the image; published files are told apart by name.
    pooling = stem.endswith(("_shuffle", "_shuffle_fp16"))
    return ControlNet(str(path), kind, layout, family, base_model=base, global_average_pooling=pooling)


def _check_family(net: ControlNet) -> None:
    if net.layout == "ldm_difference" and net.base_model is None:
        raise NodeInputError(
            "control_net_name", "this ControlNet holds differences to a base model: use DiffControlNetLoader"
        )


class ControlNetLoader(Node):
    """Loads a ControlNet (original, diffusers or control-lora layout) from models/controlnet."""

    class_type = "ControlNetLoader"
    display_name = "Load ControlNet Model"
    category = "loaders"
    description = "Picks a ControlNet file; its layout and base family are recognised from the tensors."

    class Inputs(NodeInputs):
        control_net_name: str = Input(description="A file from models/controlnet.", combo_source="controlnet")

    class Outputs(NodeOutputs):
        CONTROL_NET: ControlNet = Output(
            name="CONTROL_NET", description="The ControlNet, loaded when sampling."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Check the file's layout now; weights load on first use by a sampler."""
        net = load_control_net(ctx, inputs.control_net_name)
        _check_family(net)
        return self.Outputs(CONTROL_NET=net)


class DiffControlNetLoader(Node):
    """Loads a ControlNet stored as differences to a base model, adding that model's weights back."""

    class_type = "DiffControlNetLoader"
    display_name = "Load ControlNet Model (diff)"
    category = "loaders"
    description = "For ControlNet files that hold only the changes to a base UNet; other files load as usual."

    class Inputs(NodeInputs):
        model: DiffusionModel = Input(description="The base model the differences were taken from.")
        control_net_name: str = Input(description="A file from models/controlnet.", combo_source="controlnet")

    class Outputs(NodeOutputs):
        CONTROL_NET: ControlNet = Output(
            name="CONTROL_NET", description="The ControlNet, loaded when sampling."
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Remember the base model; the weights are summed on first use."""
        return self.Outputs(CONTROL_NET=load_control_net(ctx, inputs.control_net_name, inputs.model))


def hint_pixels(image: Image) -> torch.Tensor:
    """IMAGE [B, H, W, 3] as the control hint [B, 3, H, W]."""
    return image.pixels.movedim(-1, 1)


def attach(
    sides: list[Conditioning], net: ControlNet, hint: torch.Tensor, strength: float, start: float, end: float
) -> list[Conditioning]:
    """Each entry gets one application per distinct previous control, shared across the sides."""
    made: dict[int, ControlApplication] = {}
    out = []
    for cond in sides:
        entries = []
        for e in cond.entries:
            key = id(e.control)
            if key not in made:
                made[key] = ControlApplication(net, hint, strength, start, end, previous=e.control)
            entries.append(replace(e, control=made[key]))
        out.append(Conditioning(entries=tuple(entries)))
    return out


class ControlNetApply(Node):
    """The older apply node: one conditioning, full schedule; the sampler also applies it to the negative."""

    class_type = "ControlNetApply"
    display_name = "Apply ControlNet (OLD)"
    category = "conditioning/controlnet"
    deprecated = True
    description = "Steers a conditioning with a ControlNet and a hint image over the whole schedule."

    class Inputs(NodeInputs):
        conditioning: Conditioning = Input(description="The conditioning to steer.")
        control_net: ControlNet = Input(description="The ControlNet to apply.")
        image: Image = Input(description="The hint image (edges, depth, pose...) the ControlNet follows.")
        strength: float = Input(
            1.0, description="Scale of the ControlNet's effect; 0 leaves it off.", **STRENGTH
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(name="CONDITIONING", description="The steered conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Link a new application onto each entry's chain."""
        if inputs.strength == 0:
            return self.Outputs(CONDITIONING=inputs.conditioning)
        hint = hint_pixels(inputs.image)
        entries = tuple(
            replace(
                e,
                control=ControlApplication(
                    inputs.control_net, hint, inputs.strength, previous=e.control, apply_to_uncond=True
                ),
            )
            for e in inputs.conditioning.entries
        )
        return self.Outputs(CONDITIONING=Conditioning(entries=entries))


class ControlNetApplyAdvanced(Node):
    """Applies a ControlNet to both conditionings over part of the schedule."""

    class_type = "ControlNetApplyAdvanced"
    display_name = "Apply ControlNet"
    category = "conditioning/controlnet"
    description = (
        "Steers positive and negative with a ControlNet and a hint image between two schedule points."
    )

    class Inputs(NodeInputs):
        positive: Conditioning = Input(description="The positive conditioning to steer.")
        negative: Conditioning = Input(description="The negative conditioning to steer.")
        control_net: ControlNet = Input(description="The ControlNet to apply.")
        image: Image = Input(description="The hint image (edges, depth, pose...) the ControlNet follows.")
        strength: float = Input(
            1.0, description="Scale of the ControlNet's effect; 0 leaves it off.", **STRENGTH
        )
        start_percent: float = Input(
            0.0, description="Point of the schedule where it starts (0 = first step).", **PERCENT
        )
        end_percent: float = Input(
            1.0, description="Point of the schedule where it stops (1 = last step).", **PERCENT
        )
        vae: VaeHandle | None = Input(
            None,
            optional=True,
            description="Only for ControlNets that take a latent hint; SD1.x/SDXL ones ignore it.",
        )

    class Outputs(NodeOutputs):
        positive: Conditioning = Output(name="positive", description="The steered positive conditioning.")
        negative: Conditioning = Output(name="negative", description="The steered negative conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Link one shared application per previous control onto both sides' entries."""
        if inputs.strength == 0:
            return self.Outputs(positive=inputs.positive, negative=inputs.negative)
        pos, neg = attach(
            [inputs.positive, inputs.negative],
            inputs.control_net,
            hint_pixels(inputs.image),
            inputs.strength,
            inputs.start_percent,
            inputs.end_percent,
        )
        return self.Outputs(positive=pos, negative=neg)


class ControlNetInpaintingAliMamaApply(Node):
    """The inpainting variant of Apply ControlNet: image, mask and VAE for inpainting ControlNets."""

    class_type = "ControlNetInpaintingAliMamaApply"
    category = "conditioning/controlnet"
    description = (
        "For inpainting ControlNets that take the masked image and the mask; with other ControlNets it "
        "applies the image like Apply ControlNet."
    )

    class Inputs(NodeInputs):
        positive: Conditioning = Input(description="The positive conditioning to steer.")
        negative: Conditioning = Input(description="The negative conditioning to steer.")
        control_net: ControlNet = Input(description="The ControlNet to apply.")
        vae: VaeHandle = Input(description="The VAE of the model being sampled.")
        image: Image = Input(description="The picture being inpainted.")
        mask: Mask = Input(description="Where to repaint (1) or keep (0).")
        strength: float = Input(
            1.0, description="Scale of the ControlNet's effect; 0 leaves it off.", **STRENGTH
        )
        start_percent: float = Input(
            0.0, description="Point of the schedule where it starts (0 = first step).", **PERCENT
        )
        end_percent: float = Input(
            1.0, description="Point of the schedule where it stops (1 = last step).", **PERCENT
        )

    class Outputs(NodeOutputs):
        positive: Conditioning = Output(name="positive", description="The steered positive conditioning.")
        negative: Conditioning = Output(name="negative", description="The steered negative conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """SD-family ControlNets take no mask channel, so the image is applied as it is."""
        if inputs.strength == 0:
            return self.Outputs(positive=inputs.positive, negative=inputs.negative)
        pos, neg = attach(
            [inputs.positive, inputs.negative],
            inputs.control_net,
            hint_pixels(inputs.image),
            inputs.strength,
            inputs.start_percent,
            inputs.end_percent,
        )
        return self.Outputs(positive=pos, negative=neg)


class SetUnionControlNetType(Node):
    """Chooses the task a union ControlNet (ControlNet++) performs."""

    class_type = "SetUnionControlNetType"
    category = "conditioning/controlnet"
    description = "Union ControlNets handle several hint kinds; this says which kind the hint image is."

    class Inputs(NodeInputs):
        control_net: ControlNet = Input(description="The union ControlNet.")
        type: UnionType = Input(description="The hint kind; auto lets the ControlNet work it out.")

    class Outputs(NodeOutputs):
        CONTROL_NET: ControlNet = Output(name="CONTROL_NET", description="The ControlNet with the task set.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """A copy of the handle carrying the task id (no id for auto)."""
        task = UNION_TYPES.get(inputs.type)
        types = () if task is None else (task,)
        return self.Outputs(CONTROL_NET=replace(inputs.control_net, control_type=types))


NODES = [
    ControlNetLoader,
    DiffControlNetLoader,
    ControlNetApply,
    ControlNetApplyAdvanced,
    ControlNetInpaintingAliMamaApply,
    SetUnionControlNetType,
]

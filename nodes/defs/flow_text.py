"""FLUX and SD3 text encode nodes: CLIPTextEncodeFlux, CLIPTextEncodeSD3."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from engine import Input, Node, NodeInputs, NodeOutputs, Output, RunContext, UserFacingError
from nodes.defs.text import _EmbeddingChecks, embedding_library
from nodes.diffusion.flow_text import (
    FlowTextStack,
    embedding_lookups,
    encode_tokens,
    sd3_tokens,
    tokenize_all,
)
from nodes.diffusion.model_handle import ClipHandle
from nodes.types import Conditioning


class FlowClipError(UserFacingError):
    """A CLIP of another family given to a FLUX/SD3-only node."""

    code = "clip_family_mismatch"


def flow_stack(ctx: RunContext, clip: ClipHandle, family: str, node: str) -> FlowTextStack:
    """The loaded encoders of a FLUX or SD3 CLIP, refusing other families."""
    stack = clip.stack(ctx.models)
    if not isinstance(stack, FlowTextStack) or stack.family != family:
        raise FlowClipError(f"{node}: input 'clip' is a {stack.family} CLIP; this node needs a {family} CLIP")
    return stack


class _CondOut(NodeOutputs):
    """The one CONDITIONING output of these nodes."""

    CONDITIONING: Conditioning = Output(
        name="CONDITIONING", description="The prompts' token embeddings and pooled vector for a sampler."
    )


class CLIPTextEncodeFlux(_EmbeddingChecks, Node):
    """FLUX text encode with separate CLIP-L and T5 prompts and the distilled guidance value."""

    class_type = "CLIPTextEncodeFlux"
    prompt_inputs = ("clip_l", "t5xxl")
    category = "advanced/conditioning/flux"
    description = "Encodes a CLIP-L prompt (pooled vector) and a T5 prompt (tokens) for FLUX, with guidance."

    class Inputs(NodeInputs):
        clip: ClipHandle = Input(description="A FLUX CLIP (DualCLIPLoader, type flux).")
        clip_l: str = Input(
            description="Prompt for CLIP-L, which gives FLUX its pooled vector.",
            multiline=True,
            dynamicPrompts=True,
        )
        t5xxl: str = Input(
            description="Prompt for T5-XXL, whose tokens FLUX attends to.",
            multiline=True,
            dynamicPrompts=True,
        )
        guidance: float = Input(
            3.5,
            ge=0.0,
            le=100.0,
            step=0.1,
            description="Guidance strength baked into FLUX dev (distilled guidance).",
        )

    class Outputs(_CondOut):
        """The FLUX conditioning."""

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Tokenize each prompt for its encoder and encode both."""
        stack = flow_stack(ctx, inputs.clip, "flux", self.class_type)
        lookups = embedding_lookups(stack, embedding_library(ctx))
        tokens = tokenize_all("flux", inputs.clip_l, lookups)
        tokens["t5xxl"] = tokenize_all("flux", inputs.t5xxl, lookups)["t5xxl"]
        entry = encode_tokens(stack, tokens, inputs.clip.layer)
        inputs.clip.release(ctx.models)
        entry = replace(entry, extras={**entry.extras, "guidance": inputs.guidance})
        return self.Outputs(CONDITIONING=Conditioning(entries=(entry,)))


class CLIPTextEncodeSD3(_EmbeddingChecks, Node):
    """SD3 text encode with separate CLIP-L, CLIP-G and T5 prompts."""

    class_type = "CLIPTextEncodeSD3"
    prompt_inputs = ("clip_l", "clip_g", "t5xxl")
    category = "advanced/conditioning"
    description = "Encodes three prompts for SD3's CLIP-L, CLIP-G and T5-XXL encoders."

    class Inputs(NodeInputs):
        clip: ClipHandle = Input(description="An SD3 CLIP (TripleCLIPLoader, or a loader with type sd3).")
        clip_l: str = Input(description="Prompt for CLIP-L.", multiline=True, dynamicPrompts=True)
        clip_g: str = Input(description="Prompt for CLIP-G.", multiline=True, dynamicPrompts=True)
        t5xxl: str = Input(description="Prompt for T5-XXL.", multiline=True, dynamicPrompts=True)
        empty_padding: Literal["none", "empty_prompt"] = Input(
            description="none: an empty prompt leaves its encoder out; empty_prompt: it is encoded as ''."
        )

    class Outputs(_CondOut):
        """The SD3 conditioning."""

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Tokenize the three prompts with SD3's rules and encode them."""
        stack = flow_stack(ctx, inputs.clip, "sd3", self.class_type)
        tokens = sd3_tokens(
            inputs.clip_l, inputs.clip_g, inputs.t5xxl, inputs.empty_padding == "empty_prompt"
        )
        entry = encode_tokens(stack, tokens, inputs.clip.layer)
        inputs.clip.release(ctx.models)
        return self.Outputs(CONDITIONING=Conditioning(entries=(entry,)))


NODES = [CLIPTextEncodeFlux, CLIPTextEncodeSD3]

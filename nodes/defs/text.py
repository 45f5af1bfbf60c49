"""Text conditioning nodes: CLIPTextEncode, CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch

from engine import Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, RunContext
from nodes.diffusion.embeddings import (
    EmbeddingLibrary,
    find_embedding,
    missing_embeddings,
    missing_message,
    prompt_embedding_names,
)
from nodes.diffusion.flow_text import FlowTextStack, encode_flow_prompt
from nodes.diffusion.model_handle import ClipHandle
from nodes.diffusion.text_encode import (
    encode_lookup_for,
    encode_prompt,
    encode_windows,
    pad_windows,
    windows,
)
from nodes.types import CondEntry, Conditioning


def embedding_library(ctx: RunContext) -> EmbeddingLibrary:
    """The models folder's textual-inversion embeddings."""
    return EmbeddingLibrary(ctx.model_paths.folder("embeddings"))


def check_embeddings(values: Mapping[str, Any], env: Any, names: tuple[str, ...]) -> str | None:
    """A message naming every `embedding:` of the constant prompts that has no file, else None."""
    if env is None or getattr(env, "model_paths", None) is None:
        return None
    folder = env.model_paths.folder("embeddings")
    missing = [
        m for n in names if isinstance(values.get(n), str) for m in missing_embeddings(values[n], folder)
    ]
    return missing_message(missing, folder) if missing else None


def embedding_fingerprint(values: Mapping[str, Any], env: Any, names: tuple[str, ...]) -> Hashable | None:
    """Path, size and mtime of every embedding file the constant prompts use, so editing one re-encodes."""
    if env is None or getattr(env, "model_paths", None) is None:
        return None
    folder = env.model_paths.folder("embeddings")
    files = []
    for n in names:
        if isinstance(values.get(n), str):
            for name, stripped in prompt_embedding_names(values[n]):
                path = find_embedding(folder, name) or find_embedding(folder, stripped)
                if path is not None:
                    stat = path.stat()
                    files.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(files) or None


def encode(ctx: RunContext, clip: ClipHandle, text: str) -> CondEntry:
    """Encode one prompt with the handle's encoders and layer choice."""
    stack = clip.stack(ctx.models)
    if isinstance(stack, FlowTextStack):
        entry = encode_flow_prompt(stack, text, clip.layer, embedding_library(ctx))
    else:
        device, dtype = torch.device(clip.device), clip.compute_dtype
        entry = encode_prompt(stack, text, clip.layer, device, dtype, embedding_library(ctx))
    # The local reference goes first: a released encoder can only be freed once nothing holds it.
    del stack
    clip.release(ctx.models)
    return entry


class _EmbeddingChecks:
    """Validation and cache key of the prompt inputs named in `prompt_inputs` (embedding files)."""

    prompt_inputs: tuple[str, ...] = ("text",)

    @classmethod
    def validate_inputs(cls, values: Mapping[str, Any], env: Any) -> str | None:
        """Refuse prompts naming embeddings that are not in models/embeddings."""
        return check_embeddings(values, env, cls.prompt_inputs)

    @classmethod
    def fingerprint(cls, values: Mapping[str, Any], env: Any) -> Hashable | None:
        """The embedding files the prompts use (None without any), so editing one re-encodes."""
        return embedding_fingerprint(values, env, cls.prompt_inputs)


class CLIPTextEncode(_EmbeddingChecks, Node):
    """Encodes a prompt into conditioning (emphasis, long prompts, clip skip, SDXL)."""

    class_type = "CLIPTextEncode"
    display_name = "CLIP Text Encode (Prompt)"
    category = "conditioning"
    description = (
        "Turns a prompt into conditioning: (word:1.2) emphasis, prompts past 75 tokens and clip skip work."
    )

    class Inputs(NodeInputs):
        text: str = Input(
            description="The prompt; (word:1.2) raises a word's weight, (word:0.8) lowers it.",
            multiline=True,
            dynamicPrompts=True,
        )
        clip: ClipHandle = Input(
            description="The text encoder from a checkpoint loader (or a LoRA or clip-skip node)."
        )

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(
            name="CONDITIONING",
            description="The prompt's token embeddings (and pooled vector) for a sampler.",
        )

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Tokenize, encode and weight the prompt."""
        return self.Outputs(CONDITIONING=Conditioning(entries=(encode(ctx, inputs.clip, inputs.text),)))


_SIZE: dict[str, Any] = {"ge": 0, "le": 16384, "step": 8}


class CLIPTextEncodeSDXL(_EmbeddingChecks, Node):
    """SDXL encode with separate CLIP-L / bigG prompts and explicit size conditioning."""

    class_type = "CLIPTextEncodeSDXL"
    prompt_inputs = ("text_g", "text_l")
    category = "advanced/conditioning"
    description = "Encodes two prompts for SDXL's two text encoders with size and crop conditioning."

    class Inputs(NodeInputs):
        clip: ClipHandle = Input(description="An SDXL CLIP model.")
        width: int = Input(1024, description="Original image width.", **_SIZE)
        height: int = Input(1024, description="Original image height.", **_SIZE)
        crop_w: int = Input(0, description="Crop left offset.", **_SIZE)
        crop_h: int = Input(0, description="Crop top offset.", **_SIZE)
        target_width: int = Input(1024, description="Target width.", **_SIZE)
        target_height: int = Input(1024, description="Target height.", **_SIZE)
        text_g: str = Input(
            description="Prompt for the OpenCLIP bigG encoder.", multiline=True, dynamicPrompts=True
        )
        text_l: str = Input(description="Prompt for the CLIP-L encoder.", multiline=True, dynamicPrompts=True)

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(name="CONDITIONING", description="SDXL conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode each prompt with its encoder, concatenate, attach size conditioning."""
        if inputs.clip.family != "sdxl":
            raise NodeInputError("clip", f"needs an SDXL base CLIP, got {inputs.clip.family}")
        stack = inputs.clip.stack(ctx.models)
        specs = {s.name: s for s in stack.specs}
        texts = {"clip_l": inputs.text_l, "clip_g": inputs.text_g}
        library = embedding_library(ctx)
        wins = {
            name: windows(texts[name], spec.pad_token, encode_lookup_for(stack, spec, library))
            for name, spec in specs.items()
        }
        # The shorter prompt gets empty-prompt windows (each encoder's own padding), as ComfyUI does.
        count = max(len(w) for w in wins.values())
        out = {
            name: encode_windows(
                stack.encoders[name],
                spec,
                pad_windows(wins[name], count, spec.pad_token),
                inputs.clip.layer,
                torch.device(inputs.clip.device),
            )
            for name, spec in specs.items()
        }
        (l_emb, _), (g_emb, g_pooled) = out["clip_l"], out["clip_g"]
        extras = {
            k: getattr(inputs, k)
            for k in ("width", "height", "crop_w", "crop_h", "target_width", "target_height")
        }
        entry = CondEntry(embeds=torch.cat([l_emb, g_emb], -1), pooled=g_pooled, extras=extras)
        return self.Outputs(CONDITIONING=Conditioning(entries=(entry,)))


class CLIPTextEncodeSDXLRefiner(_EmbeddingChecks, Node):
    """SDXL refiner encode with aesthetic score and size conditioning."""

    class_type = "CLIPTextEncodeSDXLRefiner"
    category = "advanced/conditioning"
    description = "Encodes a prompt for the SDXL refiner with an aesthetic score."

    class Inputs(NodeInputs):
        ascore: float = Input(6.0, description="Aesthetic score.", ge=0.0, le=1000.0, step=0.01)
        width: int = Input(1024, description="Image width.", **_SIZE)
        height: int = Input(1024, description="Image height.", **_SIZE)
        text: str = Input(description="The prompt.", multiline=True, dynamicPrompts=True)
        clip: ClipHandle = Input(description="An SDXL refiner CLIP model.")

    class Outputs(NodeOutputs):
        CONDITIONING: Conditioning = Output(name="CONDITIONING", description="Refiner conditioning.")

    def run(self, ctx: RunContext, inputs: Inputs) -> Outputs:
        """Encode with bigG and attach aesthetic score and size."""
        entry = encode(ctx, inputs.clip, inputs.text)
        extras = {"aesthetic_score": inputs.ascore, "width": inputs.width, "height": inputs.height}
        return self.Outputs(
            CONDITIONING=Conditioning(entries=(CondEntry(entry.embeds, entry.pooled, extras),))
        )


NODES = [CLIPTextEncode, CLIPTextEncodeSDXL, CLIPTextEncodeSDXLRefiner]

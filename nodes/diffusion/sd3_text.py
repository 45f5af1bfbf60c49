"""The text encoders inside an all-in-one SD3/SD3.5 or FLUX checkpoint (`text_encoders.<kind>.transformer.*`).

ComfyUI saves SD3 checkpoints with CLIP-L and CLIP-G in transformers' naming and T5-XXL in its own
T5 naming under these prefixes; any of the three may be absent. All-in-one FLUX files (such as the
published fp8 FLUX.1 dev/schnell checkpoints) hold CLIP-L and T5-XXL the same way. They are built exactly
like the standalone files TripleCLIPLoader / DualCLIPLoader read, so both routes give the same conditioning.
"""

from __future__ import annotations

import torch

from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.flow_text import FlowTextStack
from nodes.diffusion.sd3 import FAMILY, TEXT_PREFIX
from nodes.diffusion.t5 import build_t5
from nodes.diffusion.text_encoders import COMPUTE_DTYPE, build_clip, encoder_spec

KINDS = ("clip_l", "clip_g", "t5xxl")
FLUX_TEXT_FAMILY = "flux"
# Per CLIP family: the encoders its checkpoints hold, and the loader to use when a file holds none.
_FAMILY_KINDS = {
    FAMILY: (KINDS, "CLIP-L, CLIP-G and T5-XXL with TripleCLIPLoader"),
    FLUX_TEXT_FAMILY: (
        ("clip_l", "t5xxl"),
        "CLIP-L and T5-XXL with DualCLIPLoader (type flux)",
    ),
}


def encoder_prefix(kind: str) -> str:
    """Where one encoder's tensors sit in the checkpoint."""
    return f"{TEXT_PREFIX}{kind}.transformer."


def _layout(sub: dict[str, torch.Tensor]) -> str:
    if any(k.startswith("text_model.") for k in sub):
        return "hf"
    if any(k.startswith("transformer.resblocks.") for k in sub):
        return "open_clip"
    raise CheckpointFormatError(
        f"a CLIP text encoder in an SD3 checkpoint has unknown keys, e.g. {sorted(sub)[:2]}"
    )


def build_sd3_text(sd: dict[str, torch.Tensor], name: str, family: str = FAMILY) -> FlowTextStack:
    """The SD3 (or, with `family` "flux", FLUX) CLIP from a checkpoint's tensors: the encoders it holds."""
    kinds, loaders = _FAMILY_KINDS[family]
    stray = sorted(
        k for k in KINDS if k not in kinds and any(key.startswith(encoder_prefix(k)) for key in sd)
    )
    if stray:
        raise CheckpointFormatError(f"{name} holds {', '.join(stray)}, which a {family} model does not use")
    encoders: dict[str, torch.nn.Module] = {}
    specs = []
    for kind in kinds:
        prefix = encoder_prefix(kind)
        sub = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sub:
            continue
        if kind == "t5xxl":
            encoders[kind] = build_t5(sub, COMPUTE_DTYPE)
            continue
        spec = encoder_spec(family, kind, _layout(sub))  # type: ignore[arg-type]
        assert spec is not None
        encoders[kind] = build_clip(spec, sub, f"{name} {kind}")
        specs.append(spec)
    if not encoders:
        raise CheckpointFormatError(f"{name} holds no text encoders ('{TEXT_PREFIX}*'); load {loaders}")
    return FlowTextStack(family, encoders, specs)

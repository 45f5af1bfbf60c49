"""Standalone text encoder files (models/text_encoders, models/clip): what each holds, and building it.

A diffusers/transformers text encoder folder (config.json + model.safetensors, or shards with their
index, e.g. a FLUX pipeline's text_encoder_2/) is taken like a file holding the same tensors.

Kinds are told from the tensors, never from file names:
  * CLIP in transformers' layout (`text_model.encoder.layers.N.*`): depth 32 is CLIP-G (bigG), depth 24
    CLIP-H, other depths CLIP-L, as ComfyUI decides; files shallower than CLIP-L's 12 layers (test
    files) count as CLIP-G when they carry a `text_projection`, which published CLIP-L files lack;
  * CLIP in OpenCLIP's layout (`transformer.resblocks.N.*`, e.g. bigG as Stability ships it) by the
    same depth rule;
  * T5 v1.1 encoders (`shared.weight`, `encoder.block.N.*` with gated `wi_0`/`wi_1`) as T5-XXL.
CLIP weights are held as float16 and T5 weights in their file dtype (float16, bfloat16, fp8), both
widened to float32 one layer at a time while running, which is what ComfyUI computes with.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
from diffusers.loaders import single_file_utils as sfu
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from engine import UserFacingError
from nodes.diffusion import families
from nodes.diffusion.families import TextEncoderSpec
from nodes.diffusion.flow_text import FLOW_FAMILIES, FlowTextStack, flow_specs
from nodes.diffusion.stored_weights import widen_while_running
from nodes.diffusion.t5 import DETECT_KEY as T5_GATED_KEY
from nodes.diffusion.t5 import EMBED_KEY as T5_EMBED_KEY
from nodes.diffusion.t5 import build_t5
from nodes.diffusion.text_encode import ClipStack
from nodes.diffusion.weight_folder import read_model_weights, signature, tensor_shapes, weight_bytes

TextEncoderKind = Literal["clip_l", "clip_g", "clip_h", "t5xxl"]
COMPUTE_DTYPE = torch.float32
CLIP_STORAGE = torch.float16
_EXPECTED = (
    "expected a CLIP-L, CLIP-G (bigG, transformers or OpenCLIP layout) or T5-XXL text encoder file "
    "('text_model.encoder.layers.*', 'transformer.resblocks.*' or 'encoder.block.*' + 'shared.weight' keys)"
)


class TextEncoderFileError(UserFacingError):
    """A text encoder file whose tensors are not a kind diffgraph can load."""

    code = "text_encoder_unrecognised"


def _depth(keys: list[str], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def _shapes(path: Path) -> dict[str, list[int]]:
    shapes = tensor_shapes(path)
    # transformers may save T5's tied embedding under the encoder's name only.
    if T5_EMBED_KEY in shapes:
        shapes.setdefault("shared.weight", shapes.pop(T5_EMBED_KEY))
    return shapes


def _clip_kind(depth: int, projected: bool) -> TextEncoderKind:
    if depth >= 31:
        return "clip_g"
    if depth >= 23:
        return "clip_h"
    if depth < 12 and projected:
        return "clip_g"
    return "clip_l"


def detect_kind(path: Path) -> tuple[TextEncoderKind, Literal["hf", "open_clip", "t5"]]:
    """The encoder kind and key layout of a standalone text encoder file."""
    shapes = _shapes(path)
    keys = list(shapes)
    if "text_model.encoder.layers.0.mlp.fc1.weight" in shapes:
        depth = _depth(keys, r"text_model\.encoder\.layers\.(\d+)\.")
        return _clip_kind(depth, "text_projection.weight" in shapes or "text_projection" in shapes), "hf"
    if "transformer.resblocks.0.ln_1.weight" in shapes:
        return _clip_kind(
            _depth(keys, r"transformer\.resblocks\.(\d+)\."), "text_projection" in shapes
        ), "open_clip"
    if T5_GATED_KEY in shapes and "shared.weight" in shapes:
        return "t5xxl", "t5"
    if any(k.endswith(".scale_weight") for k in keys) or "scaled_fp8" in shapes:
        raise TextEncoderFileError(
            f"{path.name} is a scaled-fp8 text encoder file; {_EXPECTED}, not yet scaled fp8"
        )
    if "encoder.block.0.layer.1.DenseReluDense.wi.weight" in shapes:
        raise TextEncoderFileError(
            f"{path.name} is a T5 v1.0 encoder (ungated feed-forward, as used by Cosmos); {_EXPECTED}"
        )
    raise TextEncoderFileError(f"{path.name} is not a text encoder diffgraph recognises: {_EXPECTED}")


def clip_spec(kind: TextEncoderKind, layout: str, base: TextEncoderSpec) -> TextEncoderSpec:
    """`base` (a family's rules for this encoder) pointed at a standalone file of the given layout."""
    if kind == "clip_h":
        raise TextEncoderFileError("CLIP-H (SD2) text encoder files are not supported by these loaders yet")
    return replace(base, ldm_prefix="", layout=layout)  # type: ignore[arg-type]


def build_clip(spec: TextEncoderSpec, sd: dict[str, torch.Tensor], name: str) -> torch.nn.Module:
    """A transformers CLIP text model from a standalone file's tensors, stored as float16."""
    if spec.layout == "hf" and "text_projection" in sd and "text_projection.weight" not in sd:
        # Files saved by ComfyUI's CLIPSave keep the OpenCLIP matrix orientation under this name.
        sd = {**sd, "text_projection.weight": sd.pop("text_projection").t()}
    args = families.text_config(spec, sd)
    if "text_projection.weight" in sd:
        args["projection_dim"] = sd["text_projection.weight"].shape[0]
    cfg = CLIPTextConfig(**args)
    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
    with torch.device("meta"):
        model = cls(cfg)
    if spec.layout == "hf":
        state = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    else:
        state = sfu.convert_open_clip_checkpoint(model, {"te." + k: v for k, v in sd.items()}, prefix="te.")
    if not spec.with_projection:
        state.pop("text_projection.weight", None)
    if not any(k.startswith("text_model.") for k in model.state_dict()):
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    state = {k: v.to(CLIP_STORAGE) if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    for buf_name, buf in list(model.named_buffers()):
        if buf.is_meta and buf_name.endswith("position_ids"):
            owner = model.get_submodule(buf_name.rsplit(".", 1)[0])
            owner.register_buffer(
                "position_ids", torch.arange(buf.shape[-1]).expand(buf.shape), persistent=False
            )
    leftover = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if leftover or result.unexpected_keys:
        raise TextEncoderFileError(
            f"{name}: tensors do not fit a {spec.name} text encoder (missing {leftover[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})"
        )
    text = model if hasattr(model, "final_layer_norm") else model.get_submodule("text_model")
    layers = list(text.get_submodule("encoder.layers").children())
    parts = [text.get_submodule("embeddings"), *layers, text.get_submodule("final_layer_norm")]
    if spec.with_projection:
        parts.append(model.get_submodule("text_projection"))
    widen_while_running(parts, COMPUTE_DTYPE)
    return model.eval().requires_grad_(False)


def load_encoder(path: Path, kind: TextEncoderKind, spec: TextEncoderSpec | None) -> torch.nn.Module:
    """Read one standalone file and build its encoder (`spec` gives a CLIP encoder's family rules)."""
    sd = read_model_weights(path)
    if kind == "t5xxl":
        return build_t5(sd, COMPUTE_DTYPE)
    if spec is None:
        raise ValueError(f"{path.name}: a CLIP encoder needs its family rules")
    return build_clip(spec, sd, path.name)


def encoder_spec(family: str, kind: TextEncoderKind, layout: str) -> TextEncoderSpec | None:
    """A CLIP encoder's rules in a family (None for T5)."""
    if kind == "t5xxl":
        return None
    if family in FLOW_FAMILIES:
        base = flow_specs()[family].get(kind)
    else:
        base = next((s for s in families.family_spec(family).text_encoders if s.name == kind), None)
    if base is None:
        raise TextEncoderFileError(f"a {kind} text encoder has no place in a {family} CLIP")
    return clip_spec(kind, layout, base)


def encoder_store_key(path: Path, kind: str, layout: str) -> tuple[Any, ...]:
    """The model store key of one standalone encoder file (it changes when the file does)."""
    mtime, size = signature(path)
    return ("diffgraph", "text_encoder", str(path), mtime, size, kind, layout)


def release_text_encoders(store: Any, paths: list[Path]) -> None:
    """Tell the store a prompt's encoding is done: these encoders are the first to drop when memory is short."""
    for path in paths:
        kind, layout = detect_kind(path)
        store.release(encoder_store_key(path, kind, layout))


def load_text_stack(family: str, paths: list[Path], store: Any = None) -> ClipStack:
    """The text encoders of a CLIP built from standalone files (kinds checked by `family_for`).

    With a model store, each file's encoder is kept there under its own key (the module depends only
    on the file), so a FLUX and an SD3 CLIP naming the same T5 file hold one copy of it.
    """
    encoders: dict[str, torch.nn.Module] = {}
    specs: list[TextEncoderSpec] = []
    for path in paths:
        kind, layout = detect_kind(path)
        spec = encoder_spec(family, kind, layout)
        if store is None:
            encoders[kind] = load_encoder(path, kind, spec)
        else:
            key = encoder_store_key(path, kind, layout)
            size = weight_bytes(path)
            loader = lambda p=path, k=kind, s=spec: load_encoder(p, k, s)  # noqa: E731
            encoders[kind] = store.get(key, loader, size_hint=size)
        if spec is not None:
            specs.append(spec)
    if family in FLOW_FAMILIES:
        return FlowTextStack(family, encoders, specs)
    order = [s.name for s in families.family_spec(family).text_encoders]
    specs.sort(key=lambda s: order.index(s.name))
    return ClipStack(family, encoders, specs)


class ClipTypeError(UserFacingError):
    """A CLIP type / file combination the loaders do not build."""

    code = "clip_type_unsupported"


# Which encoder kinds each (CLIP type, file count) accepts, and the family it builds.
_FAMILY_OF_SINGLE = {("stable_diffusion", "clip_l"): "sd15", ("stable_diffusion", "clip_g"): "sdxl-refiner"}


def family_for(clip_type: str, kinds: list[TextEncoderKind], names: list[str]) -> str:
    """The CLIP family for a loader's type and its files' detected kinds, or a clear refusal."""
    found = ", ".join(f"{n} ({k})" for n, k in zip(names, kinds, strict=True))
    if len(set(kinds)) != len(kinds):
        raise ClipTypeError(f"two files hold the same kind of text encoder: {found}")
    kind_set = set(kinds)
    if clip_type == "sd3":
        if kind_set <= {"clip_l", "clip_g", "t5xxl"}:
            return "sd3"
        raise ClipTypeError(f"type sd3 takes CLIP-L, CLIP-G and T5-XXL files; got {found}")
    if len(kinds) == 1:
        family = _FAMILY_OF_SINGLE.get((clip_type, kinds[0]))
        if family is None:
            raise ClipTypeError(
                f"CLIPLoader type {clip_type!r} with {found} is not supported; diffgraph builds "
                "stable_diffusion (CLIP-L, or CLIP-G as the SDXL refiner's) and sd3 (any one of CLIP-L, "
                "CLIP-G, T5-XXL)"
            )
        return family
    if clip_type == "flux":
        if kind_set == {"clip_l", "t5xxl"}:
            return "flux"
        raise ClipTypeError(f"type flux takes one CLIP-L and one T5-XXL file; got {found}")
    if clip_type == "sdxl":
        if kind_set == {"clip_l", "clip_g"}:
            return "sdxl"
        raise ClipTypeError(f"type sdxl takes one CLIP-L and one CLIP-G file; got {found}")
    raise ClipTypeError(
        f"DualCLIPLoader type {clip_type!r} is not supported; diffgraph builds sdxl, sd3 and flux"
    )

"""FLUX.1 and SD3/SD3.5 diffusers folders: pipeline detection, and each part built as the single files build it.

A pipeline folder (model_index.json) holds `transformer/` (FluxTransformer2DModel or
SD3Transformer2DModel: config.json plus, usually sharded, safetensors), `vae/` (the 16-channel
AutoencoderKL), and its text encoders in transformers' layout: FLUX `text_encoder/` CLIP-L and
`text_encoder_2/` T5-XXL; SD3 `text_encoder/` CLIP-L, `text_encoder_2/` CLIP-G and `text_encoder_3/`
T5-XXL (any may be left out, as the SD3 pipelines allow). The family is read from the transformer's
class and tensors: FLUX dev has the guidance embedder, schnell has none, Fill a 384-wide input; SD3.5
medium's MMDiT-X blocks come from the config (`dual_attention_layers`).

Every part is built by the same code as the single-file route, so a folder and the files it was made
from give the same numbers: the transformer keeps its stored dtype (widened per layer), CLIP weights
are held as float16 and T5 in its stored dtype, the VAE in the VAE's compute dtype. The folder's
tokenizer/ and scheduler/ folders are not read: tokenizers are diffgraph's shipped CLIP BPE and T5
SentencePiece vocabularies (the published folders carry the same vocabularies), and sampling follows
the family's defaults and the sampling nodes, as it does for single files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL

from nodes.diffusion import flux, sd3
from nodes.diffusion.builders import to_model
from nodes.diffusion.checkpoint_io import Cast, CheckpointFormatError
from nodes.diffusion.flux_layout import bfl_layout
from nodes.diffusion.mmdit_layout import MmditArch, mmdit_layout
from nodes.diffusion.weight_folder import (
    folder_name,
    read_config,
    read_model_weights,
    tensor_shapes,
    weight_bytes,
)

log = logging.getLogger(__name__)

FLUX_CLASS = "FluxTransformer2DModel"
SD3_CLASS = "SD3Transformer2DModel"
# CLIP families of the pipelines: which subfolder holds which encoder, in the loaders' order.
TEXT_PARTS = {
    "flux": (("text_encoder", "clip_l"), ("text_encoder_2", "t5xxl")),
    "sd3": (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g"), ("text_encoder_3", "t5xxl")),
}
# Every family label a flow folder's recipes carry (the CLIP's is "flux" for all FLUX models).
FAMILIES = (*flux.FAMILIES, "flux", sd3.FAMILY)
_GUIDANCE_KEY = "time_text_embed.guidance_embedder.linear_1.weight"
_EXPECTED = (
    "expected a diffusers FLUX.1 or SD3/SD3.5 folder: transformer/ (config.json with _class_name "
    f"{FLUX_CLASS} or {SD3_CLASS}, and its safetensors weights)"
)


def text_family(family: str) -> str:
    """The CLIP family of a model family ("flux" for every FLUX model, "sd3" for SD3)."""
    return "flux" if family in (*flux.FAMILIES, "flux") else sd3.FAMILY


def _listed(index: dict[str, Any], part: str) -> bool:
    entry = index.get(part)
    return isinstance(entry, list) and bool(entry) and entry[0] is not None


def is_flow_pipeline(folder: Path) -> bool:
    """Whether a pipeline folder's model_index.json names a transformer (FLUX, SD3...) instead of a UNet."""
    return _listed(read_config(folder, "model_index.json"), "transformer")


def _part(folder: Path, part: str) -> Path:
    """A listed part's subfolder; refused with the part's name when the folder lacks it."""
    sub = folder / part
    if not sub.is_dir():
        raise CheckpointFormatError(
            f"{folder.name}: model_index.json lists {part}/ but the folder has no {part}/ subfolder; "
            "copy or download the whole pipeline folder"
        )
    return sub


def transformer_dir(path: Path) -> Path:
    """The transformer folder of a pipeline folder, or `path` itself when it is one."""
    if not (path / "model_index.json").is_file():
        return path
    if not is_flow_pipeline(path):
        raise CheckpointFormatError(
            f"{path.name} is a diffusers pipeline without a transformer; {_EXPECTED}. UNet pipelines "
            "(SD1.x, SD2.x, SDXL) load whole with CheckpointLoaderSimple from models/checkpoints"
        )
    return _part(path, "transformer")


def transformer_family(folder: Path) -> str:
    """A flux.FAMILIES name or sd3 for a transformer folder (class from JSON, kind from tensors)."""
    cfg = read_config(folder)
    kind = cfg.get("_class_name")
    if kind not in (FLUX_CLASS, SD3_CLASS):
        raise CheckpointFormatError(f"{folder_name(folder)} holds a {kind}; {_EXPECTED}")
    # Every shard's header is read here, so a partial download is refused before anything loads.
    shapes = tensor_shapes(folder)
    if kind == SD3_CLASS:
        if "context_embedder.weight" not in shapes:
            raise CheckpointFormatError(f"{folder_name(folder)}: no context_embedder.weight; {_EXPECTED}")
        return sd3.FAMILY
    if "x_embedder.weight" not in shapes:
        raise CheckpointFormatError(
            f"{folder_name(folder)}: no x_embedder.weight among its tensors; {_EXPECTED}"
        )
    features = shapes["x_embedder.weight"][1]
    if features != flux.PLAIN_FEATURES and features not in flux.WIDE_FAMILIES:
        raise CheckpointFormatError(
            f"{folder_name(folder)}: FLUX model with {features} input features; supported are "
            f"{flux.PLAIN_FEATURES} (dev, schnell, Kontext), {flux.CONTROL_FEATURES} (Canny/Depth dev) and "
            f"{flux.FILL_FEATURES} (Fill)"
        )
    guidance = _GUIDANCE_KEY in shapes
    if bool(cfg.get("guidance_embeds")) != guidance:
        raise CheckpointFormatError(
            f"{folder_name(folder)}/config.json says guidance_embeds={cfg.get('guidance_embeds')} but the "
            f"weights {'hold' if guidance else 'lack'} the guidance embedder"
        )
    if features in flux.WIDE_FAMILIES:
        return flux.WIDE_FAMILIES[features]
    return "flux-dev" if guidance else "flux-schnell"


def inspect_pipeline(folder: Path) -> tuple[str, tuple[str, ...]]:
    """(family, components) of a FLUX or SD3 pipeline folder; a clear error for a broken one."""
    index = read_config(folder, "model_index.json")
    family = transformer_family(_part(folder, "transformer"))
    texts = [sub for sub, _ in TEXT_PARTS[text_family(family)] if _listed(index, sub)]
    for sub in texts:
        _part(folder, sub)
    if text_family(family) == "flux" and texts and len(texts) != 2:
        raise CheckpointFormatError(
            f"{folder.name}: a FLUX pipeline needs both text_encoder/ (CLIP-L) and text_encoder_2/ (T5-XXL); "
            f"model_index.json lists only {texts[0]}/"
        )
    comps = ["unet", *(["clip"] if texts else [])]
    if _listed(index, "vae"):
        _part(folder, "vae")
        comps.append("vae")
    if family == sd3.FAMILY:
        layers = read_config(folder / "transformer").get("dual_attention_layers") or ()
        log.info("%s: SD3 %s MMDiT", folder.name, "MMDiT-X (3.5 medium)" if layers else "plain")
    return family, tuple(comps)


def part_bytes(folder: Path, component: str) -> int:
    """Bytes of a pipeline component's weight files (the model store's size hint before loading it)."""
    if component == "clip":
        index = read_config(folder, "model_index.json")
        subs = [sub for sub, _ in TEXT_PARTS["sd3"] if _listed(index, sub)]
    else:
        subs = ["transformer" if component == "unet" else "vae"]
    return sum(weight_bytes(_part(folder, sub)) for sub in subs)


def load_transformer(
    folder: Path, family: str, compute: torch.dtype, cast: Cast | None = None
) -> torch.nn.Module:
    """The FLUX or SD3 model of a transformer (or pipeline) folder; Linear weights keep their stored dtype.

    `cast` narrows weights while reading (UNETLoader's weight_dtype); None keeps them as stored.
    """
    folder = transformer_dir(folder)
    cfg = read_config(folder)
    sd = read_model_weights(folder, None, cast)
    try:
        if family == sd3.FAMILY:
            return sd3.build_transformer_diffusers(sd, cfg, compute)
        return flux.build_flux_diffusers(sd, cfg, family, compute)
    except (CheckpointFormatError, TypeError, ValueError, KeyError) as exc:
        raise CheckpointFormatError(
            f"{folder_name(folder)}: config.json and the weights do not make a {family} model ({exc})"
        ) from exc


def load_text(folder: Path, family: str) -> torch.nn.Module:
    """The pipeline's text encoders as the FLUX/SD3 CLIP the standalone encoder files build."""
    # Heavy (transformers' T5, the tokenizers): imported only when a folder's CLIP is loaded.
    from nodes.diffusion.flow_text import FlowTextStack
    from nodes.diffusion.t5 import build_t5
    from nodes.diffusion.text_encoders import COMPUTE_DTYPE, build_clip, detect_kind, encoder_spec

    clip_family = text_family(family)
    index = read_config(folder, "model_index.json")
    encoders: dict[str, torch.nn.Module] = {}
    specs = []
    for sub, kind in TEXT_PARTS[clip_family]:
        if not _listed(index, sub):
            continue
        part = _part(folder, sub)
        found, layout = detect_kind(part)
        if (found == "t5xxl") != (kind == "t5xxl") or layout == "open_clip":
            raise CheckpointFormatError(
                f"{folder_name(part)} holds a {found} encoder ({layout} layout); expected {kind} in "
                "transformers' layout"
            )
        sd = read_model_weights(part)
        if kind == "t5xxl":
            encoders[kind] = build_t5(sd, COMPUTE_DTYPE)
            continue
        spec = encoder_spec(clip_family, kind, "hf")  # type: ignore[arg-type]
        assert spec is not None  # CLIP kinds always have rules
        encoders[kind] = build_clip(spec, sd, folder_name(part))
        specs.append(spec)
    if not encoders:
        raise CheckpointFormatError(
            f"{folder.name} holds no text encoders (model_index.json lists no text_encoder*/); load them "
            "with DualCLIPLoader (FLUX) or TripleCLIPLoader (SD3)"
        )
    return FlowTextStack(clip_family, encoders, specs)


def load_vae(folder: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The 16-channel AutoencoderKL of `vae/` (a pipeline's, or a VAE folder itself), built from its config."""
    part = folder / "vae" if (folder / "model_index.json").is_file() else folder
    cfg = read_config(part)
    if cfg.get("_class_name") != "AutoencoderKL":
        raise CheckpointFormatError(
            f"{folder_name(part)} holds a {cfg.get('_class_name')}; expected AutoencoderKL"
        )
    sd = read_model_weights(part, None, lambda _key: dtype)
    try:
        with torch.device("meta"):
            vae = AutoencoderKL.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})
    except (TypeError, ValueError) as exc:
        raise CheckpointFormatError(
            f"{folder_name(part)}/config.json is not an AutoencoderKL config ({exc})"
        ) from exc
    return to_model(vae, sd, dtype, folder_name(part))[0]


def load_part(folder: Path, family: str, component: str, dtype: torch.dtype) -> torch.nn.Module:
    """One component of a FLUX/SD3 pipeline folder (`dtype`: its compute dtype)."""
    if component == "unet":
        return load_transformer(folder, family, dtype)
    if component == "vae":
        return load_vae(folder, dtype)
    return load_text(folder, family)


def single_file_shapes(path: Path, family: str) -> dict[str, list[int]]:
    """The published single-file tensor names and shapes (no prefix) of a folder's transformer, from its config.

    LoRA files name FLUX/SD3 weights in that layout; the LoRA map is derived from it exactly as for a file.
    """
    folder = transformer_dir(path)
    cfg = read_config(folder)
    try:
        if family == sd3.FAMILY:
            heads, head_dim = int(cfg["num_attention_heads"]), int(cfg["attention_head_dim"])
            if head_dim != 64 or heads != int(cfg["num_layers"]):
                raise CheckpointFormatError("an MMDiT with 64-channel heads, one per block, was expected")
            arch = MmditArch(
                depth=int(cfg["num_layers"]),
                pos_embed_max_size=int(cfg["pos_embed_max_size"]),
                dual_attention_layers=tuple(cfg.get("dual_attention_layers") or ()),
                qk_norm=cfg.get("qk_norm") == "rms_norm",
                in_channels=int(cfg["in_channels"]),
                patch_size=int(cfg["patch_size"]),
                context_dim=int(cfg["joint_attention_dim"]),
                pooled_dim=int(cfg["pooled_projection_dim"]),
            )
            layout = mmdit_layout(arch, prefix="")
        else:
            in_features = int(cfg["in_channels"])
            layout = bfl_layout(
                hidden=int(cfg["num_attention_heads"]) * int(cfg["attention_head_dim"]),
                double=int(cfg["num_layers"]),
                single=int(cfg["num_single_layers"]),
                context=int(cfg["joint_attention_dim"]),
                pooled=int(cfg["pooled_projection_dim"]),
                in_features=in_features,
                out_features=int(cfg.get("out_channels") or in_features),
                guidance=bool(cfg.get("guidance_embeds")),
            )
    except (KeyError, TypeError, ValueError, CheckpointFormatError) as exc:
        raise CheckpointFormatError(
            f"{folder_name(folder)}/config.json: cannot derive the {family} layout LoRAs name ({exc})"
        ) from exc
    return {k: list(v) for k, v in layout.items()}

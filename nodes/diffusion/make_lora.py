"""Random-weight LoRA files for FLUX and SD3.5 in the namings trainers publish (for tests and benchmarks).

Layouts (`LORA_LAYOUTS`):
  * `flux-kohya`: `lora_unet_<BFL key with _>.lora_down/.lora_up.weight` + `.alpha`; with text encoders
    `lora_te1_` (CLIP-L) and `lora_te2_` (T5, OneTrainer's FLUX numbering);
  * `flux-diffusers`: `transformer.<diffusers module>.lora_A/.lora_B.weight` (split q/k/v, single blocks'
    `proj_mlp`...); with text encoders `text_encoder.` (CLIP-L);
  * `flux-bfl`: `diffusion_model.<BFL key>.lora_A/.lora_B.weight` (ComfyUI / BFL native);
  * `flux-bfl-dora`: like `flux-bfl` with `.lora_down/.lora_up`, `.alpha` and DoRA `.dora_scale`;
  * `flux-bfl-control`: a BFL control LoRA (Canny/Depth dev) for FLUX dev: bare BFL keys with
    `.lora_A/.lora_B.weight` and a `.lora_B.bias` per layer (img_in's pair reading 128 features) and
    every RMSNorm `*_norm.scale` in full;
  * `sd3-kohya`: `lora_unet_<MMDiT key with _>` + `.alpha`; `lora_te1_`/`lora_te2_`/`lora_te3_` for
    CLIP-L, CLIP-G and T5;
  * `sd3-diffusers`: `transformer.<diffusers module>.lora_A/.lora_B.weight`, `text_encoder.`/`text_encoder_2.`;
  * `sd3-native`: `diffusion_model.<MMDiT key>.lora_A/.lora_B.weight`.
Each tensor is drawn from its own generator (seed, key), so files are reproducible byte for byte. The
update is about a seventh of a layer's weight in size: enough to change an image, not to wreck it.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from nodes.diffusion import flux, sd3
from nodes.diffusion.flux_layout import flux_layout
from nodes.diffusion.make_text_encoder import text_encoder_shapes
from nodes.diffusion.mmdit_layout import mmdit_layout, sd3_arch
from nodes.diffusion.random_weights import tensor_seed

LORA_LAYOUTS = (
    "flux-kohya",
    "flux-diffusers",
    "flux-bfl",
    "flux-bfl-dora",
    "flux-bfl-control",
    "sd3-kohya",
    "sd3-diffusers",
    "sd3-native",
)
_PAIRS = {"A": (".lora_A.weight", ".lora_B.weight"), "down": (".lora_down.weight", ".lora_up.weight")}
_COMPONENT = "lora"
# Width of the update relative to the layer: up entries are drawn with this bound / sqrt(rank).
_UP_BOUND = 0.5


def _uniform(seed: int, key: str, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(tensor_seed(seed, _COMPONENT, key))
    return torch.rand(shape, dtype=torch.float32, generator=generator) * 2 - 1


def _matrices(shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, int]]:
    """Module name -> (out, in) of every 2-D `.weight` (the Linear layers a LoRA adapts)."""
    return {
        k[: -len(".weight")]: (s[0], s[1]) for k, s in shapes.items() if k.endswith(".weight") and len(s) == 2
    }


def _converted(family: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """The diffusers names and shapes of a native layout (our converters run on meta tensors)."""
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    if family == sd3.FAMILY:
        out = sd3.convert_transformer(meta, prefix="")
    else:
        cfg = flux.flux_config({k: list(s) for k, s in shapes.items()}, "")
        out = flux.bfl_to_diffusers(meta, "", cfg["num_attention_heads"] * flux.HEAD_DIM)
    return {k: tuple(v.shape) for k, v in out.items()}


def _text_stems(layout: str, text_size: str, kinds: tuple[str, ...] | None) -> dict[str, tuple[int, int]]:
    """Text-encoder LoRA stems of a layout (CLIP attention/MLP layers, T5 attention/FFN layers)."""
    prefixes = {
        "flux-kohya": {"clip_l": "lora_te1_", "t5xxl": "lora_te2_"},
        "flux-diffusers": {"clip_l": "text_encoder."},
        "sd3-kohya": {"clip_l": "lora_te1_", "clip_g": "lora_te2_", "t5xxl": "lora_te3_"},
        "sd3-diffusers": {"clip_l": "text_encoder.", "clip_g": "text_encoder_2."},
    }.get(layout, {})
    out = {}
    for kind, prefix in prefixes.items():
        if kinds is not None and kind not in kinds:
            continue
        for name, dims in _matrices(text_encoder_shapes(kind, text_size)).items():
            if ".layers." not in name and ".block." not in name:
                continue
            out[prefix + (name.replace(".", "_") if prefix.startswith("lora_") else name)] = dims
    return out


def lora_stems(
    layout: str,
    size: str,
    text_encoders: bool = False,
    text_size: str | None = None,
    text_kinds: tuple[str, ...] | None = None,
) -> dict[str, tuple[int, int]]:
    """Stem -> (out, in) of every layer a random LoRA of `layout` adapts, for a model of `size`.

    Text encoders (all the layout names, or only `text_kinds`: clip_l, clip_g, t5xxl) are tiny for a
    tiny model and full size otherwise, unless `text_size` says.
    """
    if layout not in LORA_LAYOUTS:
        raise ValueError(f"unknown LoRA layout {layout!r}; one of {LORA_LAYOUTS}")
    family = "flux-dev" if layout.startswith("flux") else sd3.FAMILY
    if family == sd3.FAMILY:
        native = mmdit_layout(sd3_arch("sd3.5-medium", size), prefix="")
    else:
        # A control LoRA's img_in pair reads the latent and the control latent (Canny dev's width).
        native = flux_layout("flux1-canny-dev" if layout == "flux-bfl-control" else "flux1-dev", size)
    shapes = {k: tuple(v) for k, v in native.items()}
    style = layout.split("-", 1)[1]
    if style == "bfl-control":
        stems = dict(_matrices(shapes))
    elif style == "diffusers":
        stems = {"transformer." + k: v for k, v in _matrices(_converted(family, shapes)).items()}
    elif style == "kohya":
        stems = {"lora_unet_" + k.replace(".", "_"): v for k, v in _matrices(shapes).items()}
    else:
        stems = {"diffusion_model." + k: v for k, v in _matrices(shapes).items()}
    if text_encoders:
        stems.update(_text_stems(layout, text_size or ("tiny" if size == "tiny" else "full"), text_kinds))
    return stems


def make_lora_file(
    layout: str,
    size: str,
    seed: int,
    out_path: str | Path,
    rank: int = 4,
    dtype: torch.dtype = torch.bfloat16,
    text_encoders: bool = False,
    text_size: str | None = None,
    text_kinds: tuple[str, ...] | None = None,
) -> Path:
    """Write a random LoRA of `layout` for the FLUX dev / SD3.5 medium shapes of `size` (tiny, reduced, full)."""
    stems = lora_stems(layout, size, text_encoders, text_size, text_kinds)
    names = _PAIRS["A"] if layout.endswith(("-diffusers", "-bfl", "-native", "-control")) else _PAIRS["down"]
    with_alpha = names is _PAIRS["down"]
    tensors: dict[str, torch.Tensor] = {}
    for stem, (rows, cols) in stems.items():
        down_key, up_key = stem + names[0], stem + names[1]
        tensors[down_key] = (_uniform(seed, down_key, (rank, cols)) / math.sqrt(cols)).to(dtype)
        tensors[up_key] = (_uniform(seed, up_key, (rows, rank)) * (_UP_BOUND / math.sqrt(rank))).to(dtype)
        if with_alpha:
            # alpha = rank / 2 halves the update, as many published files do.
            tensors[stem + ".alpha"] = torch.tensor(rank / 2, dtype=torch.float32)
        if layout.endswith("-dora"):
            norms = _uniform(seed, stem + ".dora_scale", (1, cols)) * 0.1 + 1.0
            tensors[stem + ".dora_scale"] = (norms * math.sqrt(rows / (3 * cols))).to(dtype)
        if layout.endswith("-control"):
            bias_key = stem + ".lora_B.bias"
            tensors[bias_key] = (_uniform(seed, bias_key, (rows,)) * 0.02).to(dtype)
    if layout.endswith("-control"):
        for key, shape in flux_layout("flux1-dev", size).items():
            if key.endswith("_norm.scale"):
                tensors[key] = (1.0 + 0.1 * _uniform(seed, key, shape)).to(dtype)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out), metadata={"format": "pt"})
    return out

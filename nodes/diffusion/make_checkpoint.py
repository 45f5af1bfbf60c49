"""`diffgraph make-checkpoint`: random-weight checkpoints in the original single-file (LDM) layout.

Tiny files keep every family's structure (levels, residual blocks, transformer placement, text encoder
key layout, vocabulary, 77 positions) with small channel counts, so detection and conversion take the
same path as real files while unit tests run in seconds. Full-size files have the published shapes.
sd2-unclip adds the OpenCLIP ViT-H/14 image tower under `embedder.model.visual.` and a `label_emb`
for the image embedding. For sd2-v and sd2-unclip the last output block's first `norm1.bias` is drawn wider (std ~0.17), which is what the
v-prediction heuristic (std > 0.09, as ComfyUI uses) looks at; every other norm bias has std ~0.058.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from nodes.diffusion.flux_layout import FLUX_ARCHS, make_flux_file
from nodes.diffusion.ldm_layout import (
    Layout,
    TextArch,
    UnetArch,
    VaeArch,
    text_layout,
    unet_layout,
    vae_layout,
)
from nodes.diffusion.make_flow_folder import FOLDER_ARCHS, make_flow_folder
from nodes.diffusion.make_guidance import AUX_ARCHES, CLIP_VISION_SIZES, clip_vision_layout, make_aux
from nodes.diffusion.make_lora import LORA_LAYOUTS, make_lora_file
from nodes.diffusion.make_text_encoder import (
    FILE_DTYPES,
    TEXT_ENCODER_ARCHS,
    make_text_encoder,
    text_encoder_shapes,
)
from nodes.diffusion.make_uso import USO_ARCHS, make_uso_file
from nodes.diffusion.mmdit_layout import SD3_ARCHS, SD3_SIZES, sd3_checkpoint_layout
from nodes.diffusion.random_weights import random_state_dict, write_random_file

ARCH_NAMES = ("sd15", "sd2", "sd2-v", "sd2-unclip", "sdxl", "sdxl-refiner")
V_PRED_KEY = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"

_FULL_VAE = VaeArch(128, (1, 2, 4, 4), 2)
_TINY_VAE = VaeArch(32, (1, 2, 2, 2), 1)


def _text(prefix: str, kind: str, tiny: bool, projection: bool) -> TextArch:
    layout = "hf" if kind == "clip_l" else "open_clip"
    if tiny:
        return TextArch(prefix, layout, 64, 3, 128, projection=64 if projection else 0)
    width, layers, mlp = {"clip_l": (768, 12, 3072), "clip_h": (1024, 24, 4096), "clip_g": (1280, 32, 5120)}[
        kind
    ]
    return TextArch(prefix, layout, width, layers, mlp, projection=width if projection else 0)


def arch_spec(arch: str, size: str) -> tuple[UnetArch, VaeArch, list[TextArch]]:
    """UNet, VAE and text encoder shapes for one family at tiny or full size."""
    if arch not in ARCH_NAMES or size not in ("tiny", "full"):
        raise ValueError(f"unknown arch/size {arch!r}/{size!r}; arch one of {ARCH_NAMES}, size tiny|full")
    tiny = size == "tiny"
    mc = 32 if tiny else 320
    vae = _TINY_VAE if tiny else _FULL_VAE
    if arch == "sd15":
        texts = [_text("cond_stage_model.transformer.", "clip_l", tiny, False)]
        ctx = texts[0].width
        return UnetArch(mc, (1, 2, 4, 4), 2, (1, 1, 1, 0), 1, ctx, False), vae, texts
    if arch in ("sd2", "sd2-v", "sd2-unclip"):
        texts = [_text("cond_stage_model.model.", "clip_h", tiny, True)]
        ctx = texts[0].width
        # unCLIP adds the image embedding and its noise-level embedding (each the tower's projection width).
        adm = 2 * CLIP_VISION_SIZES["tiny" if tiny else "vit_h"][3] if arch == "sd2-unclip" else 0
        return UnetArch(mc, (1, 2, 4, 4), 2, (1, 1, 1, 0), 1, ctx, True, adm), vae, texts
    if arch == "sdxl":
        texts = [
            _text("conditioner.embedders.0.transformer.", "clip_l", tiny, False),
            _text("conditioner.embedders.1.model.", "clip_g", tiny, True),
        ]
        ctx = texts[0].width + texts[1].width
        depth: tuple[int, ...] = (0, 1, 2) if tiny else (0, 2, 10)
        adm = texts[1].projection + 6 * 256
        return UnetArch(mc, (1, 2, 4), 2, depth, depth[-1], ctx, True, adm), vae, texts
    texts = [_text("conditioner.embedders.0.model.", "clip_g", tiny, True)]
    depth = (0, 1, 1, 0) if tiny else (0, 4, 4, 0)
    adm = texts[0].projection + 5 * 256
    mc = 32 if tiny else 384
    return UnetArch(mc, (1, 2, 4, 4), 2, depth, depth[1], texts[0].width, True, adm), vae, texts


def checkpoint_layout(arch: str, size: str) -> Layout:
    """Every tensor name and shape of a family's single-file checkpoint."""
    unet, vae, texts = arch_spec(arch, size)
    layout = {**unet_layout(unet), **vae_layout(vae)}
    for text in texts:
        layout.update(text_layout(text))
    if arch == "sd2-unclip":
        vision = clip_vision_layout(
            "open_clip", size if size == "tiny" else "vit_h", torch.float16, "embedder.model."
        )
        layout.update({key: tuple(shape) for key, (shape, _) in vision.items()})
    return layout


def _random_tensor(key: str, shape: tuple[int, ...], layout: Layout, seed: int, arch: str) -> torch.Tensor:
    """Per-key seeded init: fan-in uniform for weights/biases, 1 +- 0.1 gammas, +-0.1 betas."""
    if key.endswith("position_ids"):
        return torch.arange(shape[-1], dtype=torch.int64).expand(shape).contiguous()
    if key.endswith("logit_scale"):
        return torch.tensor(math.log(100.0))
    g = torch.Generator().manual_seed((seed * 1000003 + zlib.crc32(key.encode())) % 2**63)
    u = torch.rand(shape, generator=g) * 2 - 1
    weight_key = key[: -len("bias")] + "weight" if key.endswith("bias") else key.replace("_bias", "_weight")
    ref = layout.get(weight_key, shape) if key.endswith(("bias", "_bias")) else shape
    if len(ref) >= 2:
        return u / math.sqrt(math.prod(ref[1:]))
    if key.endswith("weight") and len(shape) == 1:
        return 1.0 + u * 0.1
    scale = 0.3 if (arch in ("sd2-v", "sd2-unclip") and key == V_PRED_KEY) else 0.1
    return u * scale


def _header(layout: Layout, dtype_name: str, elem: int) -> tuple[bytes, list[str]]:
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    keys = sorted(layout, key=lambda k: (k.endswith("position_ids") is False, k))
    offset = 0
    for key in keys:
        shape = layout[key]
        is_int = key.endswith("position_ids")
        nbytes = math.prod(shape) * (8 if is_int else elem)
        header[key] = {
            "dtype": "I64" if is_int else dtype_name,
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    return raw + b" " * ((8 - len(raw) % 8) % 8), keys


def reduced_unclip_layout() -> Layout:
    """An SD2.1 unCLIP-L file ComfyUI still recognises, small enough for CPU reference runs.

    The UNet keeps what ComfyUI's detection looks at (320 channels, 1024 context, linear transformers,
    a 1536-wide label embedding) with one residual block per level and 320 channels throughout; the
    text encoder (OpenCLIP ViT-H/14 text), the image tower (ViT-L/14, OpenCLIP layout under
    `embedder.model.visual.`) and the VAE are full size, since ComfyUI builds those from fixed configs.
    """
    unet, vae, texts = arch_spec("sd2", "full")
    unet = UnetArch(320, (1, 1, 1, 1), 1, (1, 1, 1, 0), 1, unet.context_dim, True, 2 * 768)
    layout = {**unet_layout(unet), **vae_layout(vae), **text_layout(texts[0])}
    vision = clip_vision_layout("open_clip", "vit_l", torch.float16, "embedder.model.")
    layout.update({key: tuple(shape) for key, (shape, _) in vision.items()})
    return layout


def make_checkpoint(arch: str, size: str, seed: int, out_path: str | Path, dtype: str = "fp16") -> Path:
    """Write a random-weight single-file checkpoint, streaming one tensor at a time; returns the path.

    `size` is tiny or full; sd2-unclip also takes `reduced` (see reduced_unclip_layout).
    """
    if size == "reduced" and arch == "sd2-unclip":
        return write_layout(reduced_unclip_layout(), seed, out_path, dtype, arch)
    return write_layout(checkpoint_layout(arch, size), seed, out_path, dtype, arch)


# (key, shape, layout, seed) -> float32 values of one tensor.
ValueRule = Callable[[str, tuple[int, ...], Layout, int], torch.Tensor]


def write_layout(
    layout: Layout,
    seed: int,
    out_path: str | Path,
    dtype: str = "fp16",
    arch: str = "",
    rule: ValueRule | None = None,
) -> Path:
    """Write every tensor of a layout by the per-key seeded rule, keys sorted, as safetensors saves them.

    `rule` replaces this module's value rule (the ControlNet files follow their own).
    """
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    dtype_name = {"fp16": "F16", "bf16": "BF16", "fp32": "F32"}[dtype]
    header, keys = _header(layout, dtype_name, torch.empty((), dtype=torch_dtype).element_size())
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        for key in keys:
            if rule is not None:
                t = rule(key, layout[key], layout, seed)
            else:
                t = _random_tensor(key, layout[key], layout, seed, arch)
            if t.is_floating_point():
                t = t.to(torch_dtype)
            f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    os.replace(tmp, out)
    return out


# LoRA files for FLUX dev / SD3.5 medium shapes of --size (nodes.diffusion.make_lora), e.g. lora-flux-kohya.
_LORA_ARCHS = tuple(f"lora-{layout}" for layout in LORA_LAYOUTS)
_TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def make_sd3_checkpoint(
    arch: str, size: str, seed: int, out_path: str | Path, dtype: str = "fp16", text_encoders: bool = False
) -> Path:
    """Write a random-weight SD3/3.5 single file (MMDiT + VAE) by the per-tensor value rule.

    The rule (nodes.diffusion.random_weights) makes `sd3.5-medium` `reduced` with seed 1234 the shared
    reference's d2 file byte for byte. With `text_encoders`, CLIP-L, CLIP-G and T5-XXL are added under
    `text_encoders.<kind>.transformer.` with the values their standalone files (make_text_encoder, same
    seed and size; tiny for tiny, full otherwise) hold, as ComfyUI saves all-in-one SD3 checkpoints.
    """
    component = SD3_ARCHS[arch][1]
    layout = {k: (shape, _TORCH_DTYPES[dtype]) for k, shape in sd3_checkpoint_layout(arch, size).items()}
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if not text_encoders:
        write_random_file(tmp, seed, component, layout)
    else:
        tensors = random_state_dict(seed, component, layout)
        text_size = "tiny" if size == "tiny" else "full"
        for kind in ("clip_l", "clip_g", "t5xxl"):
            shapes = text_encoder_shapes(kind, text_size)
            part = random_state_dict(seed, kind, {k: (v, _TORCH_DTYPES[dtype]) for k, v in shapes.items()})
            tensors.update({f"text_encoders.{kind}.transformer.{k}": v for k, v in part.items()})
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out)
    return out


def random_layout_tensors(
    layout: Layout, seed: int, dtype: torch.dtype = torch.float16, rule: ValueRule | None = None
) -> dict[str, torch.Tensor]:
    """The same per-key values `write_layout` writes, in memory (for files converted before saving)."""
    if rule is None:
        return {k: _random_tensor(k, shape, layout, seed, "").to(dtype) for k, shape in layout.items()}
    return {k: rule(k, shape, layout, seed).to(dtype) for k, shape in layout.items()}


def main(argv: list[str] | None = None) -> int:
    """CLI: `make-checkpoint --arch A --size tiny|full --seed N OUT.safetensors`."""
    ap = argparse.ArgumentParser(prog="diffgraph make-checkpoint", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--arch",
        choices=(
            *ARCH_NAMES,
            *TEXT_ENCODER_ARCHS,
            *SD3_ARCHS,
            *FLUX_ARCHS,
            *AUX_ARCHES,
            *USO_ARCHS,
            *_LORA_ARCHS,
        ),
        required=True,
    )
    ap.add_argument(
        "--size",
        choices=SD3_SIZES,
        default="tiny",
        help="reduced (depth 2, full width) is for the SD3 and FLUX archs; for sd2-unclip see reduced_unclip_layout",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--dtype", choices=tuple(FILE_DTYPES), default="fp16", help="fp8: text encoders and FLUX models only"
    )
    ap.add_argument(
        "--text-encoders",
        action="store_true",
        help="SD3 archs: add CLIP-L, CLIP-G and T5-XXL (all-in-one file); lora-* archs: add text-encoder layers",
    )
    ap.add_argument("--rank", type=int, default=4, help="lora-* archs: the LoRA rank")
    ap.add_argument(
        "--kind",
        choices=("checkpoint", "diffusers"),
        default="checkpoint",
        help="diffusers: a pipeline folder (FLUX and SD3 archs) holding the single files' values; "
        "see also the control kinds",
    )
    ap.add_argument("--shards", type=int, default=2, help="--kind diffusers: transformer and T5 shard count")
    ap.add_argument(
        "--scaled-fp8",
        action="store_true",
        help="T5, FLUX and SD3 archs: store Linear weights as ComfyUI's scaled fp8 (weight/scale + scale)",
    )
    ap.add_argument("out", help="output .safetensors path (a folder for --kind diffusers)")
    args = ap.parse_args(argv)
    if args.kind == "diffusers":
        if args.arch not in FOLDER_ARCHS:
            ap.error(f"--kind diffusers is for {', '.join(FOLDER_ARCHS)}")
        folder = make_flow_folder(args.arch, args.size, args.seed, args.out, args.dtype, args.shards)
        print(f"wrote {folder} ({args.arch} {args.size} diffusers folder, seed {args.seed})")
        return 0
    if args.arch in _LORA_ARCHS:
        path = make_lora_file(
            args.arch[len("lora-") :],
            args.size,
            args.seed,
            args.out,
            args.rank,
            _TORCH_DTYPES[args.dtype],
            args.text_encoders,
        )
    elif args.arch in USO_ARCHS:
        path = make_uso_file(args.arch, args.size, args.seed, Path(args.out))
    elif args.arch in AUX_ARCHES:
        path = make_aux(args.arch, args.size, args.seed, Path(args.out))
    elif args.arch in TEXT_ENCODER_ARCHS:
        path = make_text_encoder(args.arch, args.size, args.seed, args.out, args.dtype)
    elif args.arch in FLUX_ARCHS:
        path = make_flux_file(
            args.arch, args.size, args.seed, args.out, None if args.dtype == "fp16" else args.dtype
        )
    elif args.arch in SD3_ARCHS:
        if args.dtype not in _TORCH_DTYPES:
            ap.error(f"SD3 files are written as {', '.join(_TORCH_DTYPES)}")
        path = make_sd3_checkpoint(args.arch, args.size, args.seed, args.out, args.dtype, args.text_encoders)
    elif args.size == "reduced" and args.arch != "sd2-unclip":
        ap.error(f"--size reduced is for the SD3 archs ({', '.join(SD3_ARCHS)})")
    else:
        path = make_checkpoint(args.arch, args.size, args.seed, args.out, args.dtype)
    if args.scaled_fp8:
        from nodes.diffusion.make_scaled import rewrite_scaled_fp8

        rewrite_scaled_fp8(path, "model.diffusion_model." if args.arch in SD3_ARCHS else "")
    print(f"wrote {path} ({path.stat().st_size} bytes, {args.arch} {args.size}, seed {args.seed})")
    return 0

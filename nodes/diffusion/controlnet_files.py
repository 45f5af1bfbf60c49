"""Random-weight ControlNet files in the published layouts, for tests and reference comparisons.

The original layout (`control_model.*`) is the UNet's encoder (time embedding, input blocks, middle
block, SDXL's label embedding) plus the hint encoder (eight 3x3 convolutions, three of stride 2: 3 ->
16 -> 16 -> 32 -> 32 -> 96 -> 96 -> 256 -> model channels), one 1x1 "zero" convolution per input block and
one after the middle block. Values follow make_checkpoint's per-key rule, so the full-size SD1.5 file
with seed 4321 is byte for byte the reference ControlNet ComfyUI's numbers were recorded with. Unlike
trained files the zero convolutions are random too, so the residuals visibly change the UNet's output.
The diffusers layout holds the same values under diffusers' ControlNetModel names.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from nodes.diffusion.controlnet import LDM_PREFIX, LORA_MARKER, controlnet_config, ldm_to_diffusers
from nodes.diffusion.ldm_layout import Layout, unet_layout
from nodes.diffusion.make_checkpoint import arch_spec, random_layout_tensors, write_layout

CONTROLNET_ARCHS = ("sd15", "sd2", "sdxl")
CONTROLNET_LAYOUTS = ("ldm", "diffusers")
HINT_WIDTHS = {"full": (16, 32, 96, 256), "tiny": (8, 8, 16, 16)}
_ENCODER_PARTS = ("time_embed.", "label_emb.", "input_blocks.", "middle_block.")


def _conv(out: Layout, name: str, n_out: int, n_in: int, k: int) -> None:
    out[name + ".weight"] = (n_out, n_in, k, k)
    out[name + ".bias"] = (n_out,)


def controlnet_layout(arch: str, size: str) -> Layout:
    """Every tensor name and shape of an original-layout ControlNet for a family."""
    if arch not in CONTROLNET_ARCHS:
        raise ValueError(f"no ControlNet layout for {arch!r}; one of {CONTROLNET_ARCHS}")
    unet, _, _ = arch_spec(arch, size)
    encoder = {k: v for k, v in unet_layout(unet, prefix="").items() if k.startswith(_ENCODER_PARTS)}
    out: Layout = dict(encoder)
    widths = HINT_WIDTHS[size]
    convs = [(3, widths[0])]
    for w, w_next in zip(widths, widths[1:], strict=False):
        convs += [(w, w), (w, w_next)]
    convs.append((widths[-1], unet.channels))
    for n, (c_in, c_out) in enumerate(convs):
        _conv(out, f"input_hint_block.{2 * n}", c_out, c_in, 3)
    blocks = sorted({int(k.split(".")[1]) for k in encoder if k.startswith("input_blocks.")})
    for i in blocks:
        ch = _block_channels(encoder, i)
        _conv(out, f"zero_convs.{i}.0", ch, ch, 1)
    mid = encoder["middle_block.2.out_layers.3.weight"][0]
    _conv(out, "middle_block_out.0", mid, mid, 1)
    return {LDM_PREFIX + k: v for k, v in out.items()}


def _block_channels(encoder: Layout, i: int) -> int:
    """Output channels of input block i (its resnet's last conv, or the downsampler, or conv_in)."""
    for key in (
        f"input_blocks.{i}.0.out_layers.3.weight",
        f"input_blocks.{i}.0.op.weight",
        f"input_blocks.{i}.0.weight",
    ):
        if key in encoder:
            return encoder[key][0]
    raise KeyError(f"input block {i} has no output convolution")


def make_controlnet(arch: str, size: str, seed: int, out_path: str | Path, layout: str = "ldm") -> Path:
    """Write a random-weight ControlNet (fp16) in the original or the diffusers layout."""
    shapes = controlnet_layout(arch, size)
    if layout == "ldm":
        return write_layout(shapes, seed, out_path, "fp16")
    if layout != "diffusers":
        raise ValueError(f"unknown ControlNet layout {layout!r}; one of {CONTROLNET_LAYOUTS}")
    tensors = random_layout_tensors(shapes, seed)
    bare = {k[len(LDM_PREFIX) :]: v for k, v in tensors.items()}
    family = "sd15" if arch == "sd15" else arch
    state = ldm_to_diffusers(bare, controlnet_config(family, bare))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata={"format": "pt"})
    return out


def control_lora_layout(arch: str, size: str, rank: int) -> Layout:
    """A control-lora's tensors: LoRA pairs for the encoder's matrices and kernels, the rest in full.

    Conv kernels get `up` [out, rank, 1, 1] and `down` [rank, in, k, k]; linear layers [out, rank] and
    [rank, in]; norms and biases of the encoder, the hint blocks and the zero convs are full tensors.
    """
    out: Layout = {LORA_MARKER: (1,)}
    for key, shape in controlnet_layout(arch, size).items():
        name = key[len(LDM_PREFIX) :]
        if name.startswith(_ENCODER_PARTS) and name.endswith(".weight") and len(shape) >= 2:
            base = name.removesuffix(".weight")
            out[base + ".up"] = (shape[0], rank, *([1] * (len(shape) - 2)))
            out[base + ".down"] = (rank, *shape[1:])
        else:
            out[name] = shape
    return out


def make_control_lora(arch: str, size: str, seed: int, out_path: str | Path, rank: int = 4) -> Path:
    """Write a random-weight control-lora (fp16) for a family's UNet."""
    return write_layout(control_lora_layout(arch, size, rank), seed, out_path, "fp16")


def controlnet_values(arch: str, size: str, seed: int) -> dict[str, torch.Tensor]:
    """The original-layout tensors `make_controlnet` writes, in memory."""
    return random_layout_tensors(controlnet_layout(arch, size), seed)

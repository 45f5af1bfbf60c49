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

import argparse
import math
import zlib
from pathlib import Path

import torch
from safetensors.torch import save_file

from nodes.diffusion.controlnet import LDM_PREFIX, LORA_MARKER, controlnet_config, ldm_to_diffusers
from nodes.diffusion.ldm_layout import Layout, unet_layout
from nodes.diffusion.make_checkpoint import arch_spec, random_layout_tensors, write_layout

CONTROLNET_ARCHS = ("sd15", "sd2", "sdxl")
CONTROLNET_LAYOUTS = ("ldm", "diffusers", "union")
UNION_TASKS = 8  # the ProMax union file's task count
HINT_WIDTHS = {"full": (16, 32, 96, 256), "tiny": (8, 8, 16, 16)}
_ENCODER_PARTS = ("time_embed.", "label_emb.", "input_blocks.", "middle_block.")


def control_tensor(key: str, shape: tuple[int, ...], layout: Layout, seed: int) -> torch.Tensor:
    """The control files' value rule: per-key generator, u in [-1, 1) times a bound (not divided by it).

    Matrices and kernels: bound 1/sqrt(fan-in); 1-d weights (norm gains): 1 + u * 0.1; biases take their
    weight's bound (0.1 beside a 1-d weight); any other tensor (LoRA halves, markers) is treated as a
    weight. Multiplying by the bound rounds differently from dividing by sqrt(fan-in), which is why the
    reference ControlNet needs this rule rather than the checkpoints' one.
    """
    g = torch.Generator().manual_seed((seed * 1000003 + zlib.crc32(key.encode())) % 2**63)
    u = torch.rand(shape, generator=g, dtype=torch.float32) * 2 - 1
    if key.endswith(".bias"):
        ref = layout.get(key[: -len(".bias")] + ".weight", shape)
        bound = 1.0 / math.sqrt(math.prod(ref[1:])) if len(ref) >= 2 else 0.1
        return u * bound
    if len(shape) >= 2:
        return u * (1.0 / math.sqrt(math.prod(shape[1:])))
    return 1.0 + u * 0.1


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


def union_layout(width: int, time_width: int, tasks: int = UNION_TASKS) -> Layout:
    """The union (ControlNet++) parts in diffusers names: task embeddings, one attention block, projections."""
    out: Layout = {"task_embedding": (tasks, width)}
    block = "transformer_layes.0."
    out[block + "attn.in_proj_weight"] = (3 * width, width)
    out[block + "attn.in_proj_bias"] = (3 * width,)
    _linear(out, block + "attn.out_proj", width, width)
    for norm in ("ln_1", "ln_2"):
        out[block + norm + ".weight"] = (width,)
        out[block + norm + ".bias"] = (width,)
    _linear(out, block + "mlp.c_fc", 4 * width, width)
    _linear(out, block + "mlp.c_proj", width, 4 * width)
    _linear(out, "spatial_ch_projs", width, width)
    _linear(out, "control_add_embedding.linear_1", time_width, 256 * tasks)
    _linear(out, "control_add_embedding.linear_2", time_width, time_width)
    return out


def _linear(out: Layout, name: str, n_out: int, n_in: int) -> None:
    out[name + ".weight"] = (n_out, n_in)
    out[name + ".bias"] = (n_out,)


def make_controlnet(arch: str, size: str, seed: int, out_path: str | Path, layout: str = "ldm") -> Path:
    """Write a random-weight ControlNet (fp16) in the original, the diffusers or the union (diffusers) layout."""
    shapes = controlnet_layout(arch, size)
    if layout == "ldm":
        return write_layout(shapes, seed, out_path, "fp16", rule=control_tensor)
    if layout not in CONTROLNET_LAYOUTS:
        raise ValueError(f"unknown ControlNet layout {layout!r}; one of {CONTROLNET_LAYOUTS}")
    tensors = random_layout_tensors(shapes, seed, rule=control_tensor)
    bare = {k[len(LDM_PREFIX) :]: v for k, v in tensors.items()}
    cfg = controlnet_config(arch, bare)
    state = ldm_to_diffusers(bare, cfg)
    if layout == "union":
        extra = union_layout(cfg["block_out_channels"][0], 4 * cfg["block_out_channels"][0])
        state.update(random_layout_tensors(extra, seed, rule=control_tensor))
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
    return write_layout(control_lora_layout(arch, size, rank), seed, out_path, "fp16", rule=control_tensor)


def t2i_adapter_layout(arch: str, size: str, hint_channels: int = 1) -> Layout:
    """An original-layout (TencentARC) full T2I-Adapter: conv_in, then 4 levels of 2 residual blocks.

    SD1.x adapters pixel-unshuffle by 8, SDXL ones by 16; a level changing width starts with a 1x1
    `in_conv`; each residual block is a 3x3 `block1` and a 1x1 `block2`.
    """
    width = 32 if size == "tiny" else 320
    channels = [width, width * 2, width * 4, width * 4]
    factor = 16 if arch == "sdxl" else 8
    out: Layout = {}
    _conv(out, "conv_in", width, hint_channels * factor * factor, 3)
    for level, ch in enumerate(channels):
        if level and channels[level - 1] != ch:
            _conv(out, f"body.{level * 2}.in_conv", ch, channels[level - 1], 1)
        for block in range(2):
            _conv(out, f"body.{level * 2 + block}.block1", ch, ch, 3)
            _conv(out, f"body.{level * 2 + block}.block2", ch, ch, 1)
    return out


def make_t2i_adapter(arch: str, size: str, seed: int, out_path: str | Path) -> Path:
    """Write a random-weight full T2I-Adapter (fp16, original layout, one-channel hint)."""
    return write_layout(t2i_adapter_layout(arch, size), seed, out_path, "fp16", rule=control_tensor)


def controlnet_values(arch: str, size: str, seed: int) -> dict[str, torch.Tensor]:
    """The original-layout tensors `make_controlnet` writes, in memory."""
    return random_layout_tensors(controlnet_layout(arch, size), seed, rule=control_tensor)


CONTROL_KINDS = ("controlnet", "controlnet-diffusers", "controlnet-union", "control-lora", "t2i-adapter")


def main(argv: list[str] | None = None) -> int:
    """CLI: `make-checkpoint --kind K --arch A --size tiny|full --seed N OUT.safetensors` for control files."""
    ap = argparse.ArgumentParser(prog="diffgraph make-checkpoint", description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=CONTROL_KINDS, required=True)
    ap.add_argument("--arch", choices=CONTROLNET_ARCHS, required=True)
    ap.add_argument("--size", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("out", help="output .safetensors path")
    args = ap.parse_args(argv)
    if args.kind == "control-lora":
        path = make_control_lora(args.arch, args.size, args.seed, args.out)
    elif args.kind == "t2i-adapter":
        path = make_t2i_adapter(args.arch, args.size, args.seed, args.out)
    else:
        layout = {"controlnet-diffusers": "diffusers", "controlnet-union": "union"}.get(args.kind, "ldm")
        path = make_controlnet(args.arch, args.size, args.seed, args.out, layout)
    print(
        f"wrote {path} ({path.stat().st_size} bytes, {args.arch} {args.size} {args.kind}, seed {args.seed})"
    )
    return 0

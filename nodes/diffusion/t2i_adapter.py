"""T2I-Adapter files through diffusers' T2IAdapter: the original (TencentARC) and diffusers layouts.

The original layout names the adapter's parts `conv_in`, `body.K.{in_conv,block1,block2}` with K running
over levels x 2 residual blocks; diffusers names the same tensors `adapter.conv_in`,
`adapter.body.L.in_conv` and `adapter.body.L.resnets.R.{block1,block2}`. An input of 256 or 768 channels
after pixel-unshuffling marks the SDXL adapter (16x unshuffle), otherwise 8x (SD1.x), as ComfyUI decides.
Only the full adapter is built: light adapters, convolution downsampling and 3x3 second convolutions
are refused with the file's name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from diffusers import T2IAdapter

from nodes.diffusion.checkpoint_io import CheckpointFormatError, read_weights

RES_BLOCKS = 2
XL_INPUTS = (256, 768)


def original_to_diffusers(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Original adapter tensor names to diffusers' (values unchanged)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if "down_opt" in key:
            raise CheckpointFormatError(
                f"{name}: T2I-Adapters with convolution downsampling are not supported"
            )
        if key.startswith("conv_in."):
            out["adapter." + key] = value
            continue
        m = re.fullmatch(r"body\.(\d+)\.(in_conv|block1|block2)\.(weight|bias)", key)
        if m is None:
            raise CheckpointFormatError(f"{name}: unexpected T2I-Adapter tensor {key}")
        level, block = divmod(int(m.group(1)), RES_BLOCKS)
        part = m.group(2)
        where = (
            f"adapter.body.{level}.in_conv"
            if part == "in_conv"
            else f"adapter.body.{level}.resnets.{block}.{part}"
        )
        out[f"{where}.{m.group(3)}"] = value
    return out


def adapter_config(state: dict[str, torch.Tensor], name: str) -> dict[str, Any]:
    """T2IAdapter constructor arguments read from diffusers-named tensors."""
    conv_in = state["adapter.conv_in.weight"]
    cin, width = conv_in.shape[1], conv_in.shape[0]
    xl = cin in XL_INPUTS
    factor = 16 if xl else 8
    levels = len({int(m.group(1)) for k in state if (m := re.match(r"adapter\.body\.(\d+)\.", k))})
    second = state["adapter.body.0.resnets.0.block2.weight"]
    if second.shape[-1] != 1:
        raise CheckpointFormatError(
            f"{name}: T2I-Adapters with {second.shape[-1]}x{second.shape[-1]} second convolutions are not supported"
        )
    channels = [width] + [
        state[f"adapter.body.{i}.resnets.0.block1.weight"].shape[0] for i in range(1, levels)
    ]
    return {
        "in_channels": cin // (factor * factor),
        "channels": channels,
        "num_res_blocks": RES_BLOCKS,
        "downscale_factor": factor,
        "adapter_type": "full_adapter_xl" if xl else "full_adapter",
    }


def build_t2i_adapter(path: Path, layout: str, dtype: torch.dtype) -> Any:
    """A diffusers T2IAdapter from an original- or diffusers-layout file."""
    raw = read_weights(path, cast=lambda _key: torch.float32)
    if "adapter" in raw and not raw["adapter"].is_floating_point():
        raise CheckpointFormatError(f"{path.name}: nested adapter checkpoints are not supported")
    state = raw if layout == "t2i_diffusers" else original_to_diffusers(raw, path.name)
    cfg = adapter_config(state, path.name)
    with torch.device("meta"):
        model: Any = T2IAdapter(**cfg)
    result = model.load_state_dict({k: v.to(dtype) for k, v in state.items()}, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointFormatError(
            f"{path.name}: the T2I-Adapter lacks {result.missing_keys[:3]} and has unknown {result.unexpected_keys[:3]}"
        )
    return model.eval().requires_grad_(False)


def adapter_hint(hint: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A one-channel adapter takes the mean of an RGB hint's channels."""
    if in_channels == 1 and hint.shape[1] > 1:
        return hint.mean(dim=1, keepdim=True)
    return hint

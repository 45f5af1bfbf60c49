"""ComfyUI's `comfy.utils` for packs: ProgressBar (reported on the running node) and resize helpers."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual alias

from nodes.comfy_compat.runtime import current

PROGRESS_BAR_ENABLED = True


def set_progress_bar_enabled(enabled: bool) -> None:
    """Packs may switch progress off; reports stay on here (they cost one event per step)."""
    global PROGRESS_BAR_ENABLED
    PROGRESS_BAR_ENABLED = enabled


class ProgressBar:
    """Step progress of the running node, sent as `progress` events; update() also honours interrupts."""

    def __init__(self, total: int, node_id: str | None = None):
        self.total = total
        self.current = 0
        self.node_id = node_id

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        """Set progress to value (of total)."""
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        ctx = current()
        if ctx is not None:
            ctx.progress(self.current, self.total)

    def update(self, value: int) -> None:
        """Advance by value steps."""
        self.update_absolute(self.current + value)


def _center_crop(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    old_h, old_w = samples.shape[-2], samples.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = round((old_w - old_w * new_aspect / old_aspect) / 2) if old_aspect > new_aspect else 0
    y = round((old_h - old_h * old_aspect / new_aspect) / 2) if old_aspect < new_aspect else 0
    return samples[..., y : old_h - y, x : old_w - x]


def common_upscale(
    samples: torch.Tensor, width: int, height: int, upscale_method: str, crop: str
) -> torch.Tensor:
    """Resize [B, C, H, W] to (height, width); crop="center" keeps the aspect ratio by cropping first."""
    if crop == "center":
        samples = _center_crop(samples, width, height)
    if upscale_method in ("bislerp", "lanczos"):
        raise NotImplementedError(f"upscale method {upscale_method!r} is not provided to custom nodes")
    mode = "nearest" if upscale_method == "nearest-exact" else upscale_method
    return F.interpolate(samples, size=(height, width), mode=mode)


def repeat_to_batch_size(tensor: torch.Tensor, batch_size: int, dim: int = 0) -> torch.Tensor:
    """Repeat (or cut) a tensor along dim to batch_size items."""
    if tensor.shape[dim] > batch_size:
        return tensor.narrow(dim, 0, batch_size)
    if tensor.shape[dim] < batch_size:
        reps = [1] * tensor.ndim
        reps[dim] = -(-batch_size // tensor.shape[dim])
        return tensor.repeat(reps).narrow(dim, 0, batch_size)
    return tensor


def load_torch_file(
    path: str, safe_load: bool = True, device: Any = None, return_metadata: bool = False
) -> Any:
    """Load a .safetensors state dict (pickled formats are refused: they can run code)."""
    if not str(path).lower().endswith((".safetensors", ".sft")):
        raise ValueError(f"{path}: only safetensors files are loaded for custom nodes")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt", device=str(device or "cpu")) as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        metadata = handle.metadata()
    return (state, metadata) if return_metadata else state

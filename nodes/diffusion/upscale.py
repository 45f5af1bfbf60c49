"""Upscale models through spandrel: reading the file, detecting the architecture, running it tiled.

spandrel (the field's architecture library: ESRGAN, RealESRGAN, SwinIR, HAT, DAT, ...) builds the
network from a state dict. Its package imports torchvision for two architectures only (LaMa inpainting
and RestoreFormer face restoration). Where torchvision is not installed (a CPU-only torch whose
matching torchvision is not on the index), `import_spandrel` imports spandrel with a placeholder
torchvision present only for the duration of that import, then removes it again so nothing else sees
it; the two architectures that would need the real one are then left out of detection, and a file of
theirs is refused with a message instead of failing later.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engine import UserFacingError, is_out_of_memory
from nodes.diffusion.checkpoint_io import (
    PICKLE_SUFFIXES,
    CheckpointFormatError,
    pickle_allowed,
    read_pickle,
    read_safetensors,
)
from nodes.ops.tiles import tile_count, tiled_scale

# The architectures whose spandrel modules use torchvision functions when they run.
TORCHVISION_ARCHES = ("LaMa", "RestoreFormer")
_PLACEHOLDERS = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")
_IMPORT_LOCK = threading.Lock()
# ComfyUI's tile size and overlap for upscale models, and the smallest tile its OOM retry tries.
TILE, OVERLAP, MIN_TILE = 512, 32, 128


class UpscaleModelError(UserFacingError):
    """An upscale model file that spandrel cannot use, or a model that is not a single-image upscaler."""

    code = "unsupported_upscale_model"


def _placeholder(name: str) -> types.ModuleType:
    """A stand-in module whose every public attribute raises when called (never reached: see module doc)."""
    module = types.ModuleType(name, "placeholder for a missing torchvision while spandrel is imported")

    def attribute(attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)

        def unavailable(*_args: Any, **_kwargs: Any) -> Any:
            raise ModuleNotFoundError(f"torchvision is not installed ({name}.{attr} was called)")

        return unavailable

    module.__getattr__ = attribute  # type: ignore[method-assign]
    module.__path__ = []
    return module


def import_spandrel() -> tuple[types.ModuleType, bool]:
    """The spandrel package and whether the real torchvision backs it."""
    if importlib.util.find_spec("spandrel") is None:
        raise UpscaleModelError(
            "upscale models need the spandrel package; install it with `pip install spandrel` "
            "(add --no-deps where torchvision must not be installed)"
        )
    with _IMPORT_LOCK:
        if "spandrel" in sys.modules:
            return sys.modules["spandrel"], importlib.util.find_spec("torchvision") is not None
        if importlib.util.find_spec("torchvision") is not None:
            return importlib.import_module("spandrel"), True
        sys.modules.update({name: _placeholder(name) for name in _PLACEHOLDERS})
        try:
            return importlib.import_module("spandrel"), False
        finally:
            for name in _PLACEHOLDERS:
                sys.modules.pop(name, None)


def _registry() -> Any:
    """spandrel's registry, without the torchvision architectures when torchvision is missing."""
    spandrel, real_torchvision = import_spandrel()
    if real_torchvision:
        return spandrel.MAIN_REGISTRY
    registry = spandrel.ArchRegistry()
    registry.add(
        *(s for s in spandrel.MAIN_REGISTRY if s.architecture.id not in TORCHVISION_ARCHES),
        ignore_duplicates=True,
    )
    return registry


def read_state_dict(path: Path) -> dict[str, Any]:
    """A file's state dict: safetensors directly, .pth/.pt/.ckpt only behind the pickle opt-in."""
    if not path.is_file():
        raise CheckpointFormatError(f"{path}: no such file")
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        return dict(read_safetensors(path))
    if not pickle_allowed():
        return read_pickle(path)  # raises the refusal that names the opt-in
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe pickles
        raise CheckpointFormatError(f"{path.name}: cannot read as a weights-only pickle: {exc}") from exc
    # Training checkpoints wrap the weights ({"params_ema": {...}}); unwrap before keeping tensors.
    for wrapper in ("params_ema", "params", "state_dict"):
        if isinstance(raw, dict) and isinstance(raw.get(wrapper), dict):
            raw = raw[wrapper]
            break
    if not isinstance(raw, dict):
        raise CheckpointFormatError(f"{path.name}: pickle does not hold a state dict")
    return {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)}


class UpscaleNet(torch.nn.Module):
    """A spandrel model descriptor held as a module, so the model store can size, move and evict it."""

    def __init__(self, descriptor: Any):
        super().__init__()
        self.net = descriptor.model
        self.descriptor = descriptor

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """spandrel's own call: pads to the size the architecture needs, clamps to 0..1, crops back."""
        return self.descriptor(pixels)


def load_upscale_model(path: Path) -> UpscaleNet:
    """Build the network a file describes (spandrel detects the architecture from its keys)."""
    sd = read_state_dict(path)
    # SwinIR files saved from DataParallel carry a `module.` prefix (ComfyUI strips it too).
    if "module.layers.0.residual_group.blocks.0.norm1.weight" in sd:
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
    spandrel, real_torchvision = import_spandrel()
    try:
        descriptor = spandrel.ModelLoader(registry=_registry()).load_from_state_dict(sd)
    except spandrel.UnsupportedModelError as exc:
        hint = (
            "" if real_torchvision else f" ({', '.join(TORCHVISION_ARCHES)} need torchvision, not installed)"
        )
        raise UpscaleModelError(
            f"{path.name}: spandrel does not recognise this model's architecture{hint}"
        ) from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UpscaleModelError(
            f"{path.name} is a {descriptor.architecture.name} model for masked inpainting, "
            "not a single-image upscale model"
        )
    return UpscaleNet(descriptor.eval())


def upscale_pixels(
    net: UpscaleNet, pixels: torch.Tensor, device: torch.device, on_tile: Callable[[int, int], None]
) -> torch.Tensor:
    """Enlarge [B, H, W, 3] pixels in 0..1 tile by tile; halves the tile on out-of-memory (down to 128).

    `on_tile(done, total)` is called after every tile.
    """
    chw = pixels.movedim(-1, 1)
    tile = TILE
    while True:
        try:
            out = _tiled_pass(net, chw, tile, device, on_tile)
            break
        except (torch.OutOfMemoryError, RuntimeError) as exc:
            if not is_out_of_memory(exc) or tile // 2 < MIN_TILE:
                raise
            tile //= 2
    return out.movedim(1, -1).clamp(0.0, 1.0)


def _tiled_pass(
    net: UpscaleNet, chw: torch.Tensor, tile: int, device: torch.device, on_tile: Callable[[int, int], None]
) -> torch.Tensor:
    """One tiled pass at a given tile size, counting tiles for progress."""
    descriptor = net.descriptor
    dtype = next(iter(net.parameters())).dtype
    total = chw.shape[0] * tile_count(chw.shape[2], chw.shape[3], tile, OVERLAP)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        on_tile(done, total)

    return tiled_scale(
        chw,
        lambda t: descriptor(t.to(device, dtype)),
        tile=tile,
        overlap=OVERLAP,
        scale=descriptor.scale,
        out_channels=descriptor.output_channels,
        on_tile=step,
    )

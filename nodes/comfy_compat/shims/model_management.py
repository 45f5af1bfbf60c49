"""ComfyUI's `comfy.model_management` for packs: devices, interrupt checks and memory queries."""

from __future__ import annotations

import os
from typing import Any

import torch

from engine import Interrupted
from nodes.comfy_compat.runtime import current

# Packs catch this name; it is the engine's own interrupt, so the run stops the same way.
InterruptProcessingException = Interrupted
OOM_EXCEPTION = torch.cuda.OutOfMemoryError


def get_torch_device() -> torch.device:
    """The device models run on."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where node outputs live between nodes (the CPU, as in ComfyUI's default)."""
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    """Where idle models wait."""
    return torch.device("cpu")


def processing_interrupted() -> bool:
    """Whether the user cancelled the running prompt."""
    ctx = current()
    return ctx is not None and ctx._cancel.cancelled


def throw_exception_if_processing_interrupted() -> None:
    """Raise the interrupt when the user cancelled."""
    ctx = current()
    if ctx is not None:
        ctx.check_cancelled()


def interrupt_current_processing(value: bool = True) -> None:
    """Cancel the running prompt (as the client's interrupt button does)."""
    ctx = current()
    if ctx is not None and value:
        ctx._cancel.cancel()


def get_free_memory(dev: Any = None, torch_free_too: bool = False) -> Any:
    """Free bytes on the device (system memory for the CPU)."""
    device = torch.device(dev) if dev is not None else get_torch_device()
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return (free, free) if torch_free_too else free
    free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    return (free, free) if torch_free_too else free


def get_total_memory(dev: Any = None, torch_total_too: bool = False) -> Any:
    """Total bytes on the device."""
    device = torch.device(dev) if dev is not None else get_torch_device()
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    else:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return (total, total) if torch_total_too else total


def soft_empty_cache(force: bool = False) -> None:
    """Return cached GPU memory to the driver."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def is_device_cpu(device: Any) -> bool:
    """Whether device is the CPU."""
    return torch.device(device).type == "cpu"

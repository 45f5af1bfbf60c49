"""Device choice (cuda, mps, cpu) and the compute dtype policy, stated in one place.

Overrides: `DIFFGRAPH_DEVICE` (cpu, cuda, cuda:1, mps) and `DIFFGRAPH_DTYPE` (fp32, fp16, bf16).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

from engine.errors import DiffgraphError

DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# "compute": big matmul models that tolerate half precision (denoisers, text encoders).
# "precise": models whose outputs overflow in fp16 (VAE decoders): bf16 where supported, else fp32.
Role = Literal["compute", "precise"]


class DeviceError(DiffgraphError):
    """The requested device or dtype is not available on this machine."""

    code = "device_unavailable"


def pick_device(requested: str | None = None) -> torch.device:
    """The compute device: the request or $DIFFGRAPH_DEVICE, else cuda, then mps, then cpu."""
    name = requested or os.environ.get("DIFFGRAPH_DEVICE") or ""
    if name:
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise DeviceError(f"device {name!r} requested but CUDA is not available; use 'cpu'")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise DeviceError(f"device {name!r} requested but MPS is not available; use 'cpu'")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class DevicePolicy:
    """Where models run and in which dtype; one instance per model store."""

    device: torch.device
    forced_dtype: torch.dtype | None = None

    @classmethod
    def from_env(cls, device: str | None = None, dtype: str | None = None) -> DevicePolicy:
        """Build the policy from arguments, falling back to $DIFFGRAPH_DEVICE / $DIFFGRAPH_DTYPE."""
        dtype_name = dtype or os.environ.get("DIFFGRAPH_DTYPE") or ""
        if dtype_name and dtype_name not in DTYPE_NAMES:
            raise DeviceError(f"unknown dtype {dtype_name!r}; use one of {', '.join(DTYPE_NAMES)}")
        return cls(pick_device(device), DTYPE_NAMES.get(dtype_name))

    def compute_dtype(self, role: Role, weights_dtype: torch.dtype = torch.float16) -> torch.dtype:
        """The dtype a model runs in on this device.

        CPU always computes in fp32: half-precision CPU kernels are slow or missing, and fp32 keeps
        results comparable with reference outputs. On GPUs, "compute" models run in the half type of
        their weights (bf16 weights stay bf16, otherwise fp16); "precise" ones prefer bf16, else fp32.
        """
        if self.forced_dtype is not None:
            return self.forced_dtype
        if self.device.type == "cpu":
            return torch.float32
        bf16_ok = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        if role == "precise":
            return torch.bfloat16 if bf16_ok else torch.float32
        if weights_dtype == torch.bfloat16 and (bf16_ok or self.device.type == "mps"):
            return torch.bfloat16
        return torch.float16

    def free_memory(self) -> int | None:
        """Free bytes on the compute device (None where torch cannot tell, e.g. cpu)."""
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            return int(free)
        return None

    def empty_cache(self) -> None:
        """Return cached allocator blocks to the driver after unloading models."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an accelerator out-of-memory error (callers retry with a smaller working set)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()

"""Device choice (cuda, mps, cpu) and the compute dtype policy, stated in one place.

Overrides: `DIFFGRAPH_DEVICE` (cpu, cuda, cuda:1, mps), `DIFFGRAPH_DTYPE` (fp32, fp16, bf16) and
`DIFFGRAPH_PRECISION` (exact, the default, or fast: bf16 denoiser on CPUs with native bf16 instructions).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from engine.errors import DiffgraphError
from engine.precision import PRECISION_ENV, PRECISIONS, Precision, parse_precision

log = logging.getLogger(__name__)

__all__ = ["PRECISION_ENV", "PRECISIONS", "DevicePolicy", "Precision", "parse_precision"]

DTYPE_NAMES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

# "compute": big matmul models that tolerate half precision (denoisers, text encoders).
# "precise": models whose outputs overflow in fp16 (VAE decoders): bf16 where supported, else fp32.
# "denoiser": the UNet, run once per step; like "compute", and bf16 on CPU in fast precision.
Role = Literal["compute", "precise", "denoiser"]


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


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports (empty where /proc/cpuinfo does not exist)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), so bf16 matmuls beat fp32 ones."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@dataclass(frozen=True)
class DevicePolicy:
    """Where models run and in which dtype; one instance per model store.

    `precision` "exact" keeps today's dtypes; "fast" runs the denoiser in bf16 on CPUs with native bf16
    (about 1e-2 relative L2 per UNet call against fp32) and changes nothing elsewhere.
    """

    device: torch.device
    forced_dtype: torch.dtype | None = None
    precision: Precision = "exact"

    @classmethod
    def from_env(
        cls, device: str | None = None, dtype: str | None = None, precision: str | None = None
    ) -> DevicePolicy:
        """Build the policy from arguments, falling back to $DIFFGRAPH_DEVICE / _DTYPE / _PRECISION."""
        dtype_name = dtype or os.environ.get("DIFFGRAPH_DTYPE") or ""
        if dtype_name and dtype_name not in DTYPE_NAMES:
            raise DeviceError(f"unknown dtype {dtype_name!r}; use one of {', '.join(DTYPE_NAMES)}")
        policy = cls(pick_device(device), DTYPE_NAMES.get(dtype_name), parse_precision(precision))
        if policy.precision == "fast" and policy.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning(
                "precision fast: this CPU has no native bf16 instructions, so the denoiser stays fp32"
            )
        return policy

    def compute_dtype(
        self, role: Role, weights_dtype: torch.dtype = torch.float16, precision: Precision | None = None
    ) -> torch.dtype:
        """The dtype a model runs in on this device (`precision` overrides the policy's for one run).

        CPU computes in fp32: half-precision CPU kernels are slow or missing, and fp32 keeps results
        comparable with reference outputs; the one exception is the denoiser in "fast" precision on a CPU
        with native bf16, which runs in bf16. On GPUs, "compute" models run in the half type of
        their weights (bf16 weights stay bf16, otherwise fp16); "precise" ones prefer bf16, else fp32.
        """
        if self.forced_dtype is not None:
            return self.forced_dtype
        if self.device.type == "cpu":
            fast = (precision or self.precision) == "fast" and role == "denoiser" and cpu_has_native_bf16()
            return torch.bfloat16 if fast else torch.float32
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
        """Return cached allocator blocks to the driver, and freed host heap to the OS, after unloading models."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        elif self.device.type == "mps":
            torch.mps.empty_cache()
        trim_host_heap()


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", None)


def can_trim_host_heap() -> bool:
    """Whether `trim_host_heap` can do anything here (glibc)."""
    return _malloc_trim() is not None


def trim_host_heap() -> None:
    """Hand freed heap pages back to the OS.

    glibc serves mid-size allocations (up to 32 MB once larger blocks have been freed) from its heap
    and keeps them when they are freed, so a dropped model of many such tensors (T5-XXL in fp8: 16 MB
    per attention matrix) stayed resident: 1.2 GB after T5 was dropped for the FLUX transformer.
    `malloc_trim(0)` returns every free page of the heap. Elsewhere there is nothing to do.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def available_memory(device: torch.device, meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """Bytes a computation on `device` may still allocate: free CUDA memory (plus blocks the caching
    allocator holds unused), the kernel's MemAvailable for cpu; None where neither can be told (mps)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + cached)
    if device.type != "cpu":
        return None
    try:
        text = meminfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an accelerator out-of-memory error (callers retry with a smaller working set)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()

"""How a loaded denoiser runs fast: channels-last memory layout and optional torch.compile, set up once per module.

Channels-last (NHWC) lets oneDNN (CPU) and cuDNN (CUDA) run the UNet's convolutions, GroupNorms and
elementwise chains without layout reorders between them; it only changes the order in which sums are
accumulated (about 2e-6 relative L2 per SD1.5 UNet call in fp32). It pays for half-precision compute and
on CUDA, and not for float32 on CPU, so by default it follows the compute dtype and device
(`channels_last_for`); `DIFFGRAPH_CHANNELS_LAST=1` or `=0` forces it on or off.

Eager float32 on CPU runs 1x1 and deep-level 3x3 convolutions as GEMMs instead (`conv_gemm`) and each
upsampler's nearest 2x + 3x3 convolution as one folded transposed convolution (`upsample_fold`).

`torch.compile` (inductor) fuses the elementwise work around the GEMMs. It is opt-in (`--compile` or
`DIFFGRAPH_COMPILE=1`): the first call of each input shape compiles for minutes on a small CPU. Shapes are
static (`dynamic=False`), so a new seed or prompt of the same token length reuses the compiled graph and
only a new latent size or prompt length compiles again. Compiled code is cached on disk in
`DIFFGRAPH_COMPILE_CACHE` (default ~/.cache/diffgraph/inductor), so later processes skip most of the
work. `DIFFGRAPH_COMPILE=cudagraphs` additionally replays CUDA graphs for fixed shapes on a GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nodes.diffusion import conv_gemm, upsample_fold

log = logging.getLogger(__name__)

CHANNELS_LAST_ENV = "DIFFGRAPH_CHANNELS_LAST"
COMPILE_ENV = "DIFFGRAPH_COMPILE"
COMPILE_CACHE_ENV = "DIFFGRAPH_COMPILE_CACHE"
COMPILE_MODES = ("0", "1", "cudagraphs")

# The prepared callable lives in the module's own __dict__ (not as a registered submodule, so state
# dicts are unchanged): a module evicted from the store takes its compiled graph with it. The entry is
# tagged with the module's id, so a deep copy (a LoRA-patched UNet) prepares itself instead of calling
# the original's compiled graph.
_PREPARED_ATTR = "_diffgraph_prepared"


def channels_last_for(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether a denoiser computing in `dtype` on `device` runs channels-last ($DIFFGRAPH_CHANNELS_LAST).

    Unset means automatic: on for half-precision compute and on CUDA, where it removes layout reorders,
    off for float32 on CPU, where side-by-side runs of the full-size SD1.5 UNet were 2-5% slower with it.
    """
    value = os.environ.get(CHANNELS_LAST_ENV, "").strip().lower()
    if value:
        return value not in ("0", "false", "no", "off")
    return dtype != torch.float32 or device.type == "cuda"


def compile_mode() -> str:
    """$DIFFGRAPH_COMPILE: "0" (default, eager), "1" (torch.compile) or "cudagraphs" (compile + CUDA graphs)."""
    value = os.environ.get(COMPILE_ENV, "0").strip().lower() or "0"
    if value in ("true", "yes", "on"):
        value = "1"
    if value not in COMPILE_MODES:
        raise ValueError(f"{COMPILE_ENV}={value!r} is not one of {', '.join(COMPILE_MODES)}")
    return value


def compile_cache_dir() -> Path:
    """Where inductor keeps compiled kernels between processes."""
    configured = os.environ.get(COMPILE_CACHE_ENV)
    return Path(configured) if configured else Path.home() / ".cache" / "diffgraph" / "inductor"


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Convert the module's 4-d weights to channels-last in place (other tensors are unaffected)."""
    # Module.to accepts memory_format at run time; torch's type stubs omit it.
    return module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def input_layout(x: torch.Tensor) -> torch.Tensor:
    """A 4-d latent batch in the layout the prepared denoiser expects."""
    if x.dim() == 4 and channels_last_for(x.dtype, x.device):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _compiled(module: torch.nn.Module, mode: str, device: torch.device) -> Callable[..., Any]:
    """The module under torch.compile with static shapes and the persistent kernel cache."""
    cache = compile_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    # Inductor reads its cache location from the environment when it first compiles.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache))
    if mode == "cudagraphs" and device.type != "cuda":
        raise ValueError(f"{COMPILE_ENV}=cudagraphs needs a CUDA device, not {device.type}")
    options = "reduce-overhead" if mode == "cudagraphs" else "default"
    log.info("compiling the denoiser (torch.compile, mode %s, cache %s)", options, cache)
    return torch.compile(module, mode=options, dynamic=False, fullgraph=False)  # type: ignore[return-value]


def prepared_denoiser(module: torch.nn.Module) -> Callable[..., Any]:
    """The callable that runs `module` (channels-last and/or compiled per the settings), set up once."""
    owner, fn = module.__dict__.get(_PREPARED_ATTR, (None, None))
    if owner == id(module) and fn is not None:
        return fn
    first = next((p for p in module.parameters() if p.is_floating_point()), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None else torch.float32
    mode = compile_mode()
    if channels_last_for(dtype, device):
        to_channels_last(module)
    elif mode == "0" and conv_gemm.gemm_conv_for(dtype, device):
        # Eager float32 on CPU: 1x1 and deep-level convolutions as GEMMs, upsamplers folded into
        # transposed convolutions (inductor picks its own kernels).
        conv_gemm.install(module)
        upsample_fold.install(module)
    fn = module if mode == "0" else _compiled(module, mode, device)
    module.__dict__[_PREPARED_ATTR] = (id(module), fn)
    return fn

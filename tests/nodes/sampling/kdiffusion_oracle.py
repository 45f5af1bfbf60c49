"""Test-only oracle: k-diffusion 0.1.1 (MIT) `sampling.py` loaded by file path without its package deps."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from functools import cache

import torch


def _append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    return x[(...,) + (None,) * (target_dims - x.ndim)]


@cache
def kdiffusion_sampling() -> types.ModuleType:
    """k_diffusion.sampling, imported with stubs for the parts the samplers never touch."""
    dist = importlib.metadata.distribution("k-diffusion")
    path = next(f for f in dist.files if str(f).endswith("k_diffusion/sampling.py"))
    package = types.ModuleType("kd_oracle")
    package.__path__ = []
    utils = types.ModuleType("kd_oracle.utils")
    utils.append_dims = _append_dims
    package.utils = utils
    sys.modules.setdefault("kd_oracle", package)
    sys.modules.setdefault("kd_oracle.utils", utils)
    if importlib.util.find_spec("torchdiffeq") is None:
        # Only log_likelihood uses odeint; the samplers compared here never call it.
        stub = types.ModuleType("torchdiffeq")
        stub.odeint = None
        sys.modules.setdefault("torchdiffeq", stub)
    spec = importlib.util.spec_from_file_location("kd_oracle.sampling", dist.locate_file(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules["kd_oracle.sampling"] = module
    spec.loader.exec_module(module)
    return module

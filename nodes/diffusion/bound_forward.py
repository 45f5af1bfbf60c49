"""Per-instance forward overrides: bind a replacement forward to chosen submodules, and take it off again.

The forward is a method bound to the submodule itself, so a deep copy (a LoRA-patched UNet) rebinds it
to the copy's own weights, and state dicts are unchanged. A marker in the submodule's __dict__ keeps
`bind_forwards` idempotent and tells `unbind_forwards` which modules it patched.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch


def bind_forwards(
    module: torch.nn.Module,
    eligible: Callable[[torch.nn.Module], bool],
    forward: Callable[..., Any],
    marker: str,
) -> int:
    """Give every eligible submodule of `module` (itself included) `forward`; returns how many got it."""
    count = 0
    for child in module.modules():
        if eligible(child) and not child.__dict__.get(marker):
            child.forward = types.MethodType(forward, child)  # type: ignore[method-assign]
            child.__dict__[marker] = True
            count += 1
    return count


def unbind_forwards(module: torch.nn.Module, marker: str) -> list[torch.nn.Module]:
    """Undo `bind_forwards` for `marker`: the submodules run their class's forward again (returned)."""
    unbound = []
    for child in module.modules():
        if child.__dict__.pop(marker, False):
            del child.forward
            unbound.append(child)
    return unbound

"""Installing the shims under ComfyUI's module names, only while packs load or run, never over a real ComfyUI."""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from engine import DiffgraphError
from nodes.comfy_compat.shims import (
    comfy_types,
    comfy_utils,
    folder_paths,
    graph_utils,
    model_management,
    node_helpers,
    prompt_server,
)

# ComfyUI's own top-level modules: if any is importable from elsewhere, a real ComfyUI is on the path.
COMFY_TOPLEVEL = ("folder_paths", "comfy", "comfy_execution", "comfy_api", "node_helpers", "comfy_extras")
# Parts of ComfyUI this compatibility layer does not provide; importing them fails with a clear message.
INTERNAL_PREFIXES = (
    "comfy.",
    "comfy_extras",
    "comfy_execution.",
    "comfy_api.",
    "latent_preview",
    "comfy_config",
)
MAX_RESOLUTION = 16384  # ComfyUI's `nodes.MAX_RESOLUTION`, which packs import for their size bounds


class ComfyShadowed(DiffgraphError):
    """A real ComfyUI is importable, so its module names must not be replaced."""

    code = "comfyui_on_path"


def _package(name: str, **attrs: Any) -> ModuleType:
    module = types.ModuleType(name, f"diffgraph's stand-in for ComfyUI's {name} package")
    module.__path__ = []  # a package: submodules come from sys.modules
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def shim_modules() -> dict[str, ModuleType]:
    """ComfyUI module name -> the module standing in for it."""
    from nodes.comfy_compat import v3  # V3's io module builds on the V1 adapter, imported late

    latest = v3.latest_module()
    modules = {
        "folder_paths": folder_paths,
        "comfy": _package(
            "comfy", utils=comfy_utils, model_management=model_management, comfy_types=comfy_types
        ),
        "comfy.comfy_types": comfy_types,
        "comfy.comfy_types.node_typing": comfy_types,
        "comfy.utils": comfy_utils,
        "comfy.model_management": model_management,
        "comfy_execution": _package("comfy_execution", graph_utils=graph_utils, graph=graph_utils),
        "comfy_execution.graph_utils": graph_utils,
        "comfy_execution.graph": graph_utils,
        "comfy_api": _package("comfy_api", latest=latest, v0_0_2=latest),
        "comfy_api.latest": latest,
        "comfy_api.v0_0_2": latest,
        "comfy_api.latest.io": latest.io,
        "comfy_api.latest.ui": latest.ui,
        "comfy_api.v0_0_2.io": latest.io,
        "comfy_api.v0_0_2.ui": latest.ui,
        "server": prompt_server,
        "node_helpers": node_helpers,
    }
    return modules


class _InternalsFinder(importlib.abc.MetaPathFinder):
    """Turns an import of ComfyUI internals into an error naming the module and why it is missing."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if fullname.startswith(INTERNAL_PREFIXES) and fullname not in sys.modules:
            raise ModuleNotFoundError(
                f"{fullname} is part of ComfyUI's internals, which diffgraph does not provide to custom "
                "nodes (packs that drive ComfyUI's models directly are not supported yet)",
                name=fullname,
            )
        return None


def check_no_real_comfyui() -> None:
    """Refuse to install when a real ComfyUI is imported or importable: its modules would be shadowed."""
    for name in COMFY_TOPLEVEL:
        loaded = sys.modules.get(name)
        if loaded is not None and not getattr(loaded, "__name__", "").startswith(
            ("nodes.comfy_compat", name)
        ):
            raise ComfyShadowed(f"a module {name!r} is already imported; diffgraph will not replace it")
        if loaded is None and importlib.util.find_spec(name) is not None:
            raise ComfyShadowed(
                f"ComfyUI's module {name!r} is importable from this Python path (a ComfyUI installation?); "
                "custom nodes are not loaded so that it is not shadowed"
            )


_depth = 0
_saved: dict[str, ModuleType | None] = {}
_finder = _InternalsFinder()


@contextmanager
def installed(swap_server: bool = True) -> Iterator[None]:
    """The shims in sys.modules for the duration (re-entrant); what was there before comes back after.

    While nodes run, `server` keeps naming diffgraph's own server package if that is loaded (its
    threads import from it); packs bound ComfyUI's `server` module when they were imported.
    """
    global _depth
    if _depth == 0:
        _install(swap_server)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            _uninstall()


def _install(swap_server: bool) -> None:
    for name, module in shim_modules().items():
        if name == "server" and not swap_server and name in sys.modules:
            continue
        _saved[name] = sys.modules.get(name)
        sys.modules[name] = module
    sys.meta_path.insert(0, _finder)
    ours = sys.modules["nodes"]
    _saved["nodes.MAX_RESOLUTION"] = None
    ours.MAX_RESOLUTION = MAX_RESOLUTION  # type: ignore[attr-defined]


def _uninstall() -> None:
    sys.meta_path.remove(_finder)
    _saved.pop("nodes.MAX_RESOLUTION", None)
    if hasattr(sys.modules["nodes"], "MAX_RESOLUTION"):
        del sys.modules["nodes"].MAX_RESOLUTION  # type: ignore[attr-defined]
    for name, previous in _saved.items():
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    _saved.clear()

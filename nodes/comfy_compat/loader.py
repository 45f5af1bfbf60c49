"""Loading node packs written for ComfyUI from the folders the user names, reporting each one.

A pack is a package folder (with __init__.py) or a single .py file directly inside a custom-nodes
folder. V1 packs export NODE_CLASS_MAPPINGS (and NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY); V3 packs
export `comfy_entrypoint`, an async function returning a ComfyExtension. A pack that fails to import
is logged and listed with its error; the others still load.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import traceback
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import ChoiceProvider, Environment, PackInfo, Registry
from nodes.comfy_compat.install import ComfyShadowed, check_no_real_comfyui, installed
from nodes.comfy_compat.pack_routes import UnsupportedRoute, endpoint, starlette_path
from nodes.comfy_compat.runtime import CompatState, run_coroutine
from nodes.comfy_compat.shims.prompt_server import PromptServer
from nodes.comfy_compat.v1 import COMBO_SOURCE_PREFIX, ComfyV1Node, adapt_v1, combo_choices

log = logging.getLogger(__name__)
MODULE_PREFIX = "custom_nodes."  # packs import as custom_nodes.<folder>, as ComfyUI lists them


def pack_candidates(folder: Path) -> list[Path]:
    """Pack folders and .py files in a custom-nodes folder, sorted; hidden and .disabled ones skipped."""
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "__")) or entry.name.endswith(".disabled"):
            continue
        if entry.is_dir() or entry.suffix == ".py":
            found.append(entry)
    return found


def compat_choices(fallback: ChoiceProvider, registry: Registry) -> ChoiceProvider:
    """Choices of adapted nodes' combos, read from their INPUT_TYPES each time (file lists change)."""

    def choices(source: str) -> list[Any]:
        if not source.startswith(COMBO_SOURCE_PREFIX):
            return fallback(source)
        class_type, name = source[len(COMBO_SOURCE_PREFIX) :].rsplit(":", 1)
        node_cls = registry.get(class_type)
        if node_cls is None or not issubclass(node_cls, ComfyV1Node):
            raise KeyError(f"unknown combo source {source!r}")
        with installed(swap_server=False):
            input_types = node_cls.comfy_cls.INPUT_TYPES()
        for section in ("required", "optional"):
            entry = (input_types.get(section) or {}).get(name)
            if entry is not None:
                return combo_choices(entry)
        return []

    return choices


def _ensure_parent_package() -> None:
    """An empty `custom_nodes` package, so a pack's `from . import sub` can resolve its own name."""
    parent = MODULE_PREFIX.rstrip(".")
    if parent not in sys.modules:
        package = types.ModuleType(parent, "The custom-node packs diffgraph loaded.")
        package.__path__ = []
        sys.modules[parent] = package


def _import_pack(path: Path) -> Any:
    name = MODULE_PREFIX + path.stem
    init = path / "__init__.py" if path.is_dir() else path
    if not init.is_file():
        raise ImportError(f"{path} has no __init__.py, so it is not a Python package")
    locations = [str(path)] if path.is_dir() else None
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    _ensure_parent_package()
    # Loading a pack again (a new registry in the same process) runs its submodules again too, so
    # what they declare on import (routes, node classes) reaches the new registry.
    for stale in [m for m in sys.modules if m.startswith(name + ".")]:
        del sys.modules[stale]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _pack_nodes(module: Any) -> tuple[str, list[tuple[str, type, str | None]]]:
    """The pack's protocol and its (class_type, class, display name) triples."""
    if hasattr(module, "comfy_entrypoint"):
        from nodes.comfy_compat.v3 import v3_nodes

        extension = run_coroutine(module.comfy_entrypoint())
        return "comfyui-v3", run_coroutine(v3_nodes(extension))
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if not isinstance(mappings, dict):
        raise ImportError("the pack exports neither NODE_CLASS_MAPPINGS nor comfy_entrypoint")
    names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
    return "comfyui-v1", [(class_type, cls, names.get(class_type)) for class_type, cls in mappings.items()]


def load_pack(registry: Registry, path: Path) -> PackInfo:
    """Import one pack and register its nodes; failures are returned in the PackInfo, never raised."""
    info = PackInfo(name=path.stem, path=path, kind="comfyui")
    declared = len(PromptServer.instance.routes.routes)
    try:
        module = _import_pack(path)
        info.kind, found = _pack_nodes(module)
    except Exception as exc:  # a pack is foreign code: any failure is reported, and loading goes on
        info.error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        log.error("custom node pack %s (%s) failed to load:\n%s", info.name, path, traceback.format_exc())
        return info
    web = getattr(module, "WEB_DIRECTORY", None)
    if web is not None and path.is_dir() and (path / str(web)).is_dir():
        info.web_dir = (path / str(web)).resolve()
    problems = _routes(info, PromptServer.instance.routes.routes[declared:])
    for class_type, comfy_cls, display in found:
        if class_type in registry:
            problems.append(f"{class_type}: a node of that name is already registered; kept the first")
            continue
        try:
            registry.register(adapt_v1(class_type, comfy_cls, display, MODULE_PREFIX + path.stem))
        except Exception as exc:  # one bad class must not hide the pack's other nodes
            problems.append(f"{class_type}: {type(exc).__name__}: {exc}")
            continue
        info.nodes.append(class_type)
    if problems:
        info.error = "; ".join(problems)
        log.error("custom node pack %s (%s): %s", info.name, path, info.error)
    return info


def _routes(info: PackInfo, declared: list[tuple[str, str, Any]]) -> list[str]:
    """Record the routes a pack declared while importing; the ones that cannot be served are problems."""
    problems = []
    for method, path, handler in declared:
        if method == "STATIC":
            problems.append(f"static route {path}: serve files through WEB_DIRECTORY instead")
            continue
        try:
            info.routes.append((method, starlette_path(path), endpoint(handler)))
        except UnsupportedRoute as exc:
            problems.append(str(exc))
    return problems


def load_custom_nodes(registry: Registry, folders: Sequence[Path], env: Environment) -> list[PackInfo]:
    """Load every pack in the folders into the registry; each is recorded in registry.packs and logged."""
    CompatState.env = env
    candidates = [path for folder in folders for path in pack_candidates(Path(folder))]
    if not candidates:
        return []
    try:
        check_no_real_comfyui()
    except ComfyShadowed as exc:
        log.error("custom nodes not loaded: %s", exc.message)
        infos = [PackInfo(path.stem, path, "comfyui", error=exc.message) for path in candidates]
        registry.packs.extend(infos)
        return infos
    registry.choices = compat_choices(registry.choices, registry)
    infos = []
    with installed():
        for path in candidates:
            info = load_pack(registry, path)
            if info.error is None:
                log.info("loaded custom node pack %s from %s (%d nodes)", info.name, path, len(info.nodes))
            infos.append(info)
    registry.packs.extend(infos)
    return infos

"""V3 packs: a `ComfyExtension`'s `io.ComfyNode` classes, each seen through a V1-protocol facade.

The facade class carries the INPUT_TYPES, RETURN_TYPES and hooks ComfyUI derives from a V3 schema,
so the V1 adapter runs both protocols the same way.
"""

from __future__ import annotations

import inspect
import types
from abc import ABC, abstractmethod
from typing import Any

from engine import ExecutionBlocker
from nodes.comfy_compat.runtime import current
from nodes.comfy_compat.shims import v3_io, v3_ui


class ComfyExtension(ABC):
    """What a V3 pack's comfy_entrypoint returns."""

    async def on_load(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Called once before the node list is read."""

    @abstractmethod
    async def get_node_list(self) -> list[type[v3_io.ComfyNode]]:
        """The pack's node classes."""


def _report_progress(value: float, max_value: float, node_id: str | None, preview_image: Any) -> None:
    ctx = current()
    if ctx is None:
        raise ValueError("set_progress was called outside a running node")
    ctx.check_cancelled()
    ctx._on_progress(node_id or ctx.node_id, int(value), int(max_value))
    if preview_image is not None and hasattr(preview_image, "save"):  # a PIL image
        ctx.preview(preview_image)


class _Execution:
    """comfy_api's `execution` namespace: progress of the running node."""

    async def set_progress(
        self, value: float, max_value: float, node_id: str | None = None, preview_image: Any = None, **_: Any
    ) -> None:
        """Report progress (value of max_value), optionally with a preview picture."""
        _report_progress(value, max_value, node_id, preview_image)


class _ExecutionSync:
    """The synchronous form of _Execution."""

    def set_progress(
        self, value: float, max_value: float, node_id: str | None = None, preview_image: Any = None, **_: Any
    ) -> None:
        """Report progress (value of max_value), optionally with a preview picture."""
        _report_progress(value, max_value, node_id, preview_image)


class ComfyAPI:
    """The API object packs instantiate: `ComfyAPI().execution.set_progress(...)`."""

    def __init__(self) -> None:
        self.execution = _Execution()


class ComfyAPISync:
    """ComfyAPI with synchronous methods."""

    def __init__(self) -> None:
        self.execution = _ExecutionSync()


def latest_module() -> types.ModuleType:
    """The module packs import as comfy_api.latest (and v0_0_2)."""
    module = types.ModuleType("comfy_api.latest", "diffgraph's stand-in for ComfyUI's V3 API")
    module.__path__ = []  # type: ignore[attr-defined]
    module.io = v3_io  # type: ignore[attr-defined]
    module.ui = v3_ui  # type: ignore[attr-defined]
    module.ComfyExtension = ComfyExtension  # type: ignore[attr-defined]
    module.ComfyAPI = ComfyAPI  # type: ignore[attr-defined]
    module.ComfyAPISync = ComfyAPISync  # type: ignore[attr-defined]
    return module


async def v3_nodes(extension: Any) -> list[tuple[str, type, str | None]]:
    """(class_type, V1 facade, display name) for each node of an extension."""
    await extension.on_load()
    found = []
    for node_cls in await extension.get_node_list():
        facade = v1_facade(node_cls)
        found.append((facade.NODE_ID, facade, facade.DISPLAY_NAME))
    return found


def _overridden(node_cls: type, hook: str) -> bool:
    return getattr(node_cls, hook).__func__ is not getattr(v3_io.ComfyNode, hook).__func__


def _as_v1(returned: Any, outputs: int) -> Any:
    """A NodeOutput (or a bare value) as a V1 return value."""
    if isinstance(returned, ExecutionBlocker):
        return returned
    if not isinstance(returned, v3_io.NodeOutput):
        return returned
    result: dict[str, Any] = {}
    if returned.block_execution is not None:
        result["result"] = (ExecutionBlocker(returned.block_execution),) * outputs
    elif returned.result is not None:
        result["result"] = returned.result
    elif outputs == 0:
        result["result"] = ()
    if returned.ui is not None:
        ui = returned.ui if isinstance(returned.ui, dict) else returned.ui.as_dict()
        result["ui"] = {k: list(v) if isinstance(v, tuple) else v for k, v in ui.items()}
    if returned.expand is not None:
        result["expand"] = returned.expand
    return result


def _input_types(schema: v3_io.Schema) -> dict[str, Any]:
    required: dict[str, Any] = {}
    optional: dict[str, Any] = {}
    for item in schema.inputs:
        (optional if item.optional else required)[item.id] = item.entry()
    types_: dict[str, Any] = {"required": required}
    if optional:
        types_["optional"] = optional
    if schema.hidden:
        types_["hidden"] = {Hidden(h).name: Hidden(h).value for h in schema.hidden}
    return types_


Hidden = v3_io.Hidden


def v1_facade(node_cls: Any) -> Any:
    """A V1-protocol class running a V3 ComfyNode."""
    schema = node_cls.define_schema()  # type: ignore[attr-defined]
    input_types = _input_types(schema)
    hidden_names = set(input_types.get("hidden", {}))
    outputs = schema.outputs
    is_async = inspect.iscoroutinefunction(node_cls.execute)  # type: ignore[attr-defined]

    def clone(kwargs: dict[str, Any]) -> Any:
        # execute() reads cls.hidden; each call gets a subclass holding its own values.
        holder = v3_io.HiddenHolder({name: kwargs.pop(name) for name in list(kwargs) if name in hidden_names})
        return type(node_cls.__name__, (node_cls,), {"hidden": holder})

    if is_async:

        async def run(self: Any, **kwargs: Any) -> Any:
            return _as_v1(await clone(kwargs).execute(**kwargs), len(outputs))
    else:

        def run(self: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return _as_v1(clone(kwargs).execute(**kwargs), len(outputs))

    namespace: dict[str, Any] = {
        "NODE_ID": schema.node_id,
        "DISPLAY_NAME": schema.display_name,
        "INPUT_TYPES": classmethod(lambda cls: _input_types(node_cls.define_schema())),  # type: ignore[attr-defined]
        "RETURN_TYPES": tuple(out.io_type for out in outputs),
        "RETURN_NAMES": tuple(out.display_name or out.io_type for out in outputs),
        "OUTPUT_IS_LIST": tuple(out.is_output_list for out in outputs),
        "FUNCTION": "run",
        "run": run,
        "CATEGORY": schema.category,
        "DESCRIPTION": schema.description,
        "OUTPUT_NODE": schema.is_output_node,
        "INPUT_IS_LIST": schema.is_input_list,
        "NOT_IDEMPOTENT": schema.not_idempotent,
        "DEPRECATED": schema.is_deprecated,
        "EXPERIMENTAL": schema.is_experimental,
    }
    if any(out.tooltip for out in outputs):
        namespace["OUTPUT_TOOLTIPS"] = tuple(out.tooltip or "" for out in outputs)
    if schema.search_aliases:
        namespace["SEARCH_ALIASES"] = list(schema.search_aliases)
    if _overridden(node_cls, "validate_inputs"):
        namespace["VALIDATE_INPUTS"] = node_cls.validate_inputs  # type: ignore[attr-defined]
    if _overridden(node_cls, "fingerprint_inputs"):
        namespace["IS_CHANGED"] = node_cls.fingerprint_inputs  # type: ignore[attr-defined]
    if _overridden(node_cls, "check_lazy_status"):
        lazy = node_cls.check_lazy_status  # type: ignore[attr-defined]
        namespace["check_lazy_status"] = staticmethod(lazy)
    return type(f"V3_{node_cls.__name__}", (), namespace)

"""The V1 adapter: a ComfyUI node class (INPUT_TYPES, RETURN_TYPES, FUNCTION) as a diffgraph Node."""

from __future__ import annotations

import inspect
from enum import Enum
from typing import Any, ClassVar, cast

from pydantic import create_model

from engine import (
    WIDGET_OPTION_KEYS,
    ExecutionBlocker,
    Hidden,
    InputSpec,
    Node,
    NodeOutputs,
    NodeResult,
    NodeSpec,
    OutputSpec,
    RunContext,
)
from nodes.comfy_compat.install import installed
from nodes.comfy_compat.runtime import run_coroutine, running
from nodes.comfy_compat.shims.graph_utils import GraphBuilder, is_link
from nodes.comfy_compat.values import from_comfy, to_comfy

COMBO_SOURCE_PREFIX = "comfy:"  # combo_source "comfy:<class_type>:<input>": choices read fresh


def type_name(kind: Any) -> str:
    """A ComfyUI type as its name ("INT"; a list of choices is "COMBO")."""
    if isinstance(kind, list | tuple):
        return "COMBO"
    return str(kind.value if isinstance(kind, Enum) else kind)


def _entry(entry: Any) -> tuple[Any, dict[str, Any]]:
    if isinstance(entry, list | tuple) and entry:
        options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        return entry[0], options
    return entry, {}


def combo_choices(entry: Any) -> list[Any]:
    """The choices of a combo input entry (old list form, or "COMBO" with an options list)."""
    kind, options = _entry(entry)
    return list(kind) if isinstance(kind, list | tuple) else list(options.get("options", []))


def input_specs(class_type: str, input_types: dict[str, Any]) -> tuple[InputSpec, ...]:
    """InputSpecs of a V1 node's required and optional inputs."""
    specs = []
    # A "hidden" entry that is not one of ComfyUI's hidden kinds is an input the prompt may still
    # set (expansions do): it is taken like an optional one.
    unusual = {k: v for k, v in (input_types.get("hidden") or {}).items() if not isinstance(v, str)}
    for section, entries in (
        ("required", input_types.get("required") or {}),
        ("optional", {**(input_types.get("optional") or {}), **unusual}),
    ):
        for name, entry in entries.items():
            kind, options = _entry(entry)
            io_type = type_name(kind)
            numeric = io_type in ("INT", "FLOAT")
            specs.append(
                InputSpec(
                    name=name,
                    io_type=io_type,
                    section=section,  # type: ignore[arg-type]
                    required=section == "required",
                    default=options.get("default"),
                    choices=None,
                    combo_source=f"{COMBO_SOURCE_PREFIX}{class_type}:{name}" if io_type == "COMBO" else None,
                    ge=options.get("min") if numeric else None,
                    le=options.get("max") if numeric else None,
                    # rawLink too: the dynamic executor hands such an input the link itself.
                    widget={k: v for k, v in options.items() if k in WIDGET_OPTION_KEYS or k == "rawLink"},
                    description=str(options.get("tooltip", "")),
                )
            )
    return tuple(specs)


def _names(fn: Any) -> tuple[set[str], bool]:
    params = inspect.signature(fn).parameters.values()
    named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _filtered(fn: Any, values: dict[str, Any]) -> dict[str, Any]:
    named, anything = _names(fn)
    return {k: v for k, v in values.items() if anything or k in named}


class ComfyV1Node(Node):
    """Base of generated adapter classes; one instance keeps one pack object per node id, as ComfyUI."""

    raw_io = True
    comfy_cls: ClassVar[Any]
    function: ClassVar[str]
    return_types: ClassVar[tuple[str, ...]]
    return_is_list: ClassVar[tuple[bool, ...]]
    node_spec_: ClassVar[NodeSpec]
    info_: ClassVar[dict[str, Any]]

    def __init__(self) -> None:
        self._objects: dict[str, Any] = {}

    @classmethod
    def declared_spec(cls) -> Any:
        """The spec built from INPUT_TYPES when the class was adapted."""
        return cls.node_spec_

    @classmethod
    def declared_info(cls, choices: Any) -> dict[str, Any] | None:
        """object_info as ComfyUI builds it, with INPUT_TYPES read fresh (file lists change)."""
        input_types = cls.comfy_cls.INPUT_TYPES()
        return {
            **cls.info_,
            "input": input_types,
            "input_order": {section: list(values) for section, values in input_types.items()},
        }

    def _object(self, node_id: str) -> Any:
        obj = self._objects.get(node_id)
        if obj is None:
            obj = self._objects[node_id] = self.comfy_cls()
        return obj

    def _arguments(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        as_list = self.input_is_list
        kwargs = {k: [to_comfy(v) for v in val] if as_list else to_comfy(val) for k, val in values.items()}
        sources = {
            "PROMPT": ctx.prompt,
            "DYNPROMPT": ctx.dynprompt,
            "EXTRA_PNGINFO": ctx.extra_data.get("extra_pnginfo"),
            "UNIQUE_ID": ctx.node_id,
            "AUTH_TOKEN_COMFY_ORG": ctx.extra_data.get("auth_token_comfy_org"),
            "API_KEY_COMFY_ORG": ctx.extra_data.get("api_key_comfy_org"),
        }
        for name, kind in self.hidden.items():
            kwargs[name] = [sources.get(kind)] if as_list else sources.get(kind)
        return kwargs

    def check_lazy_status(self, ctx: RunContext, values: dict[str, Any]) -> list[str]:
        """The pack's check_lazy_status, called with what is known so far."""
        method = self._object(ctx.node_id).check_lazy_status
        kwargs = _filtered(method, self._arguments(ctx, values))
        if inspect.iscoroutinefunction(method):
            return self._lazy_awaited(ctx, method, kwargs)  # type: ignore[return-value]
        with installed(swap_server=False), running(ctx):
            asked = method(**kwargs)
        return list(asked or [])

    async def _lazy_awaited(self, ctx: RunContext, method: Any, kwargs: dict[str, Any]) -> list[str]:
        with installed(swap_server=False), running(ctx):
            asked = await method(**kwargs)
        return list(asked or [])

    def run(self, ctx: RunContext, inputs: Any) -> Any:
        """Call the pack's FUNCTION; coroutine functions come back as a coroutine the engine awaits."""
        function = getattr(self._object(ctx.node_id), self.function)
        kwargs = self._arguments(ctx, inputs)
        GraphBuilder.set_default_prefix(ctx.node_id, ctx.list_index or 0, 0)
        if inspect.iscoroutinefunction(function):
            return self._awaited(ctx, function, kwargs)
        with installed(swap_server=False), running(ctx):
            returned = function(**kwargs)
        return self.result(returned)

    async def _awaited(self, ctx: RunContext, function: Any, kwargs: dict[str, Any]) -> Any:
        with installed(swap_server=False), running(ctx):
            returned = await function(**kwargs)
        return self.result(returned)

    @classmethod
    def _convert(cls, values: Any, links_allowed: bool) -> tuple[Any, ...]:
        if isinstance(values, ExecutionBlocker):
            return (values,) * len(cls.return_types)
        converted = []
        for value, io_type, is_list in zip(values, cls.return_types, cls.return_is_list, strict=False):
            if links_allowed and is_link(value):
                converted.append(value)
            elif is_list and isinstance(value, list):
                converted.append([from_comfy(v, io_type) for v in value])
            else:
                converted.append(from_comfy(value, io_type))
        return tuple(converted)

    @classmethod
    def result(cls, returned: Any) -> Any:
        """A V1 return value (tuple, {"ui", "result", "expand"} dict, blocker) as the engine's NodeResult."""
        if isinstance(returned, ExecutionBlocker):
            return returned
        if isinstance(returned, dict):
            expand = returned.get("expand")
            values = returned.get("result")
            return NodeResult(
                values=cls._convert(values, expand is not None) if values is not None else None,
                ui=returned.get("ui"),
                expand=expand,
            )
        if isinstance(returned, tuple | list):
            return NodeResult(values=cls._convert(returned, False))
        if returned is None and not cls.return_types:
            return NodeResult(values=())
        raise TypeError(
            f"{cls.class_type}.{cls.function} returned {type(returned).__name__}; "
            "a ComfyUI node returns a tuple of outputs or a dict with 'ui'/'result'/'expand'"
        )


async def _async_run(self: ComfyV1Node, ctx: RunContext, inputs: Any) -> Any:
    """run() of an adapter whose FUNCTION is a coroutine function."""
    return await ComfyV1Node.run(self, ctx, inputs)


def _validate_hook(comfy_cls: type) -> Any:
    validate = comfy_cls.VALIDATE_INPUTS  # type: ignore[attr-defined]

    def call(values: dict[str, Any], input_types: dict[str, str] | None) -> str | None:
        arguments = dict(values)
        named, _ = _names(validate)
        if "input_types" in named:
            arguments["input_types"] = input_types or {}
        with installed(swap_server=False):
            verdict = validate(**_filtered(validate, arguments))
            if inspect.iscoroutine(verdict):
                verdict = run_coroutine(verdict)
        return None if verdict is True or isinstance(verdict, ExecutionBlocker) else str(verdict)

    if "input_types" in _names(validate)[0]:

        def with_types(cls: type, values: Any, env: Any, input_types: Any = None) -> str | None:
            return call(dict(values), input_types)

        return classmethod(with_types)

    def without_types(cls: type, values: Any, env: Any) -> str | None:
        return call(dict(values), None)

    return classmethod(without_types)


def _fingerprint_hook(comfy_cls: type) -> Any:
    is_changed = comfy_cls.IS_CHANGED  # type: ignore[attr-defined]

    def fingerprint(cls: type, values: Any, env: Any) -> Any:
        with installed(swap_server=False):
            value = is_changed(**_filtered(is_changed, dict(values)))
        return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)

    return classmethod(fingerprint)


def _self_validated(validate: Any, input_types: dict[str, Any]) -> frozenset[str]:
    """Inputs VALIDATE_INPUTS judges instead of the default checks: those it names, or all with **kwargs."""
    if validate is None:
        return frozenset()
    named, anything = _names(validate)
    if anything:
        return frozenset(n for section in ("required", "optional") for n in input_types.get(section) or {})
    return frozenset(named)


def adapt_v1(class_type: str, comfy_cls: Any, display_name: str | None, module: str) -> type[Node]:
    """A Node subclass running comfy_cls; its spec and object_info follow ComfyUI's reading of the class."""
    input_types = comfy_cls.INPUT_TYPES()  # type: ignore[attr-defined]
    return_types = tuple(type_name(t) for t in getattr(comfy_cls, "RETURN_TYPES", ()))
    names = tuple(getattr(comfy_cls, "RETURN_NAMES", None) or return_types)
    is_list = tuple(getattr(comfy_cls, "OUTPUT_IS_LIST", None) or (False,) * len(return_types))
    tooltips = tuple(getattr(comfy_cls, "OUTPUT_TOOLTIPS", None) or ("",) * len(return_types))
    function = getattr(comfy_cls, comfy_cls.FUNCTION)  # type: ignore[attr-defined]
    # ComfyUI fills only the hidden kinds it knows; others stay unset there too.
    kinds = {h.value: h for h in Hidden}
    hidden = {k: kinds[str(v)] for k, v in (input_types.get("hidden") or {}).items() if str(v) in kinds}
    validate = getattr(comfy_cls, "VALIDATE_INPUTS", None)
    namespace: dict[str, Any] = {
        "__doc__": f"ComfyUI node {class_type} from {module}.",
        "class_type": class_type,
        "display_name": display_name or class_type,
        "category": getattr(comfy_cls, "CATEGORY", "sd"),
        "description": getattr(comfy_cls, "DESCRIPTION", ""),
        "output_node": bool(getattr(comfy_cls, "OUTPUT_NODE", False)),
        "idempotent": not getattr(comfy_cls, "NOT_IDEMPOTENT", False),
        "hidden": hidden,
        "input_is_list": bool(getattr(comfy_cls, "INPUT_IS_LIST", False)),
        "extra_inputs": _names(function)[1],
        "self_validated_inputs": _self_validated(validate, input_types),
        "python_module": module,
        "deprecated": bool(getattr(comfy_cls, "DEPRECATED", False)),
        "experimental": bool(getattr(comfy_cls, "EXPERIMENTAL", False)),
        "comfy_cls": comfy_cls,
        "function": comfy_cls.FUNCTION,  # type: ignore[attr-defined]
        "return_types": return_types,
        "return_is_list": is_list,
        "Outputs": create_model(  # type: ignore[call-overload]
            f"{class_type}Outputs",
            __base__=NodeOutputs,
            **{f"out{i}": (Any, None) for i in range(len(return_types))},
        ),
    }
    if validate is not None:
        namespace["validate_inputs"] = _validate_hook(comfy_cls)
    if hasattr(comfy_cls, "IS_CHANGED"):
        namespace["fingerprint"] = _fingerprint_hook(comfy_cls)
    if inspect.iscoroutinefunction(function):
        namespace["run"] = _async_run  # so the engine sees an async node (it starts those first)
    if not hasattr(comfy_cls, "check_lazy_status"):
        namespace["check_lazy_status"] = Node.check_lazy_status
    adapter = cast(type[ComfyV1Node], type(f"V1_{comfy_cls.__name__}", (ComfyV1Node,), namespace))
    outputs = tuple(
        OutputSpec(field=f"out{i}", io_type=t, name=str(n), is_list=bool(li), description=str(tip))
        for i, (t, n, li, tip) in enumerate(zip(return_types, names, is_list, tooltips, strict=False))
    )
    adapter.node_spec_ = NodeSpec(
        node_cls=adapter, inputs=input_specs(class_type, input_types), outputs=outputs
    )
    info: dict[str, Any] = {
        "output": list(return_types),
        "output_is_list": list(is_list),
        "output_name": list(names),
        "name": class_type,
        "display_name": display_name or class_type,
        "description": adapter.description,
        "python_module": module,
        "category": adapter.category,
        "output_node": adapter.output_node,
    }
    if hasattr(comfy_cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(tooltips)
    for attr, key in (
        ("DEPRECATED", "deprecated"),
        ("EXPERIMENTAL", "experimental"),
        ("API_NODE", "api_node"),
    ):
        if getattr(comfy_cls, attr, False):
            info[key] = getattr(comfy_cls, attr)
    if getattr(comfy_cls, "SEARCH_ALIASES", None):
        info["search_aliases"] = list(comfy_cls.SEARCH_ALIASES)  # type: ignore[attr-defined]
    adapter.info_ = info
    return adapter

"""Node specs derived from pydantic models, and ComfyUI's `/object_info` shape generated from them."""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, Union

import annotated_types
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from engine.errors import DiffgraphError
from engine.node import EdgeType, Hidden, Node

PRIMITIVES: dict[type, str] = {int: "INT", float: "FLOAT", str: "STRING", bool: "BOOLEAN"}
WIDGET_TYPES = frozenset(PRIMITIVES.values())
# Resolves a combo_source name ("checkpoints") to the current list of choices.
ChoiceProvider = Callable[[str], list[str]]


def no_choices(source: str) -> list[str]:
    """A choice provider that knows no dynamic lists."""
    return []


@dataclass(frozen=True)
class InputSpec:
    """One declared input: its ComfyUI type, section, widget options and bounds."""

    name: str
    io_type: str  # "INT", "LATENT", ... or "COMBO" for a list of choices
    section: Literal["required", "optional"]
    required: bool  # no default: a value or a link must be given
    default: Any
    choices: tuple[Any, ...] | None  # static combo values
    combo_source: str | None  # dynamic combo values
    ge: float | None
    le: float | None
    widget: dict[str, Any]
    description: str

    @property
    def is_widget(self) -> bool:
        """True when the client shows a widget for this input (and writes it into widgets_values)."""
        if self.widget.get("forceInput"):
            return False
        return self.io_type in WIDGET_TYPES or self.io_type == "COMBO"

    @cached_property
    def is_combo(self) -> bool:
        """True for an input whose value must be one of a list of choices."""
        return self.io_type == "COMBO"

    @cached_property
    def is_remote(self) -> bool:
        """A combo with no list here: the client asks a route for the choices (ComfyUI's "remote")."""
        return self.is_combo and "remote" in self.widget and self.combo_source is None and not self.choices


@dataclass(frozen=True)
class OutputSpec:
    """One output slot."""

    field: str
    io_type: str
    name: str
    is_list: bool
    description: str


@dataclass(frozen=True)
class NodeSpec:
    """Everything the engine needs to know about a node class, derived once from its models."""

    node_cls: type[Node]
    inputs: tuple[InputSpec, ...]
    outputs: tuple[OutputSpec, ...]

    @cached_property
    def input_names(self) -> frozenset[str]:
        """Names of every declared input."""
        return frozenset(inp.name for inp in self.inputs)

    @cached_property
    def has_fingerprint(self) -> bool:
        """Whether the class overrides Node.fingerprint (so planning must call it)."""
        return _overrides(self.node_cls, "fingerprint")

    @cached_property
    def signs_node_id(self) -> bool:
        """Whether the node's id joins its cache key: not idempotent, or it reads its UNIQUE_ID."""
        cls = self.node_cls
        return not cls.idempotent or Hidden.UNIQUE_ID in cls.hidden.values()

    @cached_property
    def has_custom_validation(self) -> bool:
        """Whether the class overrides Node.validate_inputs."""
        return _overrides(self.node_cls, "validate_inputs")

    @cached_property
    def lazy_inputs(self) -> frozenset[str]:
        """Inputs evaluated only when check_lazy_status asks for them."""
        return frozenset(inp.name for inp in self.inputs if inp.widget.get("lazy"))

    @cached_property
    def raw_link_inputs(self) -> frozenset[str]:
        """Inputs that receive the link itself ([node_id, slot]) rather than its value."""
        return frozenset(inp.name for inp in self.inputs if inp.widget.get("rawLink"))

    @cached_property
    def has_lazy_status(self) -> bool:
        """Whether the node overrides check_lazy_status."""
        return self.node_cls.check_lazy_status is not Node.check_lazy_status

    @cached_property
    def is_async(self) -> bool:
        """Whether run() is a coroutine function (it runs on the event loop, concurrently)."""
        return inspect.iscoroutinefunction(self.node_cls.run)

    @cached_property
    def is_dynamic(self) -> bool:
        """Whether the node needs the dynamic executor (lazy inputs, lists, expansion, async...)."""
        cls = self.node_cls
        return bool(
            cls.dynamic
            or cls.raw_io
            or cls.input_is_list
            or self.lazy_inputs
            or self.raw_link_inputs
            or self.has_lazy_status
            or self.is_async
            or any(out.is_list for out in self.outputs)
        )

    @cached_property
    def validation_takes_types(self) -> bool:
        """Whether validate_inputs wants the types of linked inputs (an `input_types` parameter)."""
        return "input_types" in inspect.signature(self.node_cls.validate_inputs).parameters

    @cached_property
    def wants_input_types(self) -> bool:
        """Whether validation must collect the types of linked inputs for validate_inputs."""
        return self.has_custom_validation and self.validation_takes_types

    @cached_property
    def unchecked_links(self) -> frozenset[str]:
        """Linked inputs whose type validate_inputs judges itself: all of them when it takes input_types."""
        return self.input_names if self.validation_takes_types else frozenset()

    @cached_property
    def unchecked_constants(self) -> frozenset[str]:
        """Constant inputs taken without the default checks: self-validated ones, and a foreign node's
        inputs of its own (non-primitive) types, which ComfyUI passes through unchecked."""
        own = {
            inp.name
            for inp in self.inputs
            if self.node_cls.raw_io and not inp.is_combo and inp.io_type not in WIDGET_TYPES
        }
        return frozenset(self.node_cls.self_validated_inputs | own)

    @property
    def class_type(self) -> str:
        """The node's class_type."""
        return self.node_cls.class_type

    def input(self, name: str) -> InputSpec | None:
        """The spec of the named input, or None."""
        for spec in self.inputs:
            if spec.name == name:
                return spec
        return None


def _overrides(node_cls: type[Node], hook: str) -> bool:
    # Compare the underlying functions: each attribute access makes a new bound classmethod object.
    return getattr(node_cls, hook).__func__ is not getattr(Node, hook).__func__


def _strip_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
        return args
    return annotation


def io_type_of(annotation: Any) -> tuple[str, tuple[Any, ...] | None]:
    """Map a Python annotation to a ComfyUI type name (and the choices of a Literal)."""
    annotation = _strip_optional(annotation)
    if isinstance(annotation, list):
        names = [io_type_of(a)[0] for a in annotation]
        return ",".join(names), None
    if typing.get_origin(annotation) is typing.Annotated:
        return io_type_of(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) is Literal:
        return "COMBO", tuple(typing.get_args(annotation))
    if typing.get_origin(annotation) is list and typing.get_args(annotation):
        # A whole-list input (input_is_list) or a list output carries items of its element's type.
        return io_type_of(typing.get_args(annotation)[0])
    if annotation in PRIMITIVES:
        return PRIMITIVES[annotation], None
    if isinstance(annotation, type) and issubclass(annotation, EdgeType):
        return annotation.io_type, None
    return "*", None


def _bounds(info: FieldInfo) -> tuple[Any, Any]:
    ge = le = None
    for meta in info.metadata:
        if isinstance(meta, annotated_types.Ge):
            ge = meta.ge
        elif isinstance(meta, annotated_types.Le):
            le = meta.le
    return ge, le


def _extra(info: FieldInfo) -> dict[str, Any]:
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


_SPECS: dict[type[Node], NodeSpec] = {}


def node_spec(node_cls: type[Node]) -> NodeSpec:
    """The NodeSpec of a node class, derived once from its Inputs and Outputs models."""
    spec = _SPECS.get(node_cls)
    if spec is None:
        spec = _SPECS[node_cls] = _derive_spec(node_cls)
    return spec


def _check_hidden(node_cls: type[Node]) -> None:
    """Refuse hidden inputs the engine cannot supply (a plain string would be listed, never filled)."""
    for name, kind in node_cls.hidden.items():
        if not isinstance(kind, Hidden):
            known = ", ".join(f"Hidden.{h.name}" for h in Hidden)
            raise DiffgraphError(
                f"{node_cls.__qualname__}.hidden[{name!r}] is {kind!r}; the engine supplies only {known}",
                code="bad_node_class",
            )


def _derive_spec(node_cls: type[Node]) -> NodeSpec:
    _check_hidden(node_cls)
    declared = node_cls.declared_spec()
    if declared is not None:
        return declared  # type: ignore[no-any-return]
    inputs = []
    for name, info in node_cls.Inputs.model_fields.items():
        extra = _extra(info)
        io_type, choices = io_type_of(info.annotation)
        combo_source = extra.get("combo_source")
        if combo_source is not None or "remote" in extra.get("widget", {}):
            io_type = "COMBO"
        ge, le = _bounds(info)
        has_default = info.default is not PydanticUndefined or info.default_factory is not None
        inputs.append(
            InputSpec(
                name=name,
                io_type=io_type,
                section="optional" if extra.get("optional") else "required",
                required=not has_default,
                default=info.get_default(call_default_factory=True) if has_default else None,
                choices=choices,
                combo_source=combo_source,
                ge=ge,
                le=le,
                widget=dict(extra.get("widget", {})),
                description=info.description or "",
            )
        )
    outputs = []
    for name, info in node_cls.Outputs.model_fields.items():
        extra = _extra(info)
        io_type, _ = io_type_of(info.annotation)
        outputs.append(
            OutputSpec(
                field=name,
                io_type=io_type,
                name=extra.get("output_name", io_type),
                is_list=bool(extra.get("is_list", False)),
                description=info.description or "",
            )
        )
    return NodeSpec(node_cls=node_cls, inputs=tuple(inputs), outputs=tuple(outputs))


def combo_values(spec: InputSpec, choices: ChoiceProvider) -> list[Any]:
    """The allowed values of a combo input, static or from the provider."""
    if spec.combo_source is not None:
        return list(choices(spec.combo_source))
    return list(spec.choices or ())


def _input_entry(spec: InputSpec, choices: ChoiceProvider) -> list[Any]:
    options: dict[str, Any] = {}
    if not spec.required and spec.default is not None and spec.is_widget:
        options["default"] = spec.default
    if spec.ge is not None:
        options["min"] = spec.ge
    if spec.le is not None:
        options["max"] = spec.le
    options.update(spec.widget)
    if spec.description:
        options["tooltip"] = spec.description
    type_entry: Any = combo_values(spec, choices) if spec.is_combo and not spec.is_remote else spec.io_type
    return [type_entry, options] if options else [type_entry]


def object_info(node_cls: type[Node], choices: ChoiceProvider = no_choices) -> dict[str, Any]:
    """The node's entry in ComfyUI's `/object_info` (V1 shape: combos are value lists)."""
    declared = node_cls.declared_info(choices)
    if declared is not None:
        return declared
    spec = node_spec(node_cls)
    sections: dict[str, dict[str, Any]] = {"required": {}}
    order: dict[str, list[str]] = {"required": []}
    for inp in spec.inputs:
        sections.setdefault(inp.section, {})[inp.name] = _input_entry(inp, choices)
        order.setdefault(inp.section, []).append(inp.name)
    if node_cls.hidden:
        sections["hidden"] = dict(node_cls.hidden)
        order["hidden"] = list(node_cls.hidden)
    info: dict[str, Any] = {
        "input": sections,
        "input_order": order,
        "output": [out.io_type for out in spec.outputs],
        "output_is_list": [out.is_list for out in spec.outputs],
        "output_name": [out.name for out in spec.outputs],
        "name": node_cls.class_type,
        "display_name": node_cls.display_name or node_cls.class_type,
        "description": node_cls.description,
        "python_module": node_cls.python_module,
        "category": node_cls.category,
        "output_node": node_cls.output_node,
    }
    if any(out.description for out in spec.outputs):
        info["output_tooltips"] = [out.description for out in spec.outputs]
    if node_cls.deprecated:
        info["deprecated"] = True
    if node_cls.experimental:
        info["experimental"] = True
    return info

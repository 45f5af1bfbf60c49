"""Which inputs of an `/object_info` entry are widgets, and how `widgets_values` lines up with them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

PRIMITIVE_WIDGETS = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN"})
# Values of the frontend-only combo the client adds after seed-like widgets.
CONTROL_MODES = frozenset({"fixed", "increment", "decrement", "randomize", "increment-wrap"})
# The client derives these from the input name when the schema says nothing (FE useIntWidget).
SEED_NAMES = frozenset({"seed", "noise_seed"})
UPLOAD_OPTIONS = ("image_upload", "video_upload")
CONTROL_WIDGET = "control_after_generate"


@dataclass(frozen=True)
class WidgetSpec:
    """One widget the client creates for a node input, and the hidden entries that follow its value."""

    name: str
    io_type: str  # "INT", "FLOAT", "STRING", "BOOLEAN" or "COMBO"
    control: bool  # a control_after_generate entry follows
    upload: bool  # the client's upload-button entry follows this widget's value
    default: Any
    has_default: bool
    dynamic_prompts: bool = False  # the client resolves comments and {a|b} choices when queueing


def _entry_parts(entry: Any) -> tuple[Any, dict[str, Any]]:
    if not isinstance(entry, list | tuple) or not entry:
        return entry, {}
    options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
    return entry[0], options


def _widget_spec(name: str, entry: Any) -> WidgetSpec | None:
    io_type, options = _entry_parts(entry)
    if options.get("forceInput"):
        return None
    if isinstance(io_type, list | tuple) or io_type == "COMBO":
        kind = "COMBO"
        control = bool(options.get("control_after_generate"))
        upload = any(options.get(key) for key in UPLOAD_OPTIONS)
    elif io_type in PRIMITIVE_WIDGETS:
        kind = io_type
        if kind == "INT" and "control_after_generate" in options:
            control = bool(options["control_after_generate"])
        else:
            control = kind == "INT" and name in SEED_NAMES
        upload = False
    else:
        return None
    default, has_default = _default_of(io_type, options)
    dynamic = kind == "STRING" and options.get("dynamicPrompts") is True
    return WidgetSpec(name, kind, control, upload, default, has_default, dynamic)


def _default_of(io_type: Any, options: dict[str, Any]) -> tuple[Any, bool]:
    """The value the client puts in a fresh widget (its `default`, else the first combo choice)."""
    if "default" in options:
        return options["default"], True
    choices = io_type if isinstance(io_type, list | tuple) else options.get("options")
    if isinstance(choices, list | tuple) and choices:
        return choices[0], True
    return None, False


def ordered_inputs(info: dict[str, Any]) -> list[tuple[str, Any]]:
    """(name, entry) for required then optional inputs, in `input_order` when given."""
    sections = info.get("input") or {}
    order = info.get("input_order") or {}
    result: list[tuple[str, Any]] = []
    for section in ("required", "optional"):
        entries = sections.get(section) or {}
        names = order.get(section) or list(entries)
        result.extend((name, entries[name]) for name in names if name in entries)
    return result


def widget_specs(info: dict[str, Any]) -> tuple[WidgetSpec, ...]:
    """The node's widgets in the order the client serialises them.

    The client adds its upload button as one more required input (for the first required upload
    combo only) that `input_order` does not name; the client places inputs missing from `input_order`
    after all the others, or, without an `input_order`, after the required ones. Its saved entry thus
    follows the last widget (LoadImageMask saves [image, channel, "image"]), where `upload` is flagged.
    """
    required = set((info.get("input") or {}).get("required") or {})
    specs: list[WidgetSpec] = []
    has_upload = False
    for name, entry in ordered_inputs(info):
        spec = _widget_spec(name, entry)
        if spec is None:
            continue
        if spec.upload:
            has_upload = has_upload or name in required
            spec = replace(spec, upload=False)
        specs.append(spec)
    if has_upload:
        ordered = bool(info.get("input_order"))
        last = max(index for index, spec in enumerate(specs) if ordered or spec.name in required)
        specs[last] = replace(specs[last], upload=True)
    return tuple(specs)


def wrap_list(value: Any) -> Any:
    """List constants travel as {"__value__": [...]} so they are not mistaken for links."""
    return {"__value__": list(value)} if isinstance(value, list | tuple) else value


def values_by_name(specs: tuple[WidgetSpec, ...], widgets_values: Any) -> dict[str, Any]:
    """Map a node's `widgets_values` (positional list or name-keyed object) to widget name -> value.

    A positional list holds one entry per widget, linked or not, followed by a control_after_generate
    entry for seed-like widgets and an upload entry for upload combos; both are consumed and dropped.
    `None` entries are holes (widgets the client does not serialise) and yield no value. List values
    come back wrapped (see `wrap_list`).
    """
    return {name: wrap_list(value) for name, value in raw_values(specs, widgets_values).items()}


def raw_values(specs: tuple[WidgetSpec, ...], widgets_values: Any, controls: bool = False) -> dict[str, Any]:
    """Like `values_by_name` with list values as they are; `controls` keeps the first saved
    control_after_generate entry under that name (the client's control widget is named so)."""
    if isinstance(widgets_values, dict):
        return {
            spec.name: widgets_values[spec.name]
            for spec in specs
            if widgets_values.get(spec.name) is not None
        }
    if not isinstance(widgets_values, list):
        return {}
    values: dict[str, Any] = {}
    pos = 0
    for spec in specs:
        if pos >= len(widgets_values):
            break
        value = widgets_values[pos]
        pos += 1
        if value is not None:
            values[spec.name] = value
        # A file saved without the control entry must not shift every later widget by one.
        if spec.control and pos < len(widgets_values) and is_control_mode(widgets_values[pos]):
            if controls:
                values.setdefault(CONTROL_WIDGET, widgets_values[pos])
            pos += 1
        if spec.upload:
            pos += 1
    return values


def is_control_mode(value: Any) -> bool:
    """True for a saved control_after_generate entry (fixed, increment, ...).

    Early clients saved that entry as a true/false "randomize" toggle (ComfyUI's own `default`
    template still carries one); the frontend assigns widgets_values positionally, so the toggle takes
    the control widget's slot like any mode name and must be consumed with it.
    """
    return isinstance(value, bool) or (isinstance(value, str) and value in CONTROL_MODES)

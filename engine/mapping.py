"""ComfyUI's list semantics: calling a node once per item, and folding what the calls returned.

Every value in a dynamic run is a list of items. A node runs once per index up to the longest input
list, shorter lists repeating their last item; a node with `input_is_list` runs once with the whole
lists. Outputs declared as lists are concatenated across calls; the others collect one item per call.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.flow import ExecutionBlocker, NodeResult
from engine.formats.workflow import is_link
from engine.node import NodeOutputs
from engine.schema import NodeSpec

InputLists = dict[str, list[Any]]


def call_inputs(data: InputLists, input_is_list: bool) -> Iterator[tuple[dict[str, Any], int | None]]:
    """The keyword arguments of each call with its list index (None for a call without inputs)."""
    if input_is_list:
        yield dict(data), 0
        return
    if not data:
        yield {}, None
        return
    longest = max(len(items) for items in data.values())
    for index in range(longest):
        # A shorter list repeats its last item; an empty one gives nothing to repeat.
        yield {k: v[index] if len(v) > index else (v[-1] if v else None) for k, v in data.items()}, index


def find_blocker(kwargs: dict[str, Any], input_is_list: bool) -> ExecutionBlocker | None:
    """The first ExecutionBlocker among a call's inputs, or None."""
    for value in kwargs.values():
        if input_is_list and isinstance(value, list):
            for item in value:
                if isinstance(item, ExecutionBlocker):
                    return item
        elif isinstance(value, ExecutionBlocker):
            return value
    return None


@dataclass
class Returned:
    """What the calls of one node returned, normalised: values or subgraphs per call, and UI."""

    entries: list[tuple[dict[str, Any] | None, tuple[Any, ...]]] = field(default_factory=list)
    uis: list[dict[str, Any]] = field(default_factory=list)

    @property
    def expands(self) -> bool:
        """Whether any call returned a subgraph."""
        return any(graph is not None for graph, _ in self.entries)

    def ui(self) -> dict[str, Any] | None:
        """The calls' UI outputs joined key by key (lists concatenated), or None."""
        if not self.uis:
            return None
        merged: dict[str, Any] = {}
        for ui in self.uis:
            for key, value in ui.items():
                if isinstance(value, list):
                    merged.setdefault(key, []).extend(value)
                else:
                    merged[key] = value
        return merged


def normalise(spec: NodeSpec, value: Any, ui: dict[str, Any] | None, returned: Returned) -> None:
    """Add one call's return value (Outputs model, NodeResult, tuple or blocker) to returned."""
    count = len(spec.outputs)
    if ui is not None:
        returned.uis.append(ui)
    if isinstance(value, ExecutionBlocker):
        returned.entries.append((None, (value,) * count))
    elif isinstance(value, NodeResult):
        if value.ui is not None:
            returned.uis.append(value.ui)
        values = tuple(value.values or ())
        if value.block is not None:
            values = (ExecutionBlocker(value.block),) * count
        elif len(values) != count and (value.values is not None or value.expand is not None):
            raise TypeError(f"{spec.class_type} returned {len(values)} values for {count} outputs")
        if value.expand is not None:
            returned.entries.append((value.expand, values))
        elif value.values is not None or value.block is not None:
            returned.entries.append((None, values))
    elif isinstance(value, NodeOutputs):
        returned.entries.append((None, tuple(getattr(value, out.field) for out in spec.outputs)))
    elif value is None and count == 0:
        returned.entries.append((None, ()))
    else:
        raise TypeError(f"{spec.class_type}.run returned {type(value).__name__}, not its Outputs model")


def merge(spec: NodeSpec, entries: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    """Fold per-call values into per-slot lists (list outputs concatenated, blockers kept whole)."""
    slots: list[list[Any]] = []
    for index, out in enumerate(spec.outputs):
        items: list[Any] = []
        for values in entries:
            value = values[index]
            if out.is_list and not isinstance(value, ExecutionBlocker):
                items.extend(value)
            else:
                items.append(value)
        slots.append(items)
    return tuple(slots)


def resolve_subgraph(
    spec: NodeSpec, pending: list[tuple[bool, tuple[Any, ...]]], values: dict[str, tuple[list[Any], ...]]
) -> tuple[list[Any], ...]:
    """A node's outputs once the subgraphs it expanded into have run: links read, then merged."""
    slots: list[list[Any]] = [[] for _ in spec.outputs]
    for from_graph, entry in pending:
        for index, value in enumerate(entry):
            if from_graph and is_link(value):
                slots[index].extend(values[value[0]][int(value[1])])
            elif spec.outputs[index].is_list and not isinstance(value, ExecutionBlocker):
                slots[index].extend(value)
            else:
                slots[index].append(value)
    return tuple(slots)

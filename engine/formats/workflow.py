"""Workflow files: ComfyUI API-format prompts (and UI-format ones, converted) loaded and saved."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from engine.atomic_files import atomic_write_bytes
from engine.errors import WorkflowFormatError
from engine.formats.media_metadata import read_embedded_workflow
from engine.formats.ui_workflow import is_ui_format, ui_to_api
from engine.strict_json import InputRejected, loads_strict

if TYPE_CHECKING:
    from engine.formats.ui_transforms import QueueContext

MEDIA_SUFFIXES = (".png", ".webp", ".mp4", ".webm", ".mkv", ".mov", ".gif")

# Node schemas in `/object_info` shape, or a function building them when a UI workflow needs them.
NodeSchemas = dict[str, Any] | Callable[[], dict[str, Any]] | None


def is_link(value: Any) -> TypeGuard[list[Any] | tuple[Any, ...]]:
    """ComfyUI's link test: a 2-list whose first item is a str node id and second an int slot."""
    # Exact type checks: this runs for every input of every node on each submission.
    kind = type(value)
    if kind is not list and kind is not tuple:
        return False
    return len(value) == 2 and type(value[0]) is str and type(value[1]) in (int, float)


def unwrap_constant(value: Any) -> Any:
    """A list constant travels wrapped as {"__value__": [...]}; return the plain value."""
    if isinstance(value, dict) and set(value) == {"__value__"}:
        return value["__value__"]
    return value


def wrap_constant(value: Any) -> Any:
    """Wrap list constants so they are not mistaken for links when saved."""
    if isinstance(value, list | tuple):
        return {"__value__": list(value)}
    return value


@dataclass
class Workflow:
    """An API-format prompt, plus the UI workflow it came from when known (kept for PNG metadata)."""

    prompt: dict[str, Any]
    ui: dict[str, Any] | None = None
    source: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def extra_data(self) -> dict[str, Any]:
        """The `extra_data` to submit with the prompt: the UI workflow as `extra_pnginfo.workflow`."""
        data = dict(self.extra)
        if self.ui is not None:
            data["extra_pnginfo"] = {**data.get("extra_pnginfo", {}), "workflow": self.ui}
        return data


def parse_json(text: str | bytes, source: str) -> Any:
    """Parse untrusted JSON strictly (UTF-8, finite numbers, bounded nesting) into a WorkflowFormatError."""
    try:
        return loads_strict(text, source)
    except InputRejected as exc:
        raise WorkflowFormatError(exc.message, details=source) from exc


def check_prompt_shape(prompt: dict[str, Any], source: str) -> dict[str, Any]:
    """prompt itself when every node is an object whose `inputs` (if any) is an object, else an error."""
    for node_id, node in prompt.items():
        if not isinstance(node, dict):
            raise WorkflowFormatError(
                f"{source}: node {node_id!r} is a {type(node).__name__}, not an object with "
                "class_type and inputs (is this an API-format prompt?)"
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise WorkflowFormatError(f"{source}: the inputs of node {node_id!r} are not an object of names")
    return prompt


def workflow_from_data(
    data: Any,
    object_info: NodeSchemas = None,
    source: str = "<data>",
    queue: QueueContext | None = None,
) -> Workflow:
    """Build a Workflow from parsed JSON in any known shape (API, UI, or {"prompt", "extra_data"}).

    `object_info` is only read for a UI-format workflow; a callable is called then, so loading API
    prompts never builds the node schemas (with their model-folder scans). `queue` pins the clock and
    choice randomness of a UI workflow's queue-time rewrites.
    """
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data:
        extra = data.get("extra_data")
        pnginfo = extra.get("extra_pnginfo") if isinstance(extra, dict) else None
        ui = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
        return Workflow(
            prompt=check_prompt_shape(data["prompt"], source),
            ui=ui if isinstance(ui, dict) else None,
            source=source,
        )
    if is_ui_format(data):
        if object_info is None:
            raise WorkflowFormatError(f"{source} is a UI-format workflow; converting it needs node schemas")
        schemas = object_info() if callable(object_info) else object_info
        return Workflow(prompt=ui_to_api(data, schemas, queue), ui=data, source=source)
    if isinstance(data, dict):
        return Workflow(prompt=check_prompt_shape(data, source), source=source)
    raise WorkflowFormatError(
        f"{source} is neither an API-format prompt (an object of nodes) nor a UI-format workflow",
        details=type(data).__name__,
    )


def load_workflow(
    source: str | Path | dict[str, Any],
    object_info: NodeSchemas = None,
    queue: QueueContext | None = None,
) -> Workflow:
    """Load a workflow from a JSON file, a PNG/WebP/video carrying one, or already-parsed data."""
    if isinstance(source, dict):
        return workflow_from_data(source, object_info, queue=queue)
    path = Path(source)
    if not path.is_file():
        raise WorkflowFormatError(f"workflow file {path} does not exist", code="workflow_not_found")
    if path.suffix.lower() in MEDIA_SUFFIXES:
        prompt, ui = read_embedded_workflow(path)
        # The embedded API prompt is exactly what ran; the UI graph is only converted when it is alone.
        if prompt is not None:
            return Workflow(prompt=check_prompt_shape(prompt, str(path)), ui=ui, source=str(path))
        if ui is not None:
            # workflow_from_data names the missing node schemas when object_info is None.
            return workflow_from_data(ui, object_info, str(path), queue)
        raise WorkflowFormatError(f"{path} carries no workflow metadata", code="no_workflow_metadata")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise WorkflowFormatError(f"cannot read workflow file {path}: {exc.strerror}") from exc
    return workflow_from_data(parse_json(raw, str(path)), object_info, str(path), queue)


def save_api(prompt: dict[str, Any], path: str | Path) -> None:
    """Write an API-format prompt as indented JSON (list constants wrapped in __value__)."""
    out: dict[str, Any] = {}
    for node_id, node in prompt.items():
        inputs = {
            name: value if is_link(value) else wrap_constant(value)
            for name, value in node.get("inputs", {}).items()
        }
        out[node_id] = {**node, "inputs": inputs}
    atomic_write_bytes(Path(path), (json.dumps(out, indent=2) + "\n").encode("utf-8"))

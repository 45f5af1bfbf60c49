"""diffgraph's generic typed DAG engine: node API, workflows, validation, cache, executor, events."""

from typing import TYPE_CHECKING, Any

from engine.atomic_files import FileWriteError, atomic_write, atomic_write_bytes, is_partial
from engine.context import CancelToken, Environment, RunContext
from engine.errors import (
    DiffgraphError,
    Interrupted,
    NodeExecutionError,
    NodeInputError,
    UserFacingError,
    WorkflowFormatError,
)
from engine.events import CustomMessage, Event, EventSink
from engine.flow import DynamicPrompt, ExecutionBlocker, NodeResult
from engine.formats.media_metadata import (
    apng_info,
    container_metadata,
    embed_gif_metadata,
    embed_webp_metadata,
    metadata_items,
    png_info,
    webp_exif_bytes,
)
from engine.formats.ui_transforms import apply_text_replacements
from engine.model_paths import FOLDERS, MODEL_EXTENSIONS, ModelPathError, ModelPaths
from engine.node import WIDGET_OPTION_KEYS, EdgeType, Hidden, Input, Node, NodeInputs, NodeOutputs, Output
from engine.precision import PRECISION_KEY, Precision
from engine.registry import PackInfo, Registry
from engine.safe_paths import PathRefused, resolve_inside, resolve_relative
from engine.schema import ChoiceProvider, InputSpec, NodeSpec, OutputSpec, node_spec, object_info

if TYPE_CHECKING:
    from engine.devices import available_memory, is_out_of_memory


def __getattr__(name: str) -> Any:
    # engine.devices imports torch (seconds): only code that runs models pays for it, not the CLI.
    if name == "is_out_of_memory":
        from engine.devices import is_out_of_memory

        return is_out_of_memory
    if name == "available_memory":
        from engine.devices import available_memory

        return available_memory
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


__all__ = [
    "available_memory",
    "PRECISION_KEY",
    "Precision",
    "is_out_of_memory",
    "apng_info",
    "container_metadata",
    "embed_gif_metadata",
    "embed_webp_metadata",
    "metadata_items",
    "png_info",
    "webp_exif_bytes",
    "FOLDERS",
    "MODEL_EXTENSIONS",
    "WIDGET_OPTION_KEYS",
    "CustomMessage",
    "DynamicPrompt",
    "ExecutionBlocker",
    "InputSpec",
    "NodeResult",
    "OutputSpec",
    "PackInfo",
    "ChoiceProvider",
    "CancelToken",
    "DiffgraphError",
    "EdgeType",
    "Environment",
    "Event",
    "FileWriteError",
    "EventSink",
    "Hidden",
    "Input",
    "Interrupted",
    "ModelPathError",
    "ModelPaths",
    "Node",
    "NodeExecutionError",
    "NodeInputError",
    "NodeInputs",
    "NodeOutputs",
    "NodeSpec",
    "Output",
    "PathRefused",
    "Registry",
    "RunContext",
    "UserFacingError",
    "WorkflowFormatError",
    "atomic_write",
    "atomic_write_bytes",
    "is_partial",
    "apply_text_replacements",
    "node_spec",
    "object_info",
    "resolve_inside",
    "resolve_relative",
]

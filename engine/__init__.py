"""diffgraph's generic typed DAG engine: node API, workflows, validation, cache, executor, events."""

from engine.atomic_files import FileWriteError, atomic_write, atomic_write_bytes, is_partial
from engine.context import CancelToken, Environment, RunContext
from engine.devices import is_out_of_memory
from engine.errors import (
    DiffgraphError,
    Interrupted,
    NodeExecutionError,
    NodeInputError,
    UserFacingError,
    WorkflowFormatError,
)
from engine.events import Event, EventSink
from engine.formats.media_metadata import (
    apng_info,
    container_metadata,
    embed_gif_metadata,
    embed_webp_metadata,
    metadata_items,
    png_info,
    webp_exif_bytes,
)
from engine.model_paths import FOLDERS, ModelPathError, ModelPaths
from engine.node import EdgeType, Hidden, Input, Node, NodeInputs, NodeOutputs, Output
from engine.registry import Registry
from engine.safe_paths import PathRefused, resolve_inside, resolve_relative
from engine.schema import ChoiceProvider, NodeSpec, node_spec, object_info

__all__ = [
    "is_out_of_memory",
    "apng_info",
    "container_metadata",
    "embed_gif_metadata",
    "embed_webp_metadata",
    "metadata_items",
    "png_info",
    "webp_exif_bytes",
    "FOLDERS",
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
    "node_spec",
    "object_info",
    "resolve_inside",
    "resolve_relative",
]

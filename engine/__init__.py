"""diffgraph's generic typed DAG engine: node API, workflows, validation, cache, executor, events."""

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
from engine.events import Event, EventSink
from engine.model_paths import ModelPathError, ModelPaths
from engine.node import EdgeType, Input, Node, NodeInputs, NodeOutputs, Output
from engine.registry import Registry
from engine.safe_paths import PathRefused, resolve_inside, resolve_relative
from engine.schema import NodeSpec, node_spec, object_info

__all__ = [
    "CancelToken",
    "DiffgraphError",
    "EdgeType",
    "Environment",
    "Event",
    "FileWriteError",
    "EventSink",
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

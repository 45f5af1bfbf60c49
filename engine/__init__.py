"""diffgraph's generic typed DAG engine: node API, workflows, validation, cache, executor, events."""

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
from engine.schema import NodeSpec, node_spec, object_info
from engine.ui_transforms import apply_text_replacements

__all__ = [
    "CancelToken",
    "DiffgraphError",
    "EdgeType",
    "Environment",
    "Event",
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
    "Registry",
    "RunContext",
    "UserFacingError",
    "WorkflowFormatError",
    "apply_text_replacements",
    "node_spec",
    "object_info",
]

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
from engine.flow import DynamicPrompt, ExecutionBlocker, NodeResult
from engine.model_paths import ModelPathError, ModelPaths
from engine.node import EdgeType, Input, Node, NodeInputs, NodeOutputs, Output
from engine.registry import Registry
from engine.schema import NodeSpec, node_spec, object_info

__all__ = [
    "CancelToken",
    "DiffgraphError",
    "DynamicPrompt",
    "EdgeType",
    "Environment",
    "Event",
    "ExecutionBlocker",
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
    "NodeResult",
    "NodeSpec",
    "Output",
    "Registry",
    "RunContext",
    "UserFacingError",
    "WorkflowFormatError",
    "node_spec",
    "object_info",
]

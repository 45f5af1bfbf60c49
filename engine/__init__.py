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
from engine.events import CustomMessage, Event, EventSink
from engine.flow import DynamicPrompt, ExecutionBlocker, NodeResult
from engine.model_paths import FOLDERS, MODEL_EXTENSIONS, ModelPathError, ModelPaths
from engine.node import WIDGET_OPTION_KEYS, EdgeType, Input, Node, NodeInputs, NodeOutputs, Output
from engine.registry import PackInfo, Registry
from engine.schema import ChoiceProvider, InputSpec, NodeSpec, OutputSpec, node_spec, object_info

__all__ = [
    "FOLDERS",
    "MODEL_EXTENSIONS",
    "WIDGET_OPTION_KEYS",
    "CancelToken",
    "ChoiceProvider",
    "CustomMessage",
    "DiffgraphError",
    "DynamicPrompt",
    "EdgeType",
    "Environment",
    "Event",
    "EventSink",
    "ExecutionBlocker",
    "Input",
    "InputSpec",
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
    "OutputSpec",
    "PackInfo",
    "Registry",
    "RunContext",
    "UserFacingError",
    "WorkflowFormatError",
    "node_spec",
    "object_info",
]

"""diffgraph's composition root: the `diffgraph` command and the Python API (Session, Workflow, RunResult)."""

from diffgraph.api import RunFailed, RunResult, Session, WorkflowInvalid
from diffgraph.workflow import NodeRefError, NodeView, OverrideError, Workflow

__all__ = [
    "NodeRefError",
    "NodeView",
    "OverrideError",
    "RunFailed",
    "RunResult",
    "Session",
    "Workflow",
    "WorkflowInvalid",
]

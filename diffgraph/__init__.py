"""diffgraph's composition root: the `diffgraph` command and the Python API (Session and its distributed sibling, Workflow, RunResult)."""

from diffgraph.api import RunFailed, RunResult, Session, WorkflowInvalid
from diffgraph.distributed.session import DistributedResult, DistributedSession
from diffgraph.workflow import NodeRefError, NodeView, OverrideError, Workflow

__all__ = [
    "DistributedResult",
    "DistributedSession",
    "NodeRefError",
    "NodeView",
    "OverrideError",
    "RunFailed",
    "RunResult",
    "Session",
    "Workflow",
    "WorkflowInvalid",
]

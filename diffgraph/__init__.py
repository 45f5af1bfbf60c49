"""diffgraph's composition root: the `diffgraph` command and the Python API (Session and its distributed sibling, Workflow, RunResult)."""

import os

# Before torch loads its OpenMP runtime, which reads this once: idle OpenMP threads sleep instead of
# spinning for milliseconds after each parallel region. Spinning threads hold the cores the server's
# event loop (and, on a shared machine, everyone else) needs; measured on 2 cores, a burst of
# submissions answered 4 to 7 times slower with them spinning, and prompts ran no faster.
# A value set by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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

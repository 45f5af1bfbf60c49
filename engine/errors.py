"""The engine's error family: every error a user can see carries a stable snake_case code."""

from __future__ import annotations

from typing import Any


class DiffgraphError(Exception):
    """Root of every error diffgraph raises on purpose; `code` is stable and machine-readable."""

    code: str = "diffgraph_error"

    def __init__(self, message: str, *, code: str | None = None, details: str = "", **extra: Any):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """ComfyUI's error body shape: type, message, details, extra_info."""
        return {"type": self.code, "message": self.message, "details": self.details, "extra_info": self.extra}


class NodeInputError(DiffgraphError):
    """Raised by a node when an input value is unusable; names the input and says what to change."""

    code = "invalid_input"

    def __init__(self, input_name: str, message: str):
        super().__init__(message, input_name=input_name)
        self.input_name = input_name


class UserFacingError(DiffgraphError):
    """Raised by a node for a problem the user can fix (missing model file, wrong family...)."""

    code = "node_error"


class Interrupted(DiffgraphError):
    """The run was cancelled by the user; raised from `ctx.check_cancelled()`."""

    code = "interrupted"

    def __init__(self, message: str = "Execution was interrupted"):
        super().__init__(message)


class NodeExecutionError(DiffgraphError):
    """Wraps any exception a node raised, with the node id and class, keeping the cause chained."""

    code = "execution_error"

    def __init__(self, node_id: str, class_type: str, cause: BaseException, **extra: Any):
        message = str(cause) or type(cause).__name__
        super().__init__(message, node_id=node_id, class_type=class_type, **extra)
        self.node_id = node_id
        self.class_type = class_type
        self.cause = cause


class WorkflowFormatError(DiffgraphError):
    """A workflow file is not valid JSON or not in a shape diffgraph knows (API or UI format)."""

    code = "invalid_prompt"

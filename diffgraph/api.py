"""The Python API: a Session keeps the registry, model store and cache; it loads, validates and runs."""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diffgraph.custom_nodes import load_packs
from diffgraph.workflow import Workflow
from engine import CancelToken, DiffgraphError, Environment, ModelPaths, NodeOutputs, Registry
from engine.context import default_model_store
from engine.events import EventSink, discard
from engine.executor import Executor
from engine.formats.ui_transforms import QueueContext
from engine.formats.workflow import load_workflow
from engine.model_paths import models_dir_default
from engine.outcome import Status
from engine.registry import RegistryFactory
from engine.validation import ValidationResult, validate_prompt


def default_registry_factory(model_paths: ModelPaths, input_dir: Path) -> Registry:
    """The builtin node pack with choices bound to these folders (imported late: nodes pull in torch)."""
    from nodes.pack import build_registry

    return build_registry(model_paths, input_dir)


class WorkflowInvalid(DiffgraphError):
    """Validation failed: nothing ran. `node_errors` is ComfyUI's per-node shape."""

    code = "prompt_outputs_failed_validation"

    def __init__(self, validation: ValidationResult):
        error = validation.error or {}
        super().__init__(error.get("message") or "the workflow is invalid", code=error.get("type"))
        self.validation = validation
        self.node_errors = validation.node_errors or {}


class RunFailed(DiffgraphError):
    """A node failed (or the run was interrupted); `result` holds what finished before."""

    code = "execution_error"

    def __init__(self, result: RunResult):
        super().__init__(result.error_message() or f"run {result.status}")
        self.result = result


@dataclass
class RunResult:
    """What one run produced, for Python callers: the executor's ExecutionResult plus files and seconds.

    Built from ExecutionResult only (Session.execute): typed outputs per node, UI outputs, the files
    the output nodes wrote, which nodes ran or came from the cache, timings, and the error payload.
    """

    status: Status
    prompt_id: str
    outputs: dict[str, NodeOutputs]
    ui: dict[str, dict[str, Any]]
    executed: list[str]
    cached: list[str]
    files: dict[str, list[Path]]
    timings: dict[str, Any]
    seconds: float
    error: dict[str, Any] | None = None
    node_errors: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every output ran."""
        return self.status == "success"

    def all_files(self) -> list[Path]:
        """Every file the output nodes wrote, in node order."""
        return [path for paths in self.files.values() for path in paths]

    def error_message(self) -> str:
        """`node #3 (KSampler): message` for a failed run, else ''."""
        if not self.error:
            return ""
        node = self.error.get("node_id")
        where = f"node #{node} ({self.error.get('node_type')}): " if node else ""
        return where + str(self.error.get("exception_message") or self.error.get("message") or self.status)


def ui_files(ui: dict[str, Any], env: Environment) -> list[Path]:
    """Paths of the files a node's UI output names ({"images": [{filename, subfolder, type}]}...)."""
    roots = {"output": env.output_dir, "temp": env.temp_dir, "input": env.input_dir}
    paths = []
    for items in ui.values():
        if not isinstance(items, list):
            continue
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("filename"), str):
                root = roots.get(item.get("type", "output"), env.output_dir)
                paths.append(root / (item.get("subfolder") or "") / item["filename"])
    return paths


class Session:
    """One process's engine: registry, model store and cache stay alive across runs.

    >>> session = Session(models_dir="models", output_dir="output")
    >>> wf = session.load("workflows/txt2img_sd15.json").set("KSampler", "seed", 5)
    >>> result = session.run(wf)   # result.files, result.outputs["3"], result.cached
    """

    def __init__(
        self,
        models_dir: str | Path | None = None,
        output_dir: str | Path = "output",
        input_dir: str | Path = "input",
        temp_dir: str | Path | None = None,
        registry_factory: RegistryFactory | None = None,
        model_store: Any = None,
        custom_nodes: Sequence[Path] = (),
    ):
        self.model_paths = ModelPaths(Path(models_dir) if models_dir else models_dir_default())
        self._own_temp = temp_dir is None
        temp = Path(tempfile.mkdtemp(prefix="diffgraph-temp-")) if temp_dir is None else Path(temp_dir)
        self.env = Environment(
            output_dir=Path(output_dir),
            temp_dir=temp,
            input_dir=Path(input_dir),
            models=model_store if model_store is not None else default_model_store(),
            model_paths=self.model_paths,
        )
        self.registry = (registry_factory or default_registry_factory)(self.model_paths, self.env.input_dir)
        load_packs(self.registry, custom_nodes, self.env)
        self.executor = Executor(self.registry, self.env)

    @property
    def models_dir(self) -> Path:
        """The models folder (ComfyUI layout)."""
        return self.model_paths.root

    def load(self, source: str | Path | dict[str, Any], queue: QueueContext | None = None) -> Workflow:
        """Load an API- or UI-format JSON file, a PNG/video carrying a workflow, or a parsed dict.

        `queue` pins the clock (`%date:...%`) and the `{a|b}` choices of a UI workflow's conversion.
        """
        loaded = load_workflow(source, self.registry.object_info, queue)
        return Workflow.from_engine(loaded, self.registry)

    def validate(self, workflow: Workflow) -> ValidationResult:
        """Validate without running (ComfyUI's error and node_errors shapes)."""
        return validate_prompt(workflow.prompt, self.registry, env=self.env)

    def prepare(self, workflow: Workflow) -> ValidationResult:
        """Validate; raises WorkflowInvalid when no output can run (partly valid prompts pass)."""
        validation = self.validate(workflow)
        if not validation.ok:
            raise WorkflowInvalid(validation)
        return validation

    def run(
        self,
        workflow: Workflow,
        *,
        force: bool = False,
        sink: EventSink | None = None,
        cancel: CancelToken | None = None,
        raise_on_error: bool = True,
    ) -> RunResult:
        """Validate and run; only nodes whose inputs changed since earlier runs execute (unless force).

        Raises WorkflowInvalid when nothing can run, and RunFailed when a node fails (unless
        raise_on_error is False, then the failed RunResult is returned).
        """
        result = self.execute(workflow, self.prepare(workflow), force=force, sink=sink, cancel=cancel)
        if raise_on_error and not result.ok:
            raise RunFailed(result)
        return result

    def execute(
        self,
        workflow: Workflow,
        validation: ValidationResult,
        *,
        force: bool = False,
        sink: EventSink | None = None,
        cancel: CancelToken | None = None,
    ) -> RunResult:
        """Run an already validated workflow (see prepare); never raises for node failures."""
        self.env.output_dir.mkdir(parents=True, exist_ok=True)
        prompt_id = str(uuid.uuid4())
        started = time.perf_counter()
        executed = self.executor.execute(
            validation.prompt,
            prompt_id=prompt_id,
            outputs=validation.outputs,
            extra_data=workflow.extra_data(),
            sink=sink or discard,
            cancel=cancel or CancelToken(),
            force=force,
            previews=False,
        )
        ui = dict(executed.ui_outputs or {})
        return RunResult(
            status=executed.status,
            prompt_id=prompt_id,
            outputs={nid: out for nid, out in (executed.node_outputs or {}).items() if out is not None},
            ui=ui,
            executed=list(executed.executed),
            cached=list(executed.cached),
            files={nid: ui_files(node_ui, self.env) for nid, node_ui in ui.items()},
            timings=dict(executed.timings or {}),
            seconds=time.perf_counter() - started,
            error=executed.error_data(),
            node_errors=dict(validation.node_errors or {}),
        )

    def clear_cache(self) -> None:
        """Forget every cached node output (models stay loaded in the store)."""
        self.executor.cache.clear()

    def close(self) -> None:
        """Remove the session's own temp folder."""
        if self._own_temp:
            shutil.rmtree(self.env.temp_dir, ignore_errors=True)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

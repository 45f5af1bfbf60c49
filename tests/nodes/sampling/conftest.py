"""Fixtures for sampler node tests: run an API prompt through the real executor on a models folder."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from engine import CancelToken, Environment, ModelPaths
from engine.executor import Executor
from engine.validation import validate_prompt
from tests.shared_reference import CASES, MISSING_REASON

DATA = Path(__file__).parent / "data"


def case_prompt(case: str) -> dict:
    """The API workflow of a reference case, from the copy committed in data/ (no shared data needed)."""
    return json.loads((DATA / f"{case}.json").read_text())


def reference_prompt(case: str) -> dict:
    """A shared reference case's API workflow (the test is skipped when the shared data is absent)."""
    if not CASES.is_dir():
        pytest.skip(MISSING_REASON)
    return json.loads((CASES / case / "workflow_api.json").read_text())


def retarget(prompt: dict, ckpt_name: str, size: int | None = None, drop: tuple[str, ...] = ()) -> dict:
    """The prompt with another checkpoint, optionally another image size, without some nodes."""
    out = copy.deepcopy(prompt)
    for node_id in drop:
        out.pop(node_id)
    for node in out.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = ckpt_name
        if size is not None and node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=size, height=size)
    return out


class PromptRunner:
    """Validates and executes prompts against one models folder, collecting events."""

    def __init__(self, models_root: Path, store, tmp_path: Path):
        from nodes.pack import build_registry

        input_dir = tmp_path / "input"
        input_dir.mkdir(exist_ok=True)
        self.registry = build_registry(ModelPaths(models_root), input_dir)
        self.env = Environment(
            output_dir=tmp_path / "output",
            temp_dir=tmp_path / "temp",
            input_dir=input_dir,
            models=store,
            model_paths=ModelPaths(models_root),
        )
        self.executor = Executor(self.registry, self.env)
        self.events: list = []

    def validate(self, prompt: dict):
        """The validation result (ok, node_errors...)."""
        return validate_prompt(prompt, self.registry, env=self.env)

    def run(
        self,
        prompt: dict,
        previews: bool = False,
        cancel: CancelToken | None = None,
        force: bool = True,
        extra_data: dict | None = None,
    ):
        """Execute; returns the ExecutionResult (events land in self.events)."""
        checked = self.validate(prompt)
        assert checked.ok, checked.node_errors or checked.error
        self.events = []
        return self.executor.execute(
            checked.prompt,
            prompt_id="test",
            outputs=checked.outputs,
            sink=self.events.append,
            cancel=cancel,
            previews=previews,
            force=force,
            extra_data=extra_data,
        )


@pytest.fixture(scope="module")
def tiny_runner(tiny_models_dir, tmp_path_factory) -> PromptRunner:
    """A runner over the tiny checkpoints; one model store per module so weights load once."""
    from engine.devices import DevicePolicy
    from engine.model_store import ModelStore

    store = ModelStore(DevicePolicy.from_env(device="cpu"))
    return PromptRunner(tiny_models_dir, store, tmp_path_factory.mktemp("run"))

"""Fixtures: the test packs loaded into a registry beside a few typed nodes, and an executor on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine import Environment, Input, ModelPaths, Node, NodeInputs, NodeOutputs, Output, Registry
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.comfy_compat.loader import load_custom_nodes
from nodes.types import Image, Latent

PACKS = Path(__file__).parent / "packs"


class MakeImage(Node):
    """A typed node producing an IMAGE of one grey level."""

    class_type = "MakeImage"

    class Inputs(NodeInputs):
        level: float = Input(0.25, description="grey level")

    class Outputs(NodeOutputs):
        image: Image = Output()
        latent: Latent = Output()

    def run(self, ctx, inputs):
        return self.Outputs(
            image=Image(pixels=torch.full((1, 8, 8, 3), inputs.level)),
            latent=Latent(samples=torch.ones(1, 4, 2, 2)),
        )


class ImageStats(Node):
    """A typed output node reading typed values a pack produced."""

    class_type = "ImageStats"
    output_node = True

    class Inputs(NodeInputs):
        image: Image = Input(description="image")
        latent: Latent = Input(description="latent")

    class Outputs(NodeOutputs):
        pass

    def run(self, ctx, inputs):
        ctx.set_ui(
            {"mean": [float(inputs.image.pixels.mean())], "latent": [float(inputs.latent.samples.mean())]}
        )
        return self.Outputs()


def broken_packs(tmp: Path) -> Path:
    """A second custom-nodes folder holding a pack with a syntax error."""
    folder = tmp / "more_custom_nodes"
    (folder / "broken_pack").mkdir(parents=True, exist_ok=True)
    (folder / "broken_pack" / "__init__.py").write_text("def oops(:\n", encoding="utf-8")
    return folder


def make_env(tmp: Path) -> Environment:
    models = tmp / "models"
    (models / "checkpoints").mkdir(parents=True, exist_ok=True)
    (models / "checkpoints" / "tiny.safetensors").write_bytes(b"x")
    return Environment(
        output_dir=tmp / "output",
        temp_dir=tmp / "temp",
        input_dir=tmp / "input",
        model_paths=ModelPaths(models),
    )


@pytest.fixture(scope="module")
def packs_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Registry, Environment]:
    """The test packs (V1, V3, broken, internals) loaded once per module."""
    tmp = tmp_path_factory.mktemp("packs")
    env = make_env(tmp)
    registry = Registry([MakeImage, ImageStats])
    load_custom_nodes(registry, [PACKS, broken_packs(tmp)], env)
    return registry, env


@pytest.fixture
def run_prompt(packs_env):
    """Validate and execute a prompt on a fresh executor; returns (result, events)."""
    registry, env = packs_env
    executor = Executor(registry, env)

    def run(prompt: dict[str, Any], **kwargs: Any):
        checked = validate_prompt(prompt, registry, env=env)
        assert checked.ok, checked.node_errors
        events: list[Any] = []
        result = executor.execute(
            checked.prompt, prompt_id="p", outputs=checked.outputs, sink=events.append, **kwargs
        )
        return result, events

    return run

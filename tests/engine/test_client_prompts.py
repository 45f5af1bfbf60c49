"""UI files convert to exactly the API prompt the web client queued for them (captured fixtures).

The fixtures in data/client_prompts/captured were made by `python -m tests.engine.make_client_prompts`
with the client version each records; the clock and the `{a|b}` randomness were pinned there and are
pinned the same way here (`QueueContext.pinned`).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from engine import ModelPaths
from engine.formats.ui_transforms import FILENAME_WIDGET, SAVE_NODE_TYPES, QueueContext
from engine.formats.ui_widgets import widget_specs
from engine.formats.ui_workflow import ui_to_api

DATA = Path(__file__).parent / "data" / "client_prompts"
CORPUS = sorted((DATA / "corpus").glob("*.json"))
REPO = Path(__file__).resolve().parents[2]


def captured(path: Path) -> dict[str, Any]:
    """The capture recorded for corpus file `path`."""
    return json.loads((DATA / "captured" / path.name).read_text(encoding="utf-8"))


def normalise(prompt: dict[str, Any]) -> Any:
    """The prompt as canonical JSON text (sorted keys, no spacing), compared byte for byte."""
    return json.dumps(prompt, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class CountingRandom:
    """Wraps a random source and counts the draws (the client's count is in each capture)."""

    def __init__(self, source: Callable[[], float]):
        self.source, self.calls = source, 0

    def __call__(self) -> float:
        self.calls += 1
        return self.source()


def changed_transforms(ours: dict[str, Any], client: dict[str, Any], info: dict[str, Any]) -> list[str]:
    """Name the transform behind each difference: which rewrite the client now does differently."""
    found: set[str] = set()
    for node_id in sorted(set(ours) | set(client)):
        a, b = ours.get(node_id), client.get(node_id)
        if a is None or b is None:
            found.add(f"node {node_id} present on one side only (execution order, muting or bypass)")
            continue
        if a.get("_meta") != b.get("_meta"):
            found.add("_meta (title or pack identity cnr_id/aux_id/ver)")
        class_type = b["class_type"]
        specs = {s.name: s for s in widget_specs(info.get(class_type) or {})}
        for name in sorted(set(a["inputs"]) | set(b["inputs"])):
            if a["inputs"].get(name) == b["inputs"].get(name):
                continue
            spec = specs.get(name)
            if spec is not None and spec.dynamic_prompts:
                found.add(f"dynamic prompts (comments, {{a|b}} choices) in {class_type}.{name}")
            elif name == FILENAME_WIDGET and class_type in SAVE_NODE_TYPES:
                found.add(f"filename tokens (%date:...%, %Node.widget%) in {class_type}.{name}")
            else:
                found.add(f"widget values or links of {class_type}.{name}")
    return sorted(found)


@pytest.fixture(scope="module")
def client_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder whose checkpoint list holds the corpus' ckpt_name, as when capturing."""
    root = tmp_path_factory.mktemp("client_models")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "tiny-sd15.safetensors").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def object_info(client_models: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The builtin pack's node schemas, as the client saw them."""
    from nodes.pack import build_registry

    return build_registry(ModelPaths(client_models), tmp_path_factory.mktemp("input")).object_info()


def test_client_prompts_corpus_covers_every_transform():
    names = {path.stem for path in CORPUS}
    expected = {
        "comments",
        "choices",
        "choices_order",
        "filename_tokens",
        "primitives",
        "pack_meta",
        "subgraph",
    }
    assert expected <= names
    for path in CORPUS:
        assert (DATA / "captured" / path.name).is_file(), f"no capture for {path.name}: run the generator"


def assert_reproduces(path: Path, record: dict[str, Any], object_info: dict[str, Any]) -> None:
    """ui_to_api of corpus file `path` equals the recorded client prompt, drawing as many random numbers."""
    rand = CountingRandom(QueueContext.pinned(seed=record["choice_seed"]).random)
    queue = QueueContext(now=datetime.fromisoformat(record["now"]), random=rand)
    ours = normalise(ui_to_api(json.loads(path.read_text(encoding="utf-8")), object_info, queue))
    client = normalise(record["prompt"])
    installed = importlib.metadata.version("comfyui-frontend-package")
    if ours != client:
        changes = changed_transforms(json.loads(ours), json.loads(client), object_info)
        note = (
            f"the fixture was made with client {record['client_version']} but {installed} is installed: "
            "re-run `python -m tests.engine.make_client_prompts` and port what changed"
            if record["client_version"] != installed
            else f"made with the installed client {installed}: the conversion diverged"
        )
        pytest.fail(f"{path.name}: {note}; transforms that differ: {changes}")
    assert rand.calls == record["random_calls"], "the {a|b} choices drew a different count of random numbers"


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_ui_to_api_reproduces_the_client_prompt(path, object_info):
    assert_reproduces(path, captured(path), object_info)


@pytest.mark.browser
@pytest.mark.slow
def test_installed_client_still_queues_what_the_conversion_produces(tmp_path, object_info):
    """Fresh captures from the installed client (whatever its version) against the conversion."""
    from tests.engine.make_client_prompts import CHROMIUM, generate

    if not CHROMIUM.exists() and not os.environ.get("CI"):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium); CI always runs this")
    for out in generate(CORPUS, tmp_path):
        assert_reproduces(
            DATA / "corpus" / out.name, json.loads(out.read_text(encoding="utf-8")), object_info
        )


def test_changed_transforms_names_the_transform_that_moved(object_info):
    path = DATA / "corpus" / "filename_tokens.json"
    client = captured(path)["prompt"]
    ours = json.loads(json.dumps(client))
    ours["6"]["inputs"]["text"] += " // a comment the client would cut"
    ours["9"]["inputs"]["filename_prefix"] = "%date:yyyy%"
    ours["4"]["_meta"]["ver"] = "0.0.1"
    assert changed_transforms(ours, client, object_info) == [
        "_meta (title or pack identity cnr_id/aux_id/ver)",
        "dynamic prompts (comments, {a|b} choices) in CLIPTextEncode.text",
        "filename tokens (%date:...%, %Node.widget%) in SaveImage.filename_prefix",
    ]


def _convert_args(path: Path, record: dict[str, Any], models: Path) -> list[str]:
    return [
        "convert",
        str(path),
        "--now",
        record["now"],
        "--choice-seed",
        str(record["choice_seed"]),
        "--models-dir",
        str(models),
    ]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_convert_command_reproduces_the_client_prompt(path, client_models, tmp_path, capsys, monkeypatch):
    from diffgraph.cli import main

    monkeypatch.chdir(tmp_path)
    record = captured(path)
    assert main(_convert_args(path, record, client_models)) == 0
    assert normalise(json.loads(capsys.readouterr().out)) == normalise(record["prompt"])


@pytest.mark.slow
def test_python_m_diffgraph_convert_reproduces_the_client_prompt(client_models, tmp_path):
    path = DATA / "corpus" / "choices.json"
    record = captured(path)
    done = subprocess.run(
        [sys.executable, "-m", "diffgraph", *_convert_args(path, record, client_models)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert normalise(json.loads(done.stdout)) == normalise(record["prompt"])


@pytest.mark.slow
def test_headless_run_of_commented_prompt_gives_the_client_prompts_latent(
    tiny_models_dir, tmp_path, model_store
):
    """Comments are cut before CLIP sees the text: same latent as the browser's prompt, unlike the raw text."""
    from engine import Environment
    from engine.executor import Executor
    from engine.validation import validate_prompt
    from nodes.pack import build_registry

    env = Environment(
        tmp_path / "out", tmp_path / "temp", tmp_path / "in", model_store, ModelPaths(tiny_models_dir)
    )
    registry = build_registry(env.model_paths, env.input_dir)
    executor = Executor(registry, env)

    def sampled(prompt: dict[str, Any]) -> Any:
        checked = validate_prompt(prompt, registry, env=env)
        assert checked.ok, checked.node_errors or checked.error
        result = executor.execute(checked.prompt, prompt_id="p", outputs=checked.outputs, force=True)
        assert result.status == "success", result.error and result.error.data()
        return result.node_outputs["3"].LATENT.samples

    path = DATA / "corpus" / "comments.json"
    ui = json.loads(path.read_text(encoding="utf-8"))
    headless = ui_to_api(ui, registry.object_info())  # the default conversion, as `diffgraph run` does
    client = captured(path)["prompt"]
    commented = json.loads(json.dumps(client))
    for node in ui["nodes"]:
        if node["type"] == "CLIPTextEncode":
            commented[str(node["id"])]["inputs"]["text"] = node["widgets_values"][0]
    assert headless["6"]["inputs"]["text"] != commented["6"]["inputs"]["text"]
    latent = sampled(headless)
    assert latent.equal(sampled(client))
    assert not latent.allclose(sampled(commented))

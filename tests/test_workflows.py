"""Every workflow in workflows/ validates and runs headless on tiny random checkpoints.

The workflows run as shipped except for their image size (64x64 instead of 512/1024) and img2img's
input picture; the tiny checkpoints are written under the workflows' own checkpoint file names. The
two-sampler compare workflow is checked end to end: 2 PNGs and 2 MP4s of 30 frames at 1 fps, each
carrying the workflow back.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import av
import pytest
from PIL import Image as PILImage

from engine import Environment, ModelPaths
from engine.executor import Executor
from engine.media_metadata import read_embedded_workflow
from engine.validation import validate_prompt

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
API_FILES = sorted(WORKFLOWS.glob("*.json"))
TEST_SIZE = 64
CHECKPOINTS = {
    "v1-5-pruned-emaonly.safetensors": "sd15",
    "sd_xl_base_1.0.safetensors": "sdxl",
    "sd_xl_refiner_1.0.safetensors": "sdxl-refiner",
}


def load_api(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_checkpoint_paths) -> Path:
    """The shared tiny random checkpoints, copied under the file names the workflows use."""
    root = tmp_path_factory.mktemp("workflow_models")
    (root / "checkpoints").mkdir()
    for name, arch in CHECKPOINTS.items():
        shutil.copyfile(tiny_checkpoint_paths[arch], root / "checkpoints" / name)
    return root


@pytest.fixture(scope="module")
def registry(models_dir, tmp_path_factory):
    from nodes.pack import build_registry

    input_dir = tmp_path_factory.mktemp("input")
    PILImage.new("RGB", (TEST_SIZE, TEST_SIZE), (180, 120, 40)).save(input_dir / "example.png")
    return build_registry(ModelPaths(models_dir), input_dir), input_dir


@pytest.fixture
def runner(registry, models_dir, tmp_path, model_store):
    reg, input_dir = registry
    env = Environment(
        output_dir=tmp_path / "output",
        temp_dir=tmp_path / "temp",
        input_dir=input_dir,
        models=model_store,
        model_paths=ModelPaths(models_dir),
    )
    executor = Executor(reg, env)

    def run(prompt: dict, ui: dict | None = None):
        checked = validate_prompt(prompt, reg, env=env)
        assert checked.ok, checked.node_errors or checked.error
        extra = {"extra_pnginfo": {"workflow": ui}} if ui is not None else {}
        result = executor.execute(checked.prompt, prompt_id="test", outputs=checked.outputs, extra_data=extra)
        assert result.status == "success", result.error and result.error.data()
        return result

    return run, env


def shrink(prompt: dict) -> dict:
    """The same workflow at TEST_SIZE pixels (tiny UNets make any step count cheap)."""
    small = copy.deepcopy(prompt)
    for node in small.values():
        if node["class_type"] == "EmptyLatentImage":
            node["inputs"].update(width=TEST_SIZE, height=TEST_SIZE)
    return small


def saved_files(env: Environment, result, suffix: str) -> list[Path]:
    paths = []
    for ui in result.ui_outputs.values():
        for entry in ui.get("images", []):
            if entry["filename"].endswith(suffix) and entry["type"] == "output":
                paths.append(env.output_dir / entry["subfolder"] / entry["filename"])
    return sorted(paths)


def test_workflows_directory_has_the_promised_files():
    names = {p.stem for p in API_FILES}
    assert {
        "txt2img_sd15",
        "img2img_sd15",
        "sdxl_base_refiner",
        "two_sampler_compare",
        "two_sampler_chain",
    } <= names
    for path in API_FILES:
        prompt = load_api(path)
        assert all("class_type" in node and "inputs" in node for node in prompt.values()), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_workflow_runs_headless_on_tiny_checkpoints(runner, path):
    run, env = runner
    result = run(shrink(load_api(path)))
    pngs = saved_files(env, result, ".png")
    assert pngs, "every shipped workflow saves at least one image"
    for png in pngs:
        assert PILImage.open(png).size == (TEST_SIZE, TEST_SIZE)


def _video_frames(path: Path) -> tuple[int, object, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame for frame in container.decode(stream)]
        return len(frames), stream.average_rate, (frames[0].width, frames[0].height)


@pytest.mark.slow
def test_two_sampler_compare_yields_two_pngs_and_two_30_frame_videos(runner):
    run, env = runner
    prompt = shrink(load_api(WORKFLOWS / "two_sampler_compare.json"))
    ui_workflow = {"nodes": [], "links": [], "version": 0.4, "extra": {"marker": "compare"}}
    result = run(prompt, ui_workflow)
    pngs = saved_files(env, result, ".png")
    videos = saved_files(env, result, ".mp4")
    assert [p.name for p in pngs] == ["dpmpp_2m_karras_00001_.png", "euler_normal_00001_.png"]
    assert [p.name for p in videos] == ["dpmpp_2m_karras_steps_00001_.mp4", "euler_normal_steps_00001_.mp4"]
    for video in videos:
        count, rate, size = _video_frames(video)
        assert (count, rate, size) == (30, 1, (TEST_SIZE, TEST_SIZE))
    for path in pngs + videos:
        embedded = read_embedded_workflow(path)
        assert embedded.prompt == prompt and embedded.workflow == ui_workflow, path.name
    for node_id in ("12", "14", "22", "24"):
        assert result.ui_outputs[node_id]["images"][0]["subfolder"] == "compare"
    assert result.ui_outputs["14"]["animated"] == [True]
    # The two samplers really differ: same seed, different final images.
    first, second = (PILImage.open(p).tobytes() for p in pngs)
    assert first != second


@pytest.mark.slow
def test_two_sampler_compare_resubmission_writes_nothing_new(runner):
    run, env = runner
    prompt = shrink(load_api(WORKFLOWS / "two_sampler_compare.json"))
    for node in prompt.values():
        if node["class_type"] == "KSampler":
            node["inputs"]["steps"] = 3
    first = run(prompt)
    before = sorted(env.output_dir.rglob("*"))
    again = run(prompt)
    assert again.executed == [] and sorted(env.output_dir.rglob("*")) == before
    assert again.ui_outputs == first.ui_outputs


def ui_path(api_path: Path) -> Path:
    return WORKFLOWS / "ui" / api_path.name


@pytest.mark.parametrize("path", API_FILES, ids=lambda p: p.stem)
def test_workflow_ui_file_converts_back_to_the_api_file(registry, path):
    from engine.ui_workflow import api_to_ui, ui_to_api

    reg, _ = registry
    info = reg.object_info()
    prompt = load_api(path)
    if os.environ.get("DIFFGRAPH_REGEN_UI"):
        ui_path(path).parent.mkdir(exist_ok=True)
        ui_path(path).write_text(json.dumps(api_to_ui(prompt, info), indent=2) + "\n", encoding="utf-8")
    assert ui_path(path).is_file(), f"missing {ui_path(path)}; see workflows/README.md to regenerate"
    assert ui_to_api(json.loads(ui_path(path).read_text(encoding="utf-8")), info) == prompt

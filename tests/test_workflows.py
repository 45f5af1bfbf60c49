"""Every workflow in workflows/ validates and runs headless on tiny random checkpoints.

The workflows run as shipped except for their image size (64x64 instead of 512/1024) and img2img's
input picture; the tiny checkpoints are written under the workflows' own checkpoint file names. The
two-sampler compare workflow runs once per module (it is the longest) and is checked end to end: 2 PNGs
and 2 MP4s of 30 frames at 1 fps, each carrying the workflow back to load_workflow, the CLI and the
server.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image as PILImage

from engine import Environment, ModelPaths
from engine.executor import Executor
from engine.formats.media_metadata import read_embedded_workflow
from engine.validation import validate_prompt
from nodes.defs import flux_kontext
from nodes.diffusion.controlnet_files import make_controlnet
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_text_encoder import make_text_encoder
from tests.nodes.flux_files import write_tiny_flux_models
from tests.shared_reference import CASES, needs_reference

WORKFLOWS = Path(__file__).resolve().parent.parent / "workflows"
API_FILES = sorted(WORKFLOWS.glob("*.json"))
TEST_SIZE = 64
COMPARE = WORKFLOWS / "two_sampler_compare.json"
CHECKPOINTS = {
    "v1-5-pruned-emaonly.safetensors": "sd15",
    "sd_xl_base_1.0.safetensors": "sdxl",
    "sd_xl_refiner_1.0.safetensors": "sdxl-refiner",
    "sd15-random.safetensors": "sd15",  # the ComfyUI reference cases' checkpoint name
    "sd21-unclip-h.safetensors": "sd2-unclip",
}
# Tiny SD1.5 ControlNets under the names the workflows and the reference cases use.
CONTROLNETS = ("control_v11p_sd15_canny_fp16.safetensors", "sd15-controlnet-random.safetensors")
UPSCALE_MODEL = "RealESRGAN_x4plus.safetensors"


def load_api(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, tiny_checkpoint_paths) -> Path:
    """The shared tiny random checkpoints, copied under the file names the workflows use."""
    root = tmp_path_factory.mktemp("workflow_models")
    (root / "checkpoints").mkdir()
    for name, arch in CHECKPOINTS.items():
        shutil.copyfile(tiny_checkpoint_paths[arch], root / "checkpoints" / name)
    # The FLUX workflows' separate files (diffusion model, text encoders, autoencoder).
    write_tiny_flux_models(root)
    # The SD3.5 workflow's checkpoint (MMDiT + VAE) and CLIP-G (its CLIP-L and T5 are the FLUX ones).
    make_sd3_checkpoint("sd3.5-medium", "tiny", 0, root / "checkpoints" / "sd3.5_medium.safetensors")
    make_text_encoder("clip_g", "tiny", 0, root / "text_encoders" / "clip_g.safetensors")
    for name in CONTROLNETS:
        make_controlnet("sd15", "tiny", 0, root / "controlnet" / name)
    from nodes.diffusion.make_guidance import make_esrgan

    make_esrgan(root / "upscale_models" / UPSCALE_MODEL, "new", "tiny", 0, 4)
    return root


@pytest.fixture(scope="module")
def registry(models_dir, tmp_path_factory):
    from nodes.pack import build_registry

    input_dir = tmp_path_factory.mktemp("input")
    # A transparent square: LoadImage's MASK (1 - alpha) gives the inpaint workflow a region to repaint.
    picture = PILImage.new("RGBA", (TEST_SIZE, TEST_SIZE), (180, 120, 40, 255))
    picture.paste((0, 0, 0, 0), (16, 16, 40, 40))
    picture.save(input_dir / "example.png")
    return build_registry(ModelPaths(models_dir), input_dir), input_dir


def make_runner(reg, models_dir: Path, output_root: Path, input_dir: Path, store):
    """run(prompt, ui=None) -> ExecutionResult over fresh output/temp folders, and its Environment."""
    env = Environment(
        output_dir=output_root / "output",
        temp_dir=output_root / "temp",
        input_dir=input_dir,
        models=store,
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


@pytest.fixture
def runner(registry, models_dir, tmp_path, model_store):
    reg, input_dir = registry
    return make_runner(reg, models_dir, tmp_path, input_dir, model_store)


def _scaled(value: int, factor: float, minimum: int = 0) -> int:
    """A pixel size scaled down, on the 8-pixel grid, at least `minimum`."""
    return max(minimum, int(value * factor) // 8 * 8)


def shrink(prompt: dict) -> dict:
    """The same workflow at TEST_SIZE pixels (tiny UNets make any step count cheap); areas scale along."""
    small = copy.deepcopy(prompt)
    fx = fy = 1.0
    for node in small.values():
        if node["class_type"] in ("EmptyLatentImage", "EmptySD3LatentImage"):
            fx, fy = TEST_SIZE / node["inputs"]["width"], TEST_SIZE / node["inputs"]["height"]
            node["inputs"].update(width=TEST_SIZE, height=TEST_SIZE)
    for node in small.values():
        if node["class_type"] == "ConditioningSetArea":
            i = node["inputs"]
            i.update(
                width=_scaled(i["width"], fx, 64),
                height=_scaled(i["height"], fy, 64),
                x=_scaled(i["x"], fx),
                y=_scaled(i["y"], fy),
            )
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
        "hires_fix_sd15",
        "inpaint_sd15",
        "outpaint_sd15",
        "area_composition_sd15",
        "txt2img_flux_dev",
        "txt2img_flux_schnell",
        "flux_kontext_edit",
        "inpaint_flux_fill",
        "txt2img_sd35",
        "controlnet_canny_sd15",
        "hires_fix_upscale_model_sd15",
        "unclip_image_variation_sd21",
        "sdxl_custom_sampler",
    } <= names
    for path in API_FILES:
        prompt = load_api(path)
        assert all("class_type" in node and "inputs" in node for node in prompt.values()), path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in API_FILES if p != COMPARE], ids=lambda p: p.stem)
def test_workflow_runs_headless_on_tiny_checkpoints(runner, path, monkeypatch):
    # two_sampler_compare runs once, in the compare_run fixture, with these same checks and more.
    run, env = runner
    # Kontext's preferred sizes are about a megapixel: the test scales its reference to the test size.
    monkeypatch.setattr(flux_kontext, "KONTEXT_RESOLUTIONS", ((TEST_SIZE, TEST_SIZE),))
    result = run(shrink(load_api(path)))
    pngs = saved_files(env, result, ".png")
    assert pngs, "every shipped workflow saves at least one image"
    sizes = {PILImage.open(png).size for png in pngs}
    # Hires fix upscales its latent by 1.5 and outpaint pads the picture: other sizes are expected there.
    expected = {
        "hires_fix_sd15": (96, 96),
        "hires_fix_upscale_model_sd15": (96, 96),
        "outpaint_sd15": (TEST_SIZE + 128, TEST_SIZE),
    }
    assert sizes == {expected.get(path.stem, (TEST_SIZE, TEST_SIZE))}


def _video_frames(path: Path) -> tuple[int, object, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame for frame in container.decode(stream)]
        return len(frames), stream.average_rate, (frames[0].width, frames[0].height)


@dataclass
class CompareRun:
    """The compare workflow run once, headless, as the web client would queue it (UI JSON embedded)."""

    prompt: dict
    ui: dict
    result: Any
    env: Environment
    registry: Any
    models_dir: Path

    def files(self, suffix: str) -> list[Path]:
        """Saved output files with this suffix, sorted by path."""
        return saved_files(self.env, self.result, suffix)


@pytest.fixture(scope="module")
def compare_run(registry, models_dir, tmp_path_factory) -> CompareRun:
    from engine.devices import DevicePolicy
    from engine.model_store import ModelStore

    reg, input_dir = registry
    store = ModelStore(DevicePolicy.from_env(device="cpu"))
    run, env = make_runner(reg, models_dir, tmp_path_factory.mktemp("compare"), input_dir, store)
    prompt = shrink(load_api(COMPARE))
    ui = load_api(WORKFLOWS / "ui" / COMPARE.name)
    return CompareRun(prompt, ui, run(prompt, ui), env, reg, models_dir)


@pytest.mark.slow
def test_two_sampler_compare_yields_two_pngs_and_two_30_frame_videos(compare_run):
    pngs, videos = compare_run.files(".png"), compare_run.files(".mp4")
    assert [p.name for p in pngs] == ["dpmpp_2m_karras_00001_.png", "euler_normal_00001_.png"]
    assert [p.name for p in videos] == ["dpmpp_2m_karras_steps_00001_.mp4", "euler_normal_steps_00001_.mp4"]
    for png in pngs:
        assert PILImage.open(png).size == (TEST_SIZE, TEST_SIZE)
    for video in videos:
        count, rate, size = _video_frames(video)
        assert (count, rate, size) == (30, 1, (TEST_SIZE, TEST_SIZE))
    ui = compare_run.result.ui_outputs
    for node_id in ("12", "14", "22", "24"):
        assert ui[node_id]["images"][0]["subfolder"] == "compare"
    assert ui["14"]["animated"] == [True] and ui["24"]["animated"] == [True]
    # The two samplers really differ: same seed, different final images.
    first, second = (PILImage.open(p).tobytes() for p in pngs)
    assert first != second


@pytest.mark.slow
def test_two_sampler_compare_outputs_carry_the_workflow_back(compare_run):
    from engine.formats.workflow import load_workflow

    for path in compare_run.files(".png") + compare_run.files(".mp4"):
        embedded = read_embedded_workflow(path)
        assert embedded.prompt == compare_run.prompt and embedded.workflow == compare_run.ui, path.name
        loaded = load_workflow(path)
        assert loaded.prompt == compare_run.prompt and loaded.ui == compare_run.ui, path.name


@pytest.mark.slow
def test_cli_validates_and_reruns_a_png_diffgraph_wrote(compare_run, tmp_path, monkeypatch, capsys):
    from diffgraph.cli import main

    monkeypatch.chdir(tmp_path)
    png, video = compare_run.files(".png")[0], compare_run.files(".mp4")[0]
    folders = ["--models-dir", str(compare_run.models_dir), "--input-dir", str(compare_run.env.input_dir)]
    for path in (png, video):
        assert main(["validate", str(path), "--json", *folders]) == 0, capsys.readouterr().err
        assert json.loads(capsys.readouterr().out)["ok"] is True
    capsys.readouterr()
    args = [
        "run",
        str(png),
        "--json",
        "--out",
        str(tmp_path / "again"),
        "--set",
        "10.steps=2",
        "--set",
        "20.steps=2",
    ]
    assert main([*args, *folders]) == 0, capsys.readouterr().err
    written = sorted(p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*.*"))
    assert written == [
        "compare/dpmpp_2m_karras_00001_.png",
        "compare/dpmpp_2m_karras_steps_00001_.mp4",
        "compare/euler_normal_00001_.png",
        "compare/euler_normal_steps_00001_.mp4",
    ]
    assert _video_frames(tmp_path / "again" / written[1])[0] == 2


@pytest.mark.slow
def test_server_reads_the_workflow_from_a_png_and_video_diffgraph_wrote(compare_run, tmp_path):
    from server.app import create_app
    from server.settings import ServerSettings
    from tests.server.conftest import LiveServer

    settings = ServerSettings(user_dir=tmp_path / "user", serve_frontend=False)
    live = LiveServer(create_app(compare_run.registry, compare_run.env, settings=settings)).start()
    try:
        with live.client() as http:
            for path in compare_run.files(".png") + compare_run.files(".mp4"):
                files = {"image": (path.name, path.read_bytes(), "application/octet-stream")}
                found = http.post("/api/workflow/from_media", files=files)
                assert found.status_code == 200, found.text
                assert found.json() == {"prompt": compare_run.prompt, "workflow": compare_run.ui}, path.name
            for case in sorted(CASES.glob("*/image.png")):
                files = {"image": ("comfyui.png", case.read_bytes(), "image/png")}
                found = http.post("/api/workflow/from_media", files=files).json()
                assert found == {"prompt": load_api(case.parent / "workflow_api.json"), "workflow": None}
    finally:
        live.stop()


# Reference cases whose graphs need node families not built yet; any other missing node fails the tests.
NOT_YET: dict[str, str] = {}
CASE_NAMES = sorted(p.name for p in CASES.iterdir()) if CASES.is_dir() else []


def _case_setup(case: Path, models_dir: Path, tmp_path: Path):
    """A registry whose input folder holds the case's input files; skips cases waiting for later nodes."""
    from nodes.pack import build_registry

    input_dir = tmp_path / "input"
    input_dir.mkdir()
    if (case / "input").is_dir():
        for item in (case / "input").iterdir():
            shutil.copyfile(item, input_dir / item.name)
    reg = build_registry(ModelPaths(models_dir), input_dir)
    prompt = load_api(case / "workflow_api.json")
    missing = sorted({n["class_type"] for n in prompt.values()} - set(reg.object_info()))
    if missing and all(name in NOT_YET for name in missing):
        pytest.skip(f"{case.name} needs {', '.join(missing)}: {NOT_YET[missing[0]]}")
    assert not missing, f"{case.name} uses node types diffgraph lacks: {missing}"
    return reg, input_dir, prompt


@needs_reference
@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_reference_prompts_validate_to_exactly_what_comfyui_embedded(case_name, models_dir, tmp_path):
    from engine.formats.media_metadata import read_png_text

    reg, input_dir, prompt = _case_setup(CASES / case_name, models_dir, tmp_path)
    env = Environment(tmp_path, tmp_path, input_dir, model_paths=ModelPaths(models_dir))
    checked = validate_prompt(prompt, reg, env=env)
    assert checked.ok, checked.node_errors
    # SaveImage embeds json.dumps of the prompt: the validated prompt must serialise as ComfyUI's did,
    # apart from the IS_CHANGED records ComfyUI adds to the nodes it asked (not part of the workflow).
    embedded = json.loads(read_png_text((CASES / case_name / "image.png").read_bytes())["prompt"])
    for node in embedded.values():
        node.pop("is_changed", None)
    assert json.dumps(checked.prompt) == json.dumps(embedded)


@needs_reference
@pytest.mark.parametrize("case_name", CASE_NAMES)
def test_cli_validates_a_png_comfyui_wrote(case_name, models_dir, tmp_path, monkeypatch, capsys):
    from diffgraph.cli import main

    _, input_dir, _ = _case_setup(CASES / case_name, models_dir, tmp_path)
    monkeypatch.chdir(tmp_path)
    args = [
        "validate",
        str(CASES / case_name / "image.png"),
        "--models-dir",
        str(models_dir),
        "--input-dir",
        str(input_dir),
    ]
    assert main(args) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("ok: "), case_name


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
    from engine.formats.ui_workflow import api_to_ui, ui_to_api

    reg, _ = registry
    info = reg.object_info()
    prompt = load_api(path)
    if os.environ.get("DIFFGRAPH_REGEN_UI"):
        ui_path(path).parent.mkdir(exist_ok=True)
        ui_path(path).write_text(json.dumps(api_to_ui(prompt, info), indent=2) + "\n", encoding="utf-8")
    assert ui_path(path).is_file(), f"missing {ui_path(path)}; see workflows/README.md to regenerate"
    assert ui_to_api(json.loads(ui_path(path).read_text(encoding="utf-8")), info) == prompt


@pytest.mark.parametrize("path", sorted((WORKFLOWS / "ui").glob("*.json")), ids=lambda p: p.stem)
def test_ready_ui_workflows_open_with_the_whole_graph_in_view(path):
    from engine.formats.ui_export import initial_view

    ui = json.loads(path.read_text(encoding="utf-8"))
    assert ui["extra"]["ds"] == initial_view(ui["nodes"]), (
        "saved view stale: recompute it with initial_view()"
    )

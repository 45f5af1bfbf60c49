"""SaveImage, PreviewImage and LoadImage: file names, counters, PNG metadata, masks and caching."""

from __future__ import annotations

import json
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from engine import Environment, Input, Node, NodeInputError, NodeInputs, NodeOutputs, Output, Registry
from engine.executor import Executor
from engine.formats.media_metadata import read_embedded_workflow, read_png_text
from engine.validation import validate_prompt
from nodes.defs.image import NODES
from nodes.media.save_paths import expand_prefix_tokens, next_counter, save_target
from nodes.types import Image
from tests.shared_reference import CASES, needs_reference

DATA = Path(__file__).parent / "data"


class SolidImages(Node):
    """Test source: a batch of solid-colour images."""

    class_type = "SolidImages"

    class Inputs(NodeInputs):
        value: float = Input(0.5, description="grey level")
        batch: int = Input(1, description="batch size")
        width: int = Input(16, description="width")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE")

    def run(self, ctx, inputs):
        return self.Outputs(IMAGE=Image(pixels=torch.full((inputs.batch, 8, inputs.width, 3), inputs.value)))


@pytest.fixture
def env(tmp_path):
    for name in ("out", "temp", "in"):
        (tmp_path / name).mkdir()
    return Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")


@pytest.fixture
def registry(env):
    from nodes.pack import choice_provider

    registry = Registry(choices=choice_provider(None, env.input_dir))
    for cls in [SolidImages, *NODES]:
        registry.register(cls)
    return registry


def run(registry, env, prompt, executor=None, extra_data=None):
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors
    executor = executor or Executor(registry, env)
    result = executor.execute(
        checked.prompt, prompt_id="p", outputs=checked.outputs, extra_data=extra_data or {}
    )
    assert result.status == "success", result.error and result.error.data()
    return result


def save_prompt(prefix="ComfyUI", value=0.5, batch=1, width=16):
    return {
        "1": {"class_type": "SolidImages", "inputs": {"value": value, "batch": batch, "width": width}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def test_save_image_writes_comfyui_names_and_ui_entries(registry, env):
    result = run(registry, env, save_prompt(batch=2))
    images = result.ui_outputs["2"]["images"]
    assert images == [
        {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"},
        {"filename": "ComfyUI_00002_.png", "subfolder": "", "type": "output"},
    ]
    pixels = np.asarray(PILImage.open(env.output_dir / "ComfyUI_00001_.png"))
    assert pixels.shape == (8, 16, 3) and (pixels == 127).all()  # 255 * 0.5 truncated, as ComfyUI


def test_save_image_embeds_prompt_and_extra_pnginfo_as_comfyui(registry, env):
    workflow = {"nodes": [{"id": 1, "type": "SaveImage"}], "links": [], "note": "café"}
    run(registry, env, save_prompt(), extra_data={"extra_pnginfo": {"workflow": workflow, "other": [1, 2]}})
    data = (env.output_dir / "ComfyUI_00001_.png").read_bytes()
    texts = read_png_text(data)
    assert list(texts) == ["prompt", "workflow", "other"]
    assert texts["workflow"] == json.dumps(workflow) and texts["workflow"].isascii()
    assert b"tEXtprompt\x00" in data
    embedded = read_embedded_workflow(env.output_dir / "ComfyUI_00001_.png")
    assert embedded.workflow == workflow
    assert embedded.prompt["2"]["class_type"] == "SaveImage"


def test_save_image_counter_continues_after_existing_files_and_never_overwrites(registry, env):
    (env.output_dir / "ComfyUI_00007_.webm").write_bytes(b"video")
    (env.output_dir / "ComfyUI_notes.txt").write_bytes(b"")
    executor = Executor(registry, env)
    first = run(registry, env, save_prompt(value=0.1), executor).ui_outputs["2"]["images"][0]["filename"]
    second = run(registry, env, save_prompt(value=0.2), executor).ui_outputs["2"]["images"][0]["filename"]
    assert (first, second) == ("ComfyUI_00008_.png", "ComfyUI_00009_.png")
    assert (env.output_dir / "ComfyUI_00007_.webm").read_bytes() == b"video"


def test_save_target_skips_a_file_that_appeared_after_the_scan(env):
    target = save_target(env.output_dir, "race", 8, 8)
    (env.output_dir / "race_00001_.png").write_bytes(b"someone else's")
    name = target.write(".png", 0, lambda handle: handle.write(b"mine"))
    assert name == "race_00002_.png"
    assert (env.output_dir / "race_00001_.png").read_bytes() == b"someone else's"


def test_save_image_subfolders_and_tokens_stay_inside_output(registry, env):
    result = run(
        registry, env, save_prompt(prefix="runs/%width%x%height%/img_%batch_num%", batch=2, width=24)
    )
    images = result.ui_outputs["2"]["images"]
    assert [i["subfolder"] for i in images] == ["runs/24x8", "runs/24x8"]
    assert [i["filename"] for i in images] == ["img_0_00001_.png", "img_1_00002_.png"]
    assert (env.output_dir / "runs" / "24x8" / "img_1_00002_.png").is_file()


@pytest.mark.parametrize("prefix", ["../escape", "/tmp/abs", "a/../../escape", "..\\win"])
def test_save_target_refuses_prefixes_leaving_the_output_dir(env, prefix):
    with pytest.raises(
        NodeInputError, match="filename_prefix .* would save outside the output folder"
    ) as info:
        save_target(env.output_dir, prefix, 8, 8)
    assert info.value.input_name == "filename_prefix"


@pytest.mark.parametrize("prefix", ["../x", "/etc/x", "%date:yyyy%/../../x"])
def test_save_image_hostile_prefix_fails_validation_naming_node_and_input(registry, env, prefix):
    checked = validate_prompt(save_prompt(prefix=prefix), registry, env=env)
    assert not checked.ok
    (error,) = checked.node_errors["2"]["errors"]
    assert checked.node_errors["2"]["class_type"] == "SaveImage"
    assert error["type"] == "custom_validation_failed"
    assert "filename_prefix" in error["details"] and "outside the output folder" in error["details"]
    assert list(env.output_dir.parent.rglob("x")) == []


def test_expand_prefix_tokens_fills_date_and_size():
    text = expand_prefix_tokens(
        "%year%-%month%-%day%_%hour%%minute%%second%_%width%", 64, 32, datetime(2024, 3, 5, 7, 8, 9)
    )
    assert text == "2024-03-05_070809_64"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("%date:yyyy-MM-dd%", "2024-03-05"),
        ("%date:yyyy/MM/dd%/img", "2024/03/05/img"),
        ("%date:yy-M-d h:m:s%", "24-3-5 17:8:9"),
        # The client splits tokens on dots: three parts are a date formatted up to the first dot only,
        # two parts name a node and an input (no node "date:yyyy", so the token stays).
        ("%date:yy.M.d%", "24"),
        ("%date:yyyy.MM%", "%date:yyyy.MM%"),
        ("%date:hhmmss%_%width%x%height%", "170809_64x32"),
        ("%date:yyy%", "yyy"),
    ],
)
def test_expand_prefix_tokens_formats_client_date_tokens(pattern, expected):
    assert expand_prefix_tokens(pattern, 64, 32, datetime(2024, 3, 5, 17, 8, 9)) == expected


def test_expand_prefix_tokens_reads_node_inputs_from_the_prompt():
    prompt = {
        "3": {"class_type": "KSampler", "inputs": {"seed": 42, "model": ["4", 0]}},
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd/v1.safetensors"},
            "_meta": {"title": "Base Model"},
        },
    }
    now = datetime(2024, 1, 1)
    expand = lambda text: expand_prefix_tokens(text, 8, 8, now, prompt)  # noqa: E731
    assert expand("s%KSampler.seed%") == "s42"
    assert expand("%Base Model.ckpt_name%") == "sd_v1.safetensors"  # separators never make folders
    # What the web client leaves alone stays: unknown nodes or inputs, and linked inputs.
    assert (
        expand("%Nope.seed%_%KSampler.model%_%KSampler.cfg%") == "%Nope.seed%_%KSampler.model%_%KSampler.cfg%"
    )


def test_save_image_prefix_tokens_use_the_running_prompt(registry, env):
    result = run(registry, env, save_prompt(prefix="%date:yyyy%/v%SolidImages.value%_%width%", width=24))
    (entry,) = result.ui_outputs["2"]["images"]
    assert entry["subfolder"] == str(datetime.now().year)
    assert entry["filename"] == "v0.5_24_00001_.png"


def test_save_target_counters_never_collide_across_threads(env):
    def writer(tag):
        names = []
        for index in range(15):
            target = save_target(env.output_dir, "busy", 8, 8)
            names.append(target.write(".png", 0, lambda h, i=index: h.write(f"{tag}-{i}".encode())))
        return tag, names

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(writer, "abcd"))
    every = [name for _, names in results for name in names]
    assert len(every) == len(set(every)) == 60
    for tag, names in results:
        for index, name in enumerate(names):
            assert (env.output_dir / name).read_bytes() == f"{tag}-{index}".encode()


def test_next_counter_ignores_other_prefixes(tmp_path):
    (tmp_path / "ComfyUI_00003_.png").touch()
    (tmp_path / "ComfyUIx_00009_.png").touch()
    (tmp_path / "Other_00042_.png").touch()
    assert next_counter(tmp_path, "ComfyUI") == 4
    assert next_counter(tmp_path / "missing", "ComfyUI") == 1


def test_save_image_identical_resubmission_runs_nothing_and_replays_ui(registry, env):
    executor = Executor(registry, env)
    first = run(registry, env, save_prompt(), executor)
    again = run(registry, env, save_prompt(), executor)
    assert again.executed == [] and "2" in again.cached
    assert again.ui_outputs["2"] == first.ui_outputs["2"]
    assert sorted(p.name for p in env.output_dir.iterdir()) == ["ComfyUI_00001_.png"]


def test_preview_image_writes_to_temp_with_temp_type(registry, env):
    prompt = {
        "1": {"class_type": "SolidImages", "inputs": {}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    (entry,) = run(registry, env, prompt).ui_outputs["2"]["images"]
    assert entry["type"] == "temp" and entry["subfolder"] == ""
    assert entry["filename"].startswith("ComfyUI_temp_") and entry["filename"].endswith("_00001_.png")
    assert (env.temp_dir / entry["filename"]).is_file()
    assert list(env.output_dir.iterdir()) == []


def _load_prompt(name, node="LoadImage"):
    return {
        "1": {"class_type": node, "inputs": {"image": name}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def test_load_image_mask_is_inverted_alpha(registry, env):
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, :3, 3] = 255  # left half opaque
    PILImage.fromarray(rgba, "RGBA").save(env.input_dir / "cut.png")
    result = run(registry, env, _load_prompt("cut.png"))
    outputs = result.node_outputs["1"]
    assert outputs.IMAGE.pixels.shape == (1, 4, 6, 3)
    assert torch.equal(outputs.IMAGE.pixels[0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    mask = outputs.MASK.mask
    assert mask.shape == (1, 4, 6)
    assert (mask[:, :, :3] == 0).all() and (mask[:, :, 3:] == 1).all()


def test_load_image_without_alpha_gives_zero_mask(registry, env):
    PILImage.new("RGB", (5, 3), (0, 255, 0)).save(env.input_dir / "plain.jpg")
    outputs = run(registry, env, _load_prompt("plain.jpg")).node_outputs["1"]
    assert outputs.MASK.mask.shape == (1, 3, 5) and not outputs.MASK.mask.any()


def test_load_image_reruns_when_the_file_changes(registry, env):
    path = env.input_dir / "edit.png"
    PILImage.new("RGB", (4, 4), (10, 10, 10)).save(path)
    executor = Executor(registry, env)
    run(registry, env, _load_prompt("edit.png"), executor)
    assert run(registry, env, _load_prompt("edit.png"), executor).executed == []
    PILImage.new("RGB", (4, 4), (200, 10, 10)).save(path)
    rerun = run(registry, env, _load_prompt("edit.png"), executor)
    assert "1" in rerun.executed
    assert rerun.node_outputs["1"].IMAGE.pixels[0, 0, 0, 0] == pytest.approx(200 / 255)


def test_load_image_unknown_file_fails_validation(registry, env):
    checked = validate_prompt(_load_prompt("nope.png"), registry, env=env)
    assert not checked.ok
    assert "1" in checked.node_errors


def test_load_image_reads_a_comfyui_png_and_its_prompt(registry, env):
    shutil.copy(DATA / "comfyui_txt2img.png", env.input_dir / "comfy.png")
    outputs = run(registry, env, _load_prompt("comfy.png")).node_outputs["1"]
    assert outputs.IMAGE.pixels.shape == (1, 256, 256, 3)
    embedded = read_embedded_workflow(env.input_dir / "comfy.png")
    assert embedded.workflow is None
    assert embedded.prompt["3"]["class_type"] == "KSampler"
    assert embedded.prompt["9"]["inputs"]["filename_prefix"] == "txt2img_sd15"


@needs_reference
def test_read_embedded_workflow_matches_every_comfyui_reference_case():
    for case in sorted(CASES.iterdir()):
        expected = json.loads((case / "workflow_api.json").read_text())
        assert read_embedded_workflow(case / "image.png").prompt == expected, case.name


def test_saved_png_loads_back_as_a_workflow(registry, env):
    from engine.formats.workflow import load_workflow

    ui = {"nodes": [{"id": 2, "type": "SaveImage"}], "links": [], "version": 0.4}
    prompt = save_prompt(prefix="back")
    run(registry, env, prompt, extra_data={"extra_pnginfo": {"workflow": ui}})
    loaded = load_workflow(env.output_dir / "back_00001_.png")
    assert loaded.prompt == prompt and loaded.ui == ui
    comfy = load_workflow(DATA / "comfyui_txt2img.png")
    assert comfy.prompt["9"]["class_type"] == "SaveImage" and comfy.ui is None


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(type, whole chunk bytes incl. length and CRC) for every chunk of a PNG."""
    chunks, offset = [], 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        chunks.append((data[offset + 4 : offset + 8], data[offset : offset + 12 + length]))
        offset += 12 + length
    return chunks


@needs_reference
def test_png_text_chunks_are_byte_identical_to_comfyui(tmp_path):
    from engine.formats.media_metadata import png_info

    for case in sorted(CASES.iterdir()):
        data = (case / "image.png").read_bytes()
        reference = png_chunks(data)
        # The prompt exactly as ComfyUI handed it to SaveImage (with any `is_changed` records it kept).
        prompt = json.loads(read_png_text(data)["prompt"])
        PILImage.new("RGB", (8, 8)).save(
            tmp_path / "ours.png", pnginfo=png_info(prompt, {}), compress_level=4
        )
        ours = png_chunks((tmp_path / "ours.png").read_bytes())
        assert [kind for kind, _ in ours if kind != b"IDAT"] == [
            kind for kind, _ in reference if kind != b"IDAT"
        ]
        assert [c for k, c in ours if k == b"tEXt"] == [c for k, c in reference if k == b"tEXt"], case.name


def test_save_image_writes_tEXt_chunks_before_the_pixels_even_for_unicode(registry, env):
    workflow = {"nodes": [], "links": [], "extra": {"title": "日本語 ✓"}}
    run(registry, env, save_prompt(), extra_data={"extra_pnginfo": {"workflow": workflow}})
    kinds = [kind for kind, _ in png_chunks((env.output_dir / "ComfyUI_00001_.png").read_bytes())]
    assert kinds[:3] == [b"IHDR", b"tEXt", b"tEXt"] and b"iTXt" not in kinds and b"zTXt" not in kinds
    assert kinds[3] == b"IDAT" and kinds[-1] == b"IEND"
    assert read_embedded_workflow(env.output_dir / "ComfyUI_00001_.png").workflow == workflow


def test_load_image_reads_subfolders_and_annotated_output_files(registry, env):
    (env.input_dir / "sub").mkdir()
    PILImage.new("RGB", (3, 2), (0, 0, 255)).save(env.input_dir / "sub" / "blue.png")
    PILImage.new("RGB", (2, 2), (255, 0, 0)).save(env.output_dir / "red.png")
    blue = run(registry, env, _load_prompt("sub/blue.png")).node_outputs["1"].IMAGE.pixels
    # What the web client's mask editor puts in the widget: a file outside the list, annotated.
    again = run(registry, env, _load_prompt("sub/blue.png [input]")).node_outputs["1"].IMAGE.pixels
    assert torch.equal(again, blue)
    red = run(registry, env, _load_prompt("red.png [output]")).node_outputs["1"].IMAGE.pixels
    assert blue.shape == (1, 2, 3, 3) and blue[0, 0, 0, 2] == 1.0
    assert red.shape == (1, 2, 2, 3) and red[0, 0, 0, 0] == 1.0


@pytest.mark.parametrize("name", ["../secret.png", "/etc/passwd", "sub/../../secret.png"])
def test_load_image_refuses_names_outside_the_input_folder(registry, env, name):
    PILImage.new("RGB", (2, 2)).save(env.input_dir.parent / "secret.png")
    checked = validate_prompt(_load_prompt(name), registry, env=env)
    assert not checked.ok
    assert "inside the input folder" in checked.node_errors["1"]["errors"][0]["details"]


def test_load_image_output_reads_a_result_named_as_the_client_sends_it(registry, env):
    env.output_dir.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (3, 2), (0, 0, 255)).save(env.output_dir / "result.png")
    outputs = run(registry, env, _load_prompt("result.png [output]", "LoadImageOutput")).node_outputs["1"]
    assert outputs.IMAGE.pixels.shape == (1, 2, 3, 3)
    assert torch.equal(outputs.IMAGE.pixels[0, 0, 0], torch.tensor([0.0, 0.0, 1.0]))


def test_load_image_output_refuses_a_missing_result_and_a_non_string(registry, env):
    for value in ("gone.png [output]", 3):
        checked = validate_prompt(_load_prompt(value, "LoadImageOutput"), registry, env=env)
        assert "1" in checked.node_errors, value


def test_load_image_output_lists_no_choices_the_client_fetches_them():
    from engine.schema import object_info
    from nodes.defs.image import LoadImageOutput

    kind, options = object_info(LoadImageOutput)["input"]["required"]["image"]
    assert kind == "COMBO"
    assert options["image_folder"] == "output" and options["image_upload"] is True
    assert options["remote"] == {
        "route": "/internal/files/output",
        "refresh_button": True,
        "control_after_refresh": "first",
    }

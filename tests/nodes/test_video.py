"""Video writing (MP4, WebM, WebP, GIF) with embedded workflows, and frames from per-step latents."""

from __future__ import annotations

import av
import pytest
import torch
from PIL import Image as PILImage

from engine import (
    Environment,
    Input,
    Node,
    NodeInputError,
    NodeInputs,
    NodeOutputs,
    Output,
    Registry,
    UserFacingError,
)
from engine.executor import Executor
from engine.formats.media_metadata import read_embedded_workflow
from engine.validation import validate_prompt
from nodes.defs import video as video_nodes
from nodes.defs.video import NODES, encode_video, require_encoder, video_bytes
from nodes.types import SD15_LATENT, Image, LatentSequence

PROMPT = {"1": {"class_type": "Frames", "inputs": {"count": 3}}}
EXTRA = {"workflow": {"nodes": [{"id": 1}], "links": [], "title": "naïve"}}


def gradient_frames(count: int, height: int = 32, width: int = 48) -> torch.Tensor:
    """Frames whose brightness rises with the index, so order is checkable after lossy coding."""
    levels = torch.linspace(0.05, 0.95, count).view(count, 1, 1, 1)
    return levels.expand(count, height, width, 3).clone()


def decoded_frames(path) -> tuple[list, object]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, stream.average_rate


@pytest.mark.parametrize("fmt", ["mp4", "webm", "gif"])
def test_video_bytes_decodes_to_every_frame_at_the_chosen_fps(tmp_path, fmt):
    path = tmp_path / f"clip.{fmt}"
    path.write_bytes(video_bytes(gradient_frames(12), fmt, 1.0, 23, PROMPT, EXTRA))
    frames, rate = decoded_frames(path)
    assert len(frames) == 12 and rate == 1
    means = [float(f.mean()) for f in frames]
    assert means == sorted(means) and means[0] < 40 < 200 < means[-1]
    assert frames[0].shape == (32, 48, 3)


def test_video_bytes_webp_is_animated_with_frame_durations(tmp_path):
    path = tmp_path / "clip.webp"
    path.write_bytes(video_bytes(gradient_frames(5), "webp", 4.0, 23, PROMPT, EXTRA))
    with PILImage.open(path) as image:
        assert image.n_frames == 5 and image.info["loop"] == 0
        image.seek(4)
        image.load()
        assert image.info["duration"] == 250 and image.info["timestamp"] == 1000
        assert image.convert("RGB").getpixel((3, 3))[0] > 200


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "h264"), ("webm", "vp9"), ("gif", "gif")])
def test_video_bytes_uses_the_promised_codec_and_container(tmp_path, fmt, codec):
    path = tmp_path / f"clip.{fmt}"
    path.write_bytes(video_bytes(gradient_frames(3), fmt, 2.0, 23, PROMPT, EXTRA))
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
        assert fmt in container.format.name.split(",")


@pytest.mark.parametrize("fmt", ["mp4", "webm", "webp", "gif"])
def test_video_bytes_metadata_round_trips(fmt, tmp_path):
    from engine.formats.workflow import load_workflow

    data = video_bytes(gradient_frames(2), fmt, 8.0, 23, PROMPT, EXTRA)
    embedded = read_embedded_workflow(data)
    assert embedded.prompt == PROMPT and embedded.workflow == EXTRA["workflow"]
    (tmp_path / f"clip.{fmt}").write_bytes(data)
    loaded = load_workflow(tmp_path / f"clip.{fmt}")
    assert loaded.prompt == PROMPT and loaded.ui == EXTRA["workflow"]


def test_video_bytes_webp_uses_comfyui_exif_tags():
    data = video_bytes(gradient_frames(2), "webp", 8.0, 23, PROMPT, EXTRA)
    with PILImage.open(__import__("io").BytesIO(data)) as image:
        exif = image.getexif()
    assert exif[0x0110].startswith("prompt:{") and exif[0x010F].startswith("workflow:{")


def test_encode_video_fractional_fps_is_kept(tmp_path):
    path = tmp_path / "ntsc.mp4"
    frames = [PILImage.new("RGB", (16, 16), (i * 20, 0, 0)) for i in range(6)]
    path.write_bytes(encode_video(frames, "mp4", 29.97))
    _, rate = decoded_frames(path)
    assert float(rate) == pytest.approx(29.97, abs=0.01)


def test_encode_video_mp4_odd_size_is_a_clear_error():
    with pytest.raises(NodeInputError, match="even width and height"):
        encode_video([PILImage.new("RGB", (15, 16))], "mp4", 8.0)


def test_require_encoder_missing_is_an_error_not_a_fallback():
    with pytest.raises(UserFacingError, match="no libnotacodec encoder") as info:
        require_encoder("libnotacodec")
    assert info.value.code == "encoder_missing"


@pytest.mark.parametrize("name", ["libx264", "libvpx-vp9", "libwebp_anim", "gif"])
def test_pyav_wheel_has_the_encoders_we_use(name):
    require_encoder(name)


# ------------------------------------------------------------------------------------ through the executor


class Frames(Node):
    """Test source: a short gradient clip."""

    class_type = "Frames"

    class Inputs(NodeInputs):
        count: int = Input(3, description="frames")

    class Outputs(NodeOutputs):
        IMAGE: Image = Output(name="IMAGE")

    def run(self, ctx, inputs):
        return self.Outputs(IMAGE=Image(pixels=gradient_frames(inputs.count, 16, 16)))


class Steps(Node):
    """Test source: a LATENT_SEQUENCE of S steps for a batch of 2."""

    class_type = "Steps"

    class Inputs(NodeInputs):
        count: int = Input(4, description="steps")

    class Outputs(NodeOutputs):
        LATENT_SEQUENCE: LatentSequence = Output(name="LATENT_SEQUENCE")

    def run(self, ctx, inputs):
        steps = torch.randn(inputs.count, 2, 4, 2, 3, generator=torch.Generator().manual_seed(0))
        return self.Outputs(LATENT_SEQUENCE=LatentSequence(steps=steps, latent_format=SD15_LATENT))


@pytest.fixture
def env(tmp_path):
    return Environment(output_dir=tmp_path / "out", temp_dir=tmp_path / "temp", input_dir=tmp_path / "in")


@pytest.fixture
def registry():
    registry = Registry()
    for cls in [Frames, Steps, *NODES]:
        registry.register(cls)
    return registry


def execute(registry, env, prompt, executor=None):
    checked = validate_prompt(prompt, registry, env=env)
    assert checked.ok, checked.node_errors
    result = (executor or Executor(registry, env)).execute(
        checked.prompt, prompt_id="p", outputs=checked.outputs, extra_data={"extra_pnginfo": EXTRA}
    )
    assert result.status == "success", result.error and result.error.data()
    return result


def test_save_video_frames_writes_counted_file_with_animated_ui(registry, env):
    prompt = {
        "1": {"class_type": "Frames", "inputs": {"count": 3}},
        "2": {"class_type": "SaveVideoFrames", "inputs": {"images": ["1", 0], "fps": 2.0, "format": "webm"}},
    }
    ui = execute(registry, env, prompt).ui_outputs["2"]
    assert ui == {
        "images": [{"filename": "ComfyUI_00001_.webm", "subfolder": "video", "type": "output"}],
        "animated": [True],
    }
    path = env.output_dir / "video" / "ComfyUI_00001_.webm"
    assert read_embedded_workflow(path).prompt == prompt
    prompt["2"]["inputs"]["format"] = "gif"
    again = execute(registry, env, prompt).ui_outputs["2"]["images"][0]["filename"]
    assert again == "ComfyUI_00002_.gif"


@pytest.mark.parametrize("prefix", ["../up", "/abs/clip"])
def test_save_video_frames_hostile_prefix_fails_validation(registry, env, prefix):
    prompt = {
        "1": {"class_type": "Frames", "inputs": {"count": 2}},
        "2": {"class_type": "SaveVideoFrames", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }
    checked = validate_prompt(prompt, registry, env=env)
    assert not checked.ok
    (error,) = checked.node_errors["2"]["errors"]
    assert "filename_prefix" in error["details"] and "outside the output folder" in error["details"]


def test_latent_steps_to_images_preview_projects_each_step(registry, env):
    prompt = {
        "1": {"class_type": "Steps", "inputs": {"count": 4}},
        "2": {"class_type": "LatentStepsToImages", "inputs": {"latent_steps": ["1", 0], "method": "preview"}},
        "3": {"class_type": "SaveVideoFrames", "inputs": {"images": ["2", 0], "fps": 1.0}},
    }
    result = execute(registry, env, prompt)
    pixels = result.node_outputs["2"].IMAGE.pixels
    assert pixels.shape == (4, 16, 24, 3)
    assert float(pixels.min()) >= 0 and float(pixels.max()) <= 1
    frames, rate = decoded_frames(env.output_dir / "video" / "ComfyUI_00001_.mp4")
    assert len(frames) == 4 and rate == 1


def test_latent_steps_to_images_vae_decodes_in_batches(registry, env, monkeypatch):
    calls = []

    def fake_decode(ctx, vae, latents):
        calls.append(latents.shape[0])
        return latents.mean(dim=1, keepdim=True).movedim(1, -1).expand(-1, -1, -1, 3).repeat_interleave(8, 1)

    monkeypatch.setattr(video_nodes, "decode_latents", fake_decode)
    node = video_nodes.LatentStepsToImages()
    steps = torch.randn(5, 1, 4, 2, 2)
    inputs = node.Inputs(
        latent_steps=LatentSequence(steps=steps), vae=object.__new__(video_nodes.VaeHandle), decode_batch=2
    )

    class Ctx:
        def progress(self, value, maximum):
            pass

    out = node.run(Ctx(), inputs)
    assert calls == [2, 2, 1] and out.IMAGE.pixels.shape[0] == 5


def test_latent_steps_to_images_vae_method_without_vae_names_the_input(registry, env):
    node = video_nodes.LatentStepsToImages()
    inputs = node.Inputs(latent_steps=LatentSequence(steps=torch.zeros(2, 1, 4, 2, 2)))
    with pytest.raises(NodeInputError) as info:
        node.run(None, inputs)
    assert info.value.input_name == "vae"

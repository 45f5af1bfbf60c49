"""Upscale-model nodes: published ESRGAN layouts, spandrel's forward per tile, OOM retry, pickle opt-in, cache."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import load_file

from diffgraph.api import Session
from nodes.diffusion import upscale as upscale_mod
from nodes.diffusion.checkpoint_io import PICKLE_ENV, PickleRefusedError
from nodes.diffusion.make_guidance import esrgan_layout, make_esrgan
from nodes.diffusion.upscale import load_upscale_model, upscale_pixels
from nodes.ops.tiles import tile_count

CPU = torch.device("cpu")

# Facts from the headers of published files (names and shapes of a few tensors each).
# RealESRGAN_x4plus.pth (BasicSR layout, under "params_ema"): 23 blocks, 64 features, growth 32.
REALESRGAN_X4PLUS = {
    "conv_first.weight": (64, 3, 3, 3),
    "body.0.rdb1.conv1.weight": (32, 64, 3, 3),
    "body.0.rdb1.conv5.weight": (64, 192, 3, 3),
    "body.22.rdb3.conv5.bias": (64,),
    "conv_body.weight": (64, 64, 3, 3),
    "conv_up1.weight": (64, 64, 3, 3),
    "conv_up2.weight": (64, 64, 3, 3),
    "conv_hr.weight": (64, 64, 3, 3),
    "conv_last.weight": (3, 64, 3, 3),
}
# 4x-UltraSharp.pth / original ESRGAN 4x (old layout): the same network under `model.N` names.
ESRGAN_OLD_4X = {
    "model.0.weight": (64, 3, 3, 3),
    "model.1.sub.0.RDB1.conv1.0.weight": (32, 64, 3, 3),
    "model.1.sub.22.RDB3.conv5.0.weight": (64, 192, 3, 3),
    "model.1.sub.23.weight": (64, 64, 3, 3),
    "model.3.weight": (64, 64, 3, 3),
    "model.6.weight": (64, 64, 3, 3),
    "model.8.weight": (64, 64, 3, 3),
    "model.10.weight": (3, 64, 3, 3),
}


@pytest.mark.parametrize(("style", "facts"), [("new", REALESRGAN_X4PLUS), ("old", ESRGAN_OLD_4X)])
def test_esrgan_layout_full_size_has_the_published_names_and_shapes(style, facts):
    layout = esrgan_layout(style, features=64, blocks=23, growth=32, scale=4, dtype=torch.float16)
    assert len(layout) == 702  # 2 + 23 blocks * 3 dense blocks * 5 convs * 2 + 6 convs * 2
    for key, shape in facts.items():
        assert tuple(layout[key][0]) == shape, key


@pytest.mark.parametrize(("style", "scale"), [("old", 4), ("new", 4), ("old", 2), ("new", 2)])
def test_upscale_loader_detects_esrgan_in_both_layouts(tmp_path: Path, style: str, scale: int):
    path = make_esrgan(tmp_path / f"{style}.safetensors", style, "tiny", 0, scale)
    net = load_upscale_model(path)
    assert net.descriptor.architecture.name == "ESRGAN"
    assert net.descriptor.scale == scale


@pytest.fixture(scope="module")
def esrgan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2x ESRGAN in the old layout."""
    return make_esrgan(tmp_path_factory.mktemp("esrgan") / "tiny-esrgan.safetensors", "old", "tiny", 3, 2)


def test_upscale_small_image_equals_spandrel_forward(esrgan: Path):
    net = load_upscale_model(esrgan)
    pixels = torch.rand(2, 20, 14, 3, generator=torch.Generator().manual_seed(0))
    out = upscale_pixels(net, pixels, CPU, lambda done, total: None)
    assert out.shape == (2, 40, 28, 3)
    for b in range(2):
        expected = net.descriptor(pixels[b : b + 1].movedim(-1, 1)).movedim(1, -1)
        assert torch.equal(out[b : b + 1], expected)


def _reference_blend(descriptor, chw: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Tiles through spandrel's forward, blended with linear edge ramps, written independently here."""
    scale = descriptor.scale
    _, _, height, width = chw.shape

    def starts(size: int) -> list[int]:
        if size <= tile:
            return [0]
        return sorted({min(p, size - overlap) for p in range(0, size - overlap, tile - overlap)})

    acc = torch.zeros(1, 3, height * scale, width * scale)
    norm = torch.zeros_like(acc)
    f = overlap * scale
    for y, x in itertools.product(starts(height), starts(width)):
        piece = descriptor(chw[:, :, y : y + tile, x : x + tile])
        h, w = piece.shape[2:]
        ramp_y = torch.ones(h)
        ramp_x = torch.ones(w)
        for ramp, n in ((ramp_y, h), (ramp_x, w)):
            if f < n:
                edge = torch.arange(1, f + 1) / f
                ramp[:f] *= edge
                ramp[n - f :] *= edge.flip(0)
        weight = ramp_y[:, None] * ramp_x[None, :]
        acc[:, :, y * scale : y * scale + h, x * scale : x * scale + w] += piece * weight
        norm[:, :, y * scale : y * scale + h, x * scale : x * scale + w] += weight
    return acc / norm


def test_upscale_tiles_blend_spandrel_forward_on_each_tile(esrgan: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(upscale_mod, "TILE", 24)
    monkeypatch.setattr(upscale_mod, "OVERLAP", 6)
    net = load_upscale_model(esrgan)
    pixels = torch.rand(1, 50, 37, 3, generator=torch.Generator().manual_seed(1))
    calls: list[tuple[int, int]] = []
    out = upscale_pixels(net, pixels, CPU, lambda done, total: calls.append((done, total)))
    expected = _reference_blend(net.descriptor, pixels.movedim(-1, 1), 24, 6).movedim(1, -1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    n = tile_count(50, 37, 24, 6)
    assert n == 6 and calls == [(i, n) for i in range(1, n + 1)]
    # Seams are blended away: the tiled result stays close to one pass over the whole image.
    whole = net.descriptor(pixels.movedim(-1, 1)).movedim(1, -1)
    assert (out - whole).abs().mean() < 0.01


def test_upscale_retries_with_half_tiles_on_out_of_memory(esrgan: Path, monkeypatch: pytest.MonkeyPatch):
    net = load_upscale_model(esrgan)
    forward = net.descriptor.__class__.__call__
    sizes: list[int] = []

    def tight_memory(self, image):
        sizes.append(max(image.shape[2:]))
        if max(image.shape[2:]) > 16:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(self, image)

    monkeypatch.setattr(upscale_mod, "TILE", 64)
    monkeypatch.setattr(upscale_mod, "OVERLAP", 4)
    monkeypatch.setattr(upscale_mod, "MIN_TILE", 16)
    monkeypatch.setattr(net.descriptor.__class__, "__call__", tight_memory)
    out = upscale_pixels(net, torch.rand(1, 40, 40, 3), CPU, lambda done, total: None)
    assert out.shape == (1, 80, 80, 3)
    assert sizes[0] == 40 and sizes[1] == 32 and max(sizes[2:]) == 16
    sizes.clear()
    monkeypatch.setattr(upscale_mod, "MIN_TILE", 32)
    with pytest.raises(torch.OutOfMemoryError):
        upscale_pixels(net, torch.rand(1, 40, 40, 3), CPU, lambda done, total: None)


def test_upscale_loader_refuses_pickle_without_opt_in_and_reads_it_with(
    esrgan: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    pth = tmp_path / "RealESRGAN_like.pth"
    torch.save({"params_ema": load_file(str(esrgan))}, pth)
    monkeypatch.delenv(PICKLE_ENV, raising=False)
    with pytest.raises(PickleRefusedError, match=PICKLE_ENV):
        load_upscale_model(pth)
    monkeypatch.setenv(PICKLE_ENV, "1")
    assert load_upscale_model(pth).descriptor.scale == 2


def test_upscale_loader_refuses_a_file_spandrel_does_not_know(tmp_path: Path):
    from safetensors.torch import save_file

    path = tmp_path / "unknown.safetensors"
    save_file({"foo.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(upscale_mod.UpscaleModelError, match="architecture"):
        load_upscale_model(path)


def _upscale_prompt(with_model: bool) -> dict:
    prompt: dict = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    if with_model:
        prompt["4"] = {
            "class_type": "UpscaleModelLoader",
            "inputs": {"model_name": "tiny-esrgan.safetensors"},
        }
        prompt["5"] = {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["4", 0], "image": ["2", 0]},
        }
        prompt["6"] = {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "up"}}
    return prompt


def test_upscale_added_to_a_graph_runs_only_the_new_branch(esrgan: Path, tmp_path: Path):
    models = tmp_path / "models" / "upscale_models"
    models.mkdir(parents=True)
    shutil.copy(esrgan, models / esrgan.name)
    (tmp_path / "input").mkdir()
    rgb = (np.random.default_rng(0).random((12, 10, 3)) * 255).astype(np.uint8)
    PILImage.fromarray(rgb).save(tmp_path / "input" / "photo.png")
    session = Session(
        models_dir=tmp_path / "models", input_dir=tmp_path / "input", output_dir=tmp_path / "out"
    )
    first = session.run(session.load(_upscale_prompt(False)))
    assert set(first.executed) == {"1", "2", "3"}
    second = session.run(session.load(_upscale_prompt(True)))
    assert set(second.executed) == {"4", "5", "6"}
    saved = PILImage.open(second.files["6"][0])
    assert saved.size == (20, 24)

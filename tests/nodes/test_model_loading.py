"""Checkpoint loading: every family loads without key mismatches; clear errors for bad files."""

from __future__ import annotations

import pytest
import torch

from nodes.diffusion import loader
from nodes.diffusion.checkpoint_io import CheckpointFormatError, PickleRefusedError, read_weights
from nodes.diffusion.make_checkpoint import ARCH_NAMES, make_checkpoint


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_loader_tiny_family_detected_with_zero_key_mismatches(arch, tiny_checkpoint_paths):
    path = tiny_checkpoint_paths[arch]
    info = loader.inspect_checkpoint(path)
    assert info.family == arch
    assert info.prediction == ("v" if arch in ("sd2-v", "sd2-unclip") else "eps")
    sd = read_weights(path)
    for component in ("unet", "vae", "clip"):
        _, reports = loader.build_component(component, info.family, sd, torch.float32)
        for report in reports:
            assert report.missing == [] and report.unexpected == [], (component, report)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_loader_reads_fp32_and_bf16_files(dtype, tmp_path):
    path = make_checkpoint("sd15", "tiny", 3, tmp_path / f"m-{dtype}.safetensors", dtype=dtype)
    info = loader.inspect_checkpoint(path)
    unet, reports = loader.build_component("unet", info.family, read_weights(path), torch.float32)
    assert reports[0].missing == [] and next(unet.parameters()).dtype == torch.float32


def test_loader_truncated_file_names_file_and_problem(tiny_sd15_path, tmp_path):
    bad = tmp_path / "cut.safetensors"
    bad.write_bytes(tiny_sd15_path.read_bytes()[:-1000])
    with pytest.raises(CheckpointFormatError, match="cut.safetensors.*truncated"):
        loader.inspect_checkpoint(bad)


def test_loader_unknown_file_says_what_was_expected(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointFormatError, match="lora.safetensors is not a Stable Diffusion checkpoint"):
        loader.inspect_checkpoint(path)


def test_loader_names_unsupported_family(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "flux.safetensors"
    save_file({"model.diffusion_model.double_blocks.0.x": torch.zeros(1)}, path)
    with pytest.raises(CheckpointFormatError, match="Flux"):
        loader.inspect_checkpoint(path)


def test_loader_refuses_pickle_without_opt_in(tmp_path, monkeypatch):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, path)
    monkeypatch.delenv("DIFFGRAPH_ALLOW_PICKLE", raising=False)
    with pytest.raises(PickleRefusedError, match="DIFFGRAPH_ALLOW_PICKLE=1"):
        read_weights(path)
    monkeypatch.setenv("DIFFGRAPH_ALLOW_PICKLE", "1")
    assert set(read_weights(path)) == {"a"}


def test_loader_pickle_checkpoint_with_opt_in_loads(tiny_sd15_path, tmp_path, monkeypatch):
    path = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": read_weights(tiny_sd15_path)}, path)
    monkeypatch.setenv("DIFFGRAPH_ALLOW_PICKLE", "1")
    info = loader.inspect_checkpoint(path)
    assert info.family == "sd15"


def test_model_store_reuses_checkpoint_across_loads(tiny_sd15_path, model_store):
    _, recipes = loader.load_checkpoint_into(model_store, tiny_sd15_path)
    loads = model_store.loads
    unet = loader.load_component_into(model_store, recipes["unet"])
    _, again = loader.load_checkpoint_into(model_store, tiny_sd15_path)
    assert loader.load_component_into(model_store, again["unet"]) is unet
    assert model_store.loads == loads


def test_model_forward_contract(tiny_checkpoint_paths, model_store, tmp_path):
    from nodes.defs.loaders import CheckpointLoaderSimple
    from tests.nodes.helpers_models import make_ctx

    ctx = make_ctx(tiny_checkpoint_paths["sdxl"].parents[1], model_store, tmp_path)
    out = CheckpointLoaderSimple().run(ctx, CheckpointLoaderSimple.Inputs(ckpt_name="tiny-sdxl.safetensors"))
    model = out.MODEL
    assert model.io_type == "MODEL" and model.family == "sdxl" and model.adm == "sdxl"
    x = torch.randn(2, 4, 8, 8)
    embeds, pooled = torch.randn(2, 77, 128), torch.randn(2, 64)
    y = model.forward(model_store, x, torch.tensor([999.0, 10.0]), embeds, pooled, [{}, {"width": 512}])
    assert y.shape == x.shape and y.dtype == torch.float32


def test_reader_casts_while_reading(tmp_path):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    tensors = {
        "big": torch.randn(1000, 37, generator=g).half(),
        "small": torch.randn(3, generator=g).bfloat16(),
        "ids": torch.arange(77).unsqueeze(0),
        "same": torch.randn(5, 5, generator=g),
    }
    path = tmp_path / "t.safetensors"
    save_file(tensors, path)
    got = read_weights(path, cast=lambda key: torch.float32)
    for key, t in tensors.items():
        expected = t.float() if t.is_floating_point() else t
        assert got[key].dtype == expected.dtype and torch.equal(got[key], expected), key


def test_reader_unmaps_what_it_copied_without_losing_values(tmp_path, monkeypatch):
    import mmap

    from safetensors.torch import save_file

    from nodes.diffusion import checkpoint_io

    # Unmap after every page, so pages shared by two neighbouring tensors are crossed many times.
    monkeypatch.setattr(checkpoint_io, "_RELEASE_BYTES", mmap.PAGESIZE)
    g = torch.Generator().manual_seed(1)
    tensors = {f"w{i}": torch.randn(997 + i, generator=g).to(torch.float8_e4m3fn) for i in range(40)}
    tensors |= {f"h{i}": torch.randn(333, 7, generator=g).half() for i in range(20)}
    path = tmp_path / "many.safetensors"
    save_file(tensors, path)
    got = read_weights(path)
    for key, t in tensors.items():
        assert got[key].dtype == t.dtype and torch.equal(got[key].view(torch.uint8), t.view(torch.uint8)), key


def test_reader_handles_unaligned_tensors(tmp_path):
    import json
    import struct

    half = torch.tensor([1.5, -2.0, 3.25], dtype=torch.float16)
    header = {
        "flag": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "w": {"dtype": "F16", "shape": [3], "data_offsets": [1, 7]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-aligned, so "w" sits at an odd address
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x07" + half.numpy().tobytes())
    got = read_weights(path, cast=lambda key: torch.float32)
    assert got["flag"].tolist() == [7] and got["w"].tolist() == [1.5, -2.0, 3.25]


def test_family_specs_are_typed_and_a_config_key_typo_is_refused():
    from dataclasses import asdict

    from nodes.diffusion import families

    sdxl = families.family_spec("sdxl")
    assert (sdxl.prediction, sdxl.adm, [e.name for e in sdxl.text_encoders]) == (
        "eps",
        "sdxl",
        ["clip_l", "clip_g"],
    )
    encoder = asdict(sdxl.text_encoders[0]) | {"pad_tokn": 0}
    with pytest.raises(ValueError, match="pad_tokn"):
        families.TextEncoderSpec(**families._strict(families.TextEncoderSpec, encoder, "sdxl.json"))

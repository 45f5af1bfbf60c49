"""`diffgraph make-checkpoint` writes every auxiliary file kind, and the matching loader takes it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.clip_vision import build_vision_tower
from nodes.diffusion.gligen import split_gligen
from nodes.diffusion.make_checkpoint import main
from nodes.diffusion.style_model import build_style_model
from nodes.diffusion.upscale import load_upscale_model


def _check(arch: str, path: Path) -> None:
    if arch.startswith("esrgan"):
        assert load_upscale_model(path).descriptor.scale == 4
    elif arch.startswith("clip-vision"):
        assert build_vision_tower(read_weights(path), torch.float32, path.name).config.hidden_size == 64
    elif arch == "t2i-style":
        build_style_model(read_weights(path), path.name)
    else:
        fusers, _ = split_gligen(read_weights(path), path.name)
        assert len(fusers) == 16


@pytest.mark.parametrize(
    "arch", ["esrgan", "esrgan-basicsr", "clip-vision", "clip-vision-openclip", "t2i-style", "gligen"]
)
def test_make_checkpoint_writes_auxiliary_files_the_loaders_accept(arch: str, tmp_path: Path, capsys):
    out = tmp_path / f"{arch}.safetensors"
    assert main(["--arch", arch, "--size", "tiny", "--seed", "2", str(out)]) == 0
    assert f"{arch} tiny" in capsys.readouterr().out
    _check(arch, out)
    again = tmp_path / "again.safetensors"
    main(["--arch", arch, "--size", "tiny", "--seed", "2", str(again)])
    assert again.read_bytes() == out.read_bytes()  # seeded: the same file byte for byte

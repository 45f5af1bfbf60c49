"""Per-tensor random weights: reproducible by key alone, and byte-identical to the published reference files."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from nodes.diffusion.random_weights import (
    layout_from_header,
    random_state_dict,
    tensor_seed,
    write_random_file,
)
from tests.shared_reference import FLOW

LAYOUT = {
    "blocks.0.proj.weight": ([8, 4], torch.float32),
    "blocks.0.proj.bias": ([8], torch.float32),
    "blocks.0.norm.scale": ([4], torch.bfloat16),
    "pos_embed": ([1, 3, 4], torch.float16),
}


def test_random_weights_do_not_depend_on_which_other_tensors_are_drawn():
    full = random_state_dict(7, "flux", LAYOUT)
    alone = random_state_dict(7, "flux", {"blocks.0.norm.scale": LAYOUT["blocks.0.norm.scale"]})
    assert torch.equal(full["blocks.0.norm.scale"], alone["blocks.0.norm.scale"])
    other = random_state_dict(7, "clip_l", LAYOUT)
    assert not torch.equal(full["blocks.0.proj.weight"], other["blocks.0.proj.weight"])


def test_random_weights_follow_the_value_rule():
    sd = random_state_dict(1, "x", LAYOUT)
    assert sd["blocks.0.proj.weight"].abs().max() <= 0.5  # 1/sqrt(4)
    assert sd["blocks.0.proj.bias"].abs().max() <= 0.5
    assert (sd["blocks.0.norm.scale"].float() - 1).abs().max() <= 0.1 + 1e-2
    assert sd["pos_embed"].dtype == torch.float16 and sd["pos_embed"].abs().max() <= 1.0
    assert tensor_seed(1, "x", "a") != tensor_seed(1, "x", "b")


def test_random_weights_refuse_a_tensor_without_a_rule():
    with pytest.raises(ValueError, match="no value rule"):
        random_state_dict(1, "x", {"logit_scale": ([1], torch.float32)})
    with pytest.raises(ValueError, match="no weight"):
        random_state_dict(1, "x", {"lonely.bias": ([3], torch.float32)})


def test_random_weights_stream_the_bytes_save_file_writes(tmp_path):
    # Every dtype test files use, mixed, so safetensors' dtype-then-name order is exercised too.
    layout = LAYOUT | {
        "blocks.1.proj.weight": ([6, 4], torch.float8_e4m3fn),
        "blocks.1.proj.bias": ([6], torch.float8_e5m2),
        "blocks.1.norm.scale": ([4], torch.float16),
    }
    save_file(
        random_state_dict(3, "flux", layout), str(tmp_path / "a.safetensors"), metadata={"format": "pt"}
    )
    write_random_file(tmp_path / "b.safetensors", 3, "flux", layout)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()


def _published_sha256(name: str) -> str:
    for line in (FLOW / "README.md").read_text().splitlines():
        if line.startswith(f"| `{name}` |"):
            return re.findall(r"`([0-9a-f]{64})`", line)[0]
    raise AssertionError(f"{name} not in the reference table")


@pytest.mark.slow
@pytest.mark.skipif(not (FLOW / "layouts").is_dir(), reason=f"flow reference data not found at {FLOW}")
def test_random_weights_rebuild_the_published_sd35_file_byte_for_byte(tmp_path):
    header = json.loads((FLOW / "layouts" / "sd35m.json").read_text())
    path = write_random_file(tmp_path / "sd35m.safetensors", 1234, "sd35m", layout_from_header(header))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == _published_sha256("sd35m")
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "pt"}

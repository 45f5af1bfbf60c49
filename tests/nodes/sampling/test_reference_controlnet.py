"""ControlNet workflows against ComfyUI's final latents on full-size random SD1.5 weights (slow).

`controlnet_advanced` is the shared case (../shared/reference): one ControlNet, strength 0.8, range
0.1-0.9. `controlnet_chain` (two ControlNets chained, different ranges, the hint centre-cropped and
resized to a 112x80 image) and `controlnet_apply_old` (the older ControlNetApply on the positive only,
which ComfyUI also applies to the negative) were recorded for these tests, see
tests/nodes/data/reference_cases/README.md.

The two ControlNet files are written by our own generator (make_controlnet, full size, seeds 4321 and
8765) and must hash to the sha256 the shared reference publishes for them: the generator rebuilds the
reference files byte for byte.

Measured on the dev machine (rel L2 of the final latent): controlnet_advanced 3.0e-6,
controlnet_chain 3.8e-6, controlnet_apply_old 3.7e-6 (both ControlNets rebuilt and hash-checked).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nodes.diffusion.controlnet_files import make_controlnet
from tests.nodes.sampling.test_reference_cases import TOLERANCE, rel_l2
from tests.nodes.sampling.test_reference_conditioning import OWN_CASES, _latent, _run_case, reference_store
from tests.shared_reference import CASES, needs_reference

__all__ = ["reference_store"]

# (file name, seed, size, sha256) of the reference ControlNets (make_random_controlnet.py's table).
REFERENCE_CONTROLNETS = (
    (
        "sd15-controlnet-random.safetensors",
        4321,
        722601136,
        "22cb3a509600d85507e75c94ef43b68dce79d5fb3243d73043f9736c7abb7366",
    ),
    (
        "sd15-controlnet-random-b.safetensors",
        8765,
        722601136,
        "0ee3c92642217264d0ee54d3bdf5d20ecf067ed0e045f4cbefb6774b597c9a11",
    ),
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def controlnet_models(reference_sd15_path, tmp_path_factory) -> Path:
    """A models root with the reference checkpoint and both reference ControlNets (generated, hash-checked)."""
    cache = os.environ.get("DIFFGRAPH_TEST_CACHE")
    folder = Path(cache) / "controlnet" if cache else tmp_path_factory.mktemp("controlnet")
    for name, seed, size, sha in REFERENCE_CONTROLNETS:
        path = folder / name
        if not (path.is_file() and path.stat().st_size == size):
            make_controlnet("sd15", "full", seed, path)
        assert _sha256(path) == sha, f"{name} is not byte for byte the reference ControlNet"
    root = tmp_path_factory.mktemp("cn_ref_models")
    (root / "checkpoints").symlink_to(reference_sd15_path.parent, target_is_directory=True)
    (root / "controlnet").symlink_to(folder, target_is_directory=True)
    return root


@needs_reference
@pytest.mark.slow
@pytest.mark.parametrize(
    "folder",
    [CASES / "controlnet_advanced", OWN_CASES / "controlnet_chain", OWN_CASES / "controlnet_apply_old"],
    ids=lambda p: p.name,
)
def test_reference_controlnet_case_matches_comfyui(
    folder, controlnet_models, reference_store, tmp_path, reference_sd15_path
):
    _, result = _run_case(folder, controlnet_models, tmp_path, reference_store)
    err = rel_l2(result.node_outputs["3"].LATENT.samples, _latent(folder))
    print(f"{folder.name} rel L2 {err:.3e}")
    assert err <= TOLERANCE

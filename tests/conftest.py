"""Shared test fixtures: tiny random checkpoints of every family in a ComfyUI-style models directory.

Fixtures (names are stable; other test packages rely on them):
  tiny_models_dir        session; Path of a models root with
                           checkpoints/tiny-sd15.safetensors, tiny-sd2.safetensors, tiny-sd2-v.safetensors,
                           tiny-sdxl.safetensors, tiny-sdxl-refiner.safetensors (fp16, seed 0, LDM layout),
                           vae/tiny-vae.safetensors (the sd15 file's VAE as a bare standalone VAE file),
                           loras/ (empty; LoRA tests write their own files);
                         use `engine.ModelPaths(tiny_models_dir)`.
  tiny_checkpoint_paths  session; dict arch -> Path of the files above.
  tiny_sd15_path, tiny_sdxl_path   session; Paths of the tiny SD1.5 / SDXL checkpoints.
  tiny_sd15_name         "tiny-sd15.safetensors" (the `ckpt_name` to put in workflows).
  tiny_sd3_path          session; checkpoints/tiny-sd3.5-medium.safetensors inside tiny_models_dir (tiny
                         SD3.5-medium-style MMDiT-X + 16-channel VAE, fp16, seed 0).
  model_store            function; a fresh CPU `engine.model_store.ModelStore`.
  reference_sd15_path    session, slow to build (~30 s, 2.1 GB); the full-size random SD1.5 reference
                         checkpoint from ../shared/reference, cached under $DIFFGRAPH_TEST_CACHE when set.
                         Skips when the shared script is not available.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.devices import DevicePolicy
from engine.model_store import ModelStore
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.make_checkpoint import ARCH_NAMES, make_checkpoint, make_sd3_checkpoint
from tests.shared_reference import MAKE_CHECKPOINT_SCRIPT, MISSING_REASON

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tiny models: one intra-op thread beats two here (thread hand-offs dominate small convolutions),
# and it keeps parallel test runs on shared machines from oversubscribing the cores. The variable
# carries the same choice into the CLI and server subprocesses the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

REFERENCE_SIZE = 2132651014


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding tiny checkpoints of every family and a standalone VAE."""
    root = tmp_path_factory.mktemp("models")
    for arch in ARCH_NAMES:
        make_checkpoint(arch, "tiny", 0, root / "checkpoints" / f"tiny-{arch}.safetensors")
    vae = read_weights(
        root / "checkpoints" / "tiny-sd15.safetensors", lambda k: k.startswith("first_stage_model.")
    )
    (root / "vae").mkdir()
    save_file(
        {k.removeprefix("first_stage_model."): v for k, v in vae.items()},
        root / "vae" / "tiny-vae.safetensors",
    )
    (root / "loras").mkdir()
    return root


@pytest.fixture(scope="session")
def tiny_checkpoint_paths(tiny_models_dir: Path) -> dict[str, Path]:
    """Arch name -> path of its tiny checkpoint."""
    return {arch: tiny_models_dir / "checkpoints" / f"tiny-{arch}.safetensors" for arch in ARCH_NAMES}


@pytest.fixture(scope="session")
def tiny_sd15_path(tiny_checkpoint_paths: dict[str, Path]) -> Path:
    """The tiny SD1.5 checkpoint."""
    return tiny_checkpoint_paths["sd15"]


@pytest.fixture(scope="session")
def tiny_sdxl_path(tiny_checkpoint_paths: dict[str, Path]) -> Path:
    """The tiny SDXL base checkpoint."""
    return tiny_checkpoint_paths["sdxl"]


@pytest.fixture(scope="session")
def tiny_sd3_path(tiny_models_dir: Path) -> Path:
    """The tiny SD3.5-medium-style checkpoint (MMDiT + VAE, no text encoders)."""
    path = tiny_models_dir / "checkpoints" / "tiny-sd3.5-medium.safetensors"
    if not path.is_file():
        make_sd3_checkpoint("sd3.5-medium", "tiny", 0, path)
    return path


@pytest.fixture(scope="session")
def tiny_sd15_name() -> str:
    """The checkpoint name of the tiny SD1.5 file inside tiny_models_dir/checkpoints."""
    return "tiny-sd15.safetensors"


@pytest.fixture
def model_store() -> ModelStore:
    """A fresh CPU model store."""
    return ModelStore(DevicePolicy.from_env(device="cpu"))


@pytest.fixture(scope="session")
def reference_sd15_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full-size random SD1.5 reference checkpoint (generated once, cached when possible)."""
    if not MAKE_CHECKPOINT_SCRIPT.is_file():
        pytest.skip(MISSING_REASON)
    cache = os.environ.get("DIFFGRAPH_TEST_CACHE")
    base = Path(cache) if cache else tmp_path_factory.mktemp("reference")
    path = base / "checkpoints" / "sd15-random.safetensors"
    if not (path.is_file() and path.stat().st_size == REFERENCE_SIZE):
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(MAKE_CHECKPOINT_SCRIPT), "--out", str(path)], check=True)
    return path


@pytest.fixture(autouse=True)
def _full_size_models_use_every_core(request: pytest.FixtureRequest):
    """Tests on the full-size reference checkpoint run big convolutions: give them every core."""
    if "reference_sd15_path" not in request.fixturenames:
        yield
        return
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(1)

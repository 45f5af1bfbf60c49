"""FLUX under a short RAM budget: T5 leaves the model store once the prompt is encoded, weights stay as stored."""

from __future__ import annotations

import pytest
import torch

from engine import Environment, ModelPaths
from engine.devices import DevicePolicy
from engine.executor import Executor
from engine.model_store import ModelStore, object_nbytes
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_text_encoder import make_text_encoder
from nodes.pack import build_registry


class RecordingStore(ModelStore):
    """A store that remembers its RAM usage after every load and the keys it dropped."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.usages: list[int] = []

    def put(self, key, obj):
        """Store, then note the usage."""
        out = super().put(key, obj)
        self.usages.append(self.usage()["ram_bytes"])
        return out


def _flux_prompt() -> dict:
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "flux.safetensors", "weight_dtype": "default"},
        },
        "2": {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": "clip_l.safetensors", "clip_name2": "t5.safetensors", "type": "flux"},
        },
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["2", 0]}},
        "4": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["3", 0], "guidance": 3.5}},
        "5": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "6": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["3", 0]}},
        "7": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "seed": 1,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "positive": ["4", 0],
                "negative": ["6", 0],
                "latent_image": ["5", 0],
            },
        },
    }


def _models(root, dtype=None):
    make_flux_file("flux1-dev", "tiny", 1, root / "diffusion_models" / "flux.safetensors", dtype)
    make_text_encoder("clip_l", "tiny", 1, root / "text_encoders" / "clip_l.safetensors")
    make_text_encoder("t5xxl", "tiny", 1, root / "text_encoders" / "t5.safetensors", "fp8_e4m3fn")
    return root


# The file's dtype (None: bf16, as make-checkpoint writes by default; fp8: the published fp8 files).
@pytest.mark.parametrize(
    ("file_dtype", "held"), [(None, torch.bfloat16), ("fp8_e4m3fn", torch.float8_e4m3fn)]
)
def test_flux_run_under_short_budget_drops_t5_and_never_holds_it_beside_the_model(tmp_path, file_dtype, held):
    models = _models(tmp_path / "models", file_dtype)
    sizes = {p.name: p.stat().st_size for p in models.rglob("*.safetensors")}
    # Room for the diffusion model and CLIP-L, not for T5 beside them.
    budget = sizes["flux.safetensors"] + sizes["clip_l.safetensors"] + sizes["t5.safetensors"] // 2
    store = RecordingStore(DevicePolicy.from_env(device="cpu"), ram_budget=budget)
    paths = ModelPaths(models)
    env = Environment(tmp_path / "out", tmp_path / "tmp", tmp_path, models=store, model_paths=paths)
    result = Executor(build_registry(paths, tmp_path), env).execute(
        _flux_prompt(), prompt_id="p", outputs=["7"]
    )
    assert result.status == "success", result.error and result.error.data()
    kept = [str(k) for k in store.keys()]  # noqa: SIM118 - the store is not iterable
    assert not any("t5.safetensors" in k for k in kept), kept
    assert any("flux.safetensors" in k for k in kept), kept
    assert max(store.usages) <= budget
    # The matrices are held as stored (widened per layer while running), not as float32 copies.
    unet = result.node_outputs["1"].MODEL.load(store)
    assert {p.dtype for p in unet.parameters() if p.ndim == 2} == {held}
    assert object_nbytes(unet) < sizes["flux.safetensors"] * 1.5

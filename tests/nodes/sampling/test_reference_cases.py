"""The shared ComfyUI reference cases reproduced on the full-size random SD1.5 checkpoint (slow).

Measured on the dev machine (fp32, CPU): see the closing note of issue 4 for the rel L2 numbers.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.nodes.sampling.conftest import PromptRunner, reference_prompt
from tests.shared_reference import CASES

TOLERANCE = 1e-4


def rel_l2(candidate: torch.Tensor, reference: torch.Tensor) -> float:
    """||candidate - reference|| / ||reference|| in float64."""
    c, r = candidate.double(), reference.double()
    return float((c - r).norm() / r.norm())


def _reference(case: str, name: str = "latent") -> torch.Tensor:
    return load_file(str(CASES / case / f"{name}.safetensors"))["latent"]


@pytest.fixture(scope="module")
def reference_runner(reference_sd15_path, tmp_path_factory):
    from engine.devices import DevicePolicy
    from engine.model_store import ModelStore

    store = ModelStore(DevicePolicy.from_env(device="cpu"))
    return PromptRunner(reference_sd15_path.parent.parent, store, tmp_path_factory.mktemp("ref"))


def _without_image_nodes(prompt: dict) -> dict:
    return {k: v for k, v in prompt.items() if v["class_type"] not in ("VAEDecode", "SaveImage")}


@pytest.mark.slow
def test_reference_txt2img_euler_normal_matches_comfyui(reference_runner):
    result = reference_runner.run(_without_image_nodes(reference_prompt("txt2img_euler_normal")))
    assert result.status == "success", result.error and result.error.data()
    err = rel_l2(result.node_outputs["3"].LATENT.samples, _reference("txt2img_euler_normal"))
    print(f"txt2img_euler_normal rel L2 {err:.3e}")
    assert err <= TOLERANCE


@pytest.mark.slow
def test_reference_chain_euler_dpmpp2m_matches_comfyui(reference_runner):
    result = reference_runner.run(_without_image_nodes(reference_prompt("chain_euler_dpmpp2m")))
    assert result.status == "success", result.error and result.error.data()
    case = "chain_euler_dpmpp2m"
    err1 = rel_l2(result.node_outputs["3"].LATENT.samples, _reference(case, "latent_stage1"))
    err2 = rel_l2(result.node_outputs["11"].LATENT.samples, _reference(case))
    print(f"chain stage1 rel L2 {err1:.3e}, final rel L2 {err2:.3e}")
    assert err1 <= TOLERANCE and err2 <= TOLERANCE


# Fast precision (bf16 denoiser) is not exact: its distance from the exact result is measured and
# printed, and only bounded loosely so a broken fast path (NaNs, wrong dtype plumbing) still fails.
FAST_BOUND = 0.1


@pytest.mark.slow
def test_reference_txt2img_fast_precision_stays_near_exact(reference_sd15_path, tmp_path):
    from engine.devices import DevicePolicy, cpu_has_native_bf16
    from engine.model_store import ModelStore

    if not cpu_has_native_bf16():
        pytest.skip("fast precision is fp32 on a CPU without native bf16: nothing to measure")
    store = ModelStore(DevicePolicy.from_env(device="cpu", precision="fast"))
    runner = PromptRunner(reference_sd15_path.parent.parent, store, tmp_path)
    result = runner.run(_without_image_nodes(reference_prompt("txt2img_euler_normal")))
    assert result.status == "success", result.error and result.error.data()
    assert result.node_outputs["4"].MODEL.compute_dtype == torch.bfloat16
    err = rel_l2(result.node_outputs["3"].LATENT.samples, _reference("txt2img_euler_normal"))
    print(f"txt2img_euler_normal fast precision rel L2 {err:.3e} (exact is ~1e-6)")
    assert err <= FAST_BOUND

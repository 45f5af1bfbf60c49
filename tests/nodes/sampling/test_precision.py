"""Fast precision through the real KSampler: a bf16 denoiser on bf16 CPUs, close to exact, exact unchanged."""

from __future__ import annotations

import pytest
import torch

from engine import devices
from engine.devices import DevicePolicy
from engine.model_store import ModelStore
from tests.nodes.sampling.conftest import PromptRunner, case_prompt, retarget

SIZE = 64


def _txt2img(name: str) -> dict:
    prompt = retarget(case_prompt("txt2img_euler_normal"), name, SIZE, drop=("8", "9"))
    prompt["3"]["inputs"].update({"steps": 4})
    return prompt


def _run(models_dir, tmp_path, precision: str, name: str):
    store = ModelStore(DevicePolicy.from_env(device="cpu", precision=precision))
    work = tmp_path / precision
    work.mkdir(parents=True)
    runner = PromptRunner(models_dir, store, work)
    result = runner.run(_txt2img(name))
    assert result.status == "success", result.error and result.error.data()
    return result.node_outputs["3"].LATENT.samples, result.node_outputs["4"].MODEL


def test_fast_precision_runs_a_bf16_denoiser_close_to_exact(
    tiny_models_dir, tiny_sd15_name, tmp_path, monkeypatch
):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    exact, exact_model = _run(tiny_models_dir, tmp_path, "exact", tiny_sd15_name)
    fast, fast_model = _run(tiny_models_dir, tmp_path, "fast", tiny_sd15_name)
    assert exact_model.compute_dtype == torch.float32 and fast_model.compute_dtype == torch.bfloat16
    assert fast.dtype == torch.float32
    err = float((fast - exact).norm() / exact.norm())
    assert 0 < err < 5e-2, err


def test_prompt_precision_loads_its_own_denoiser_beside_the_default(
    tiny_models_dir, tiny_sd15_name, tmp_path, monkeypatch
):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    policy_fast, _ = _run(tiny_models_dir, tmp_path / "policy", "fast", tiny_sd15_name)
    store = ModelStore(DevicePolicy.from_env(device="cpu", precision="exact"))
    runner = PromptRunner(tiny_models_dir, store, tmp_path)
    outcome = {}
    for precision in ("fast", "exact"):
        result = runner.run(_txt2img(tiny_sd15_name), extra_data={"diffgraph_precision": precision})
        assert result.status == "success", result.error and result.error.data()
        outcome[precision] = (result.node_outputs["3"].LATENT.samples, result.node_outputs["4"].MODEL)
    assert outcome["fast"][1].compute_dtype == torch.bfloat16
    assert outcome["exact"][1].compute_dtype == torch.float32
    # The prompt's fast run equals a whole fast process; both denoisers stay loaded, under their own keys.
    assert torch.equal(outcome["fast"][0], policy_fast)
    stored = store.keys()
    unets = [k for k in stored if k[:2] == ("diffgraph", "unet")]
    assert len(unets) == 2 and {str(store.get(k, lambda: None).dtype) for k in unets} == {
        "torch.float32",
        "torch.bfloat16",
    }


def test_fast_prompt_shares_the_exact_denoiser_where_it_changes_nothing(
    tiny_models_dir, tiny_sd15_name, tmp_path, monkeypatch
):
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    store = ModelStore(DevicePolicy.from_env(device="cpu", precision="exact"))
    runner = PromptRunner(tiny_models_dir, store, tmp_path)
    for precision in ("fast", "exact"):
        result = runner.run(_txt2img(tiny_sd15_name), extra_data={"diffgraph_precision": precision})
        assert result.status == "success", result.error and result.error.data()
    stored = store.keys()
    assert len([k for k in stored if k[:2] == ("diffgraph", "unet")]) == 1


def test_exact_precision_is_repeatable_bit_for_bit(tiny_models_dir, tiny_sd15_name, tmp_path):
    a, _ = _run(tiny_models_dir, tmp_path, "exact", tiny_sd15_name)
    b, _ = _run(tiny_models_dir, tmp_path / "again", "exact", tiny_sd15_name)
    assert torch.equal(a, b)


@pytest.mark.parametrize("precision", ["exact", "fast"])
def test_precision_from_the_environment_reaches_the_store(precision, monkeypatch):
    monkeypatch.setenv("DIFFGRAPH_PRECISION", precision)
    assert ModelStore().policy.precision == precision


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_half_precision_sampling_stays_near_cpu_exact(tiny_models_dir, tiny_sd15_name, tmp_path):
    exact, _ = _run(tiny_models_dir, tmp_path, "exact", tiny_sd15_name)
    store = ModelStore(DevicePolicy.from_env(device="cuda"))
    work = tmp_path / "cuda"
    work.mkdir()
    result = PromptRunner(tiny_models_dir, store, work).run(_txt2img(tiny_sd15_name))
    assert result.status == "success", result.error and result.error.data()
    assert result.node_outputs["4"].MODEL.compute_dtype in (torch.float16, torch.bfloat16)
    got = result.node_outputs["3"].LATENT.samples.cpu()
    assert float((got - exact).norm() / exact.norm()) < 5e-2

"""Custom-sampling graphs on the full-size random SD1.5 checkpoint against ComfyUI's latents (slow).

`data/custom_sampling_sd15/` holds the API workflow and the latents ComfyUI 0.3.64 (CPU, fp32, torch
2.13) saved for it: the workflow was posted unchanged to its /prompt with `sd15-random.safetensors`
(rebuilt by ../shared/reference/make_random_checkpoint.py) in its checkpoints folder, and each
SaveLatent file's `latent_tensor` was stored under `latent`. It covers SamplerCustomAdvanced with
RandomNoise, DualCFGGuider, SamplerEulerAncestral (eta 0.8, s_noise 0.9) and KarrasScheduler, its
denoised_output, and a SamplerCustom chain over SplitSigmas of a beta schedule (DPM++ 2M SDE heun with
eta 0.7, then dpmpp_2m without added noise). Measured here (fp32, CPU): rel L2 8.2e-7 for both outputs
of the first graph and 1.3e-6 for the chain.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.nodes.sampling.test_reference_cases import TOLERANCE, reference_runner, rel_l2  # noqa: F401

CASE = Path(__file__).resolve().parents[1] / "data" / "custom_sampling_sd15"


@pytest.mark.slow
def test_custom_sampling_graph_matches_comfyui(reference_runner):  # noqa: F811
    prompt = json.loads((CASE / "workflow_api.json").read_text())
    result = reference_runner.run(prompt)
    assert result.status == "success", result.error and result.error.data()
    outputs = {
        "dual_cfg_euler_a": result.node_outputs["24"].output,
        "dual_cfg_euler_a_denoised": result.node_outputs["24"].denoised_output,
        "split_chain": result.node_outputs["35"].output,
    }
    for name, latent in outputs.items():
        err = rel_l2(latent.samples, load_file(str(CASE / f"{name}.safetensors"))["latent"])
        print(f"{name} rel L2 {err:.3e}")
        assert err <= TOLERANCE, name

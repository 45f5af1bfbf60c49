"""ComfyUI's final latents for whole SD3.5 workflows, text encoders included (data/flow_cases/): within 1e-4.

ComfyUI 0.3.64 on CPU ran each case's workflow_api.json on the reduced random files of
../shared/reference/flow: CheckpointLoaderSimple on sd3.5m-random-d2 (its MMDiT-X at depth 2 and the
16-channel VAE; the file holds no text encoders), TripleCLIPLoader (CLIP-L, CLIP-G fp16, T5-XXL fp8),
CLIPTextEncode / CLIPTextEncodeSD3, EmptySD3LatentImage 256x256, ModelSamplingSD3 shift 3, 4 steps, seed 42,
the same two prompts in every case; data/flow_cases/README.md says how. One executor runs every case of this
module, so the prompts are encoded once. Needs about 10 GB of memory and the files (tests/nodes/flow_reference).

Measured relative L2 against ComfyUI (`DIFFGRAPH_FLOW_MODELS=<models> python -m pytest
tests/nodes/test_flow_cases_sd35.py -s`, 2 CPU threads, 4 min for the four cases, peak RSS 11.8 GB):
  ksampler_euler_simple 4.2e-7; custom_cfg_guider 4.8e-7 (denoised_output 4.8e-7);
  ksampler_dpmpp_2m_beta 7.6e-7; split_sigmas 4.2e-7 (first pass 1.3e-7).
"""

from __future__ import annotations

import pytest

from tests.nodes.flow_reference import compare_case, runner_for

CASES = [
    "sd35_ksampler_euler_simple",
    "sd35_custom_cfg_guider",
    "sd35_ksampler_dpmpp_2m_beta",
    "sd35_split_sigmas",
]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return runner_for(CASES, tmp_path_factory.mktemp("sd35_cases"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_sd35_workflow_final_latent_matches_comfyui(runner, case):
    compare_case(runner, case)

"""ComfyUI's final latents for SD3.5 large and large turbo workflows (data/flow_cases/sd35l_*): within 1e-4.

ComfyUI 0.3.64 on CPU ran each case's workflow_api.json: CheckpointLoaderSimple on sd3.5l-random-d2
(`make-checkpoint --arch sd3.5-large --size reduced --seed 1234`: SD3.5 large's layout, no dual-attention
blocks, RMS q/k norms, a 192x192 position grid, at depth 2, so 128 wide with 2 heads, because ComfyUI
takes width and head count from the block count; plus the 16-channel VAE, no text encoders),
TripleCLIPLoader (the flow reference's CLIP-L, CLIP-G fp16 and T5-XXL fp8), CLIPTextEncode positive and
negative, EmptySD3LatentImage 256x256, ModelSamplingSD3 shift 3, KSampler euler/simple, 4 steps, seed 42:
cfg 4.5 (large) and cfg 1 (large turbo's setting; turbo has the large layout). data/flow_cases/README.md
says how. Needs about 8 GB of memory and the text encoder files (tests/nodes/flow_reference); the
checkpoint is not in the shared reference and is built on the fly (20 s) when the models folder lacks it.
A module of its own because a models folder cannot mix that built file with the medium checkpoint.

Measured relative L2 against ComfyUI (`DIFFGRAPH_FLOW_MODELS=<models> python -m pytest
tests/nodes/test_flow_cases_sd35_large.py -s`, 2 CPU threads, 3 min 20 s for both cases including the
build, peak RSS 7.9 GB): sd35l_ksampler_euler_simple 4.8e-7; sd35l_turbo_ksampler_euler_simple 9.3e-8.
"""

from __future__ import annotations

import pytest

from tests.nodes.flow_reference import compare_case, runner_for

CASES = ["sd35l_ksampler_euler_simple", "sd35l_turbo_ksampler_euler_simple"]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    return runner_for(CASES, tmp_path_factory.mktemp("sd35l_cases"))


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_sd35_large_workflow_final_latent_matches_comfyui(runner, case):
    compare_case(runner, case)

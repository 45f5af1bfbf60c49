"""The FLUX / SD3 sampling benchmark on tiny random files: both sides run and compute the same latents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import sampling
from bench.sampling_flow import DEFAULT_FILES
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_text_encoder import make_text_encoder


def _tiny_models(root: Path, family: str) -> Path:
    """Tiny random files under the benchmark's default names."""
    text = DEFAULT_FILES["text"]
    make_text_encoder("clip_l", "tiny", 3, root / "text_encoders" / text["clip_l"])
    make_text_encoder("t5xxl", "tiny", 3, root / "text_encoders" / text["t5"], "fp8_e4m3fn")
    if family == "flux":
        make_flux_file("flux1-dev", "tiny", 3, root / "diffusion_models" / DEFAULT_FILES["flux"]["unet"])
    else:
        make_text_encoder("clip_g", "tiny", 3, root / "text_encoders" / text["clip_g"])
        make_sd3_checkpoint("sd3.5-medium", "tiny", 3, root / "checkpoints" / DEFAULT_FILES["sd3"]["ckpt"])
    return root


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_sampling_bench_flow_family_times_both_sides_on_the_same_latents(tmp_path, family):
    models = _tiny_models(tmp_path / "models", family)
    out = tmp_path / f"{family}.json"
    argv = ["--family", family, "--models-dir", str(models), "--out", str(out)]
    sampling.main([*argv, "--size", "64", "--steps", "2", "--rounds", "1"])
    result = json.loads(out.read_text())
    assert result["diffgraph_s_per_step"] > 0 and result["diffusers_s_per_step"] > 0
    # Same weights, sigmas, noise and embeddings on both sides: the samplers must land on the same latent.
    assert result["final_latent_rel_l2"] < 1e-4
    assert result["diffgraph_peak_mb"] > 0 and result["diffusers_weights_mb"] > 0


def test_sampling_bench_flow_family_refuses_an_unknown_file_role(tmp_path):
    argv = ["--family", "flux", "--models-dir", str(tmp_path), "--out", str(tmp_path / "x.json")]
    with pytest.raises(SystemExit, match="ROLE=NAME"):
        sampling.main([*argv, "--flow-file", "vae=ae.safetensors"])

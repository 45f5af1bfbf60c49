"""The per-stage memory benchmark on tiny random FLUX files: every stage reported, T5 gone under a short budget."""

from __future__ import annotations

import json

from bench import memory_flow
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_text_encoder import make_text_encoder


def test_memory_bench_reports_each_stage_and_t5_leaves_before_sampling(tmp_path):
    root = tmp_path / "models"
    make_flux_file("flux1-dev", "tiny", 2, root / "diffusion_models" / "flux.safetensors")
    make_flux_file("flux-ae", "tiny", 2, root / "vae" / "ae.safetensors")
    make_text_encoder("clip_l", "tiny", 2, root / "text_encoders" / "clip_l.safetensors")
    make_text_encoder("t5xxl", "tiny", 2, root / "text_encoders" / "t5.safetensors", "fp8_e4m3fn")
    sizes = {p.name: p.stat().st_size for p in root.rglob("*.safetensors")}
    # Room for the diffusion model and CLIP-L, not for T5 beside them.
    budget = sizes["flux.safetensors"] + sizes["clip_l.safetensors"] + sizes["t5.safetensors"] // 2
    out = tmp_path / "memory.json"
    argv = ["--models-dir", str(root), "--out", str(out), "--size", "64", "--steps", "1"]
    files = ["--unet", "flux.safetensors", "--clip-l", "clip_l.safetensors", "--t5", "t5.safetensors"]
    memory_flow.main([*argv, *files, "--vae", "ae.safetensors", "--ram-budget-gb", str(budget / 2**30)])
    result = json.loads(out.read_text())
    stages = {s["stage"]: s for s in result["stages"]}
    assert list(stages) == list(memory_flow.STAGES.values())
    assert "t5xxl" in stages["load text encoders"]["store_holds"]
    assert "t5xxl" not in stages["sampling"]["store_holds"]
    assert "diffusion model" in stages["sampling"]["store_holds"]
    assert all(s["peak_rss_mb"] > 0 for s in stages.values())

"""ComfyUI's scaled-fp8 files (FLUX, SD3 diffusion models, T5-XXL): weights held as fp8, scaled as widened.

The SD3 case compares with ComfyUI 0.3.64's own forward of the same tiny scaled file
(data/scaled_fp8/, made by make_comfy_reference.py as its README says): relative L2 1.8e-7 when recorded;
the reduced-depth full-width FLUX dev file made scaled gives 2.9e-7, a tiny scaled T5 5.9e-7 against ComfyUI.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nodes.defs.unet_loader import UNETLoader
from nodes.diffusion import flux, sd3
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.make_checkpoint import make_sd3_checkpoint
from nodes.diffusion.make_scaled import rewrite_scaled_fp8, to_scaled_fp8
from nodes.diffusion.make_text_encoder import make_text_encoder
from nodes.diffusion.stored_weights import SCALE_WEIGHT, split_weight_scales
from nodes.diffusion.t5 import build_t5, run_t5
from tests.nodes.helpers_models import make_ctx

DATA = Path(__file__).parent / "data" / "scaled_fp8"


def _dequantized(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What a scaled file means: weight * scale in float32, biases of scaled layers through fp8 as ComfyUI holds them."""
    out = {}
    for key, tensor in sd.items():
        if key.endswith((SCALE_WEIGHT, ".scale_input", "scaled_fp8")):
            continue
        stem = key.rsplit(".", 1)[0]
        if stem + SCALE_WEIGHT not in sd:
            out[key] = tensor
        elif key.endswith(".weight"):
            out[key] = tensor.float() * sd[stem + SCALE_WEIGHT]
        else:
            out[key] = tensor.to(torch.float8_e4m3fn).float()
    return out


def test_scaled_fp8_sd3_forward_matches_comfyui(tmp_path):
    path = make_sd3_checkpoint("sd3.5-medium", "tiny", 7, tmp_path / "sd3.safetensors")
    model = sd3.build_transformer(load_file(str(rewrite_scaled_fp8(path, sd3.MMDIT_PREFIX))), torch.float32)
    ref = load_file(str(DATA / "comfy_sd3_tiny_scaled.safetensors"))
    args = (ref["x"], ref["timesteps"], ref["context"], ref["pooled"], torch.device("cpu"), torch.float32)
    out = sd3.mmdit_forward(model, *args)
    assert float((out - ref["velocity"]).norm() / ref["velocity"].norm()) < 1e-5
    linears = [m for m in model.modules() if isinstance(m, flux.UpcastLinear)]
    assert {p.dtype for m in linears for p in m.parameters()} == {torch.float8_e4m3fn}


def test_scaled_fp8_flux_unet_loader_keeps_fp8_and_computes_the_dequantized_model(tmp_path, model_store):
    root = tmp_path / "models"
    path = make_flux_file("flux1-dev", "tiny", 4, root / "diffusion_models" / "flux_scaled.safetensors")
    scaled = load_file(str(rewrite_scaled_fp8(path)))
    # weight_dtype is ignored for scaled files, as ComfyUI does: re-narrowing weight / scale would lose bits.
    inputs = UNETLoader.Inputs(unet_name="flux_scaled.safetensors", weight_dtype="fp8_e5m2")
    handle = UNETLoader().run(make_ctx(root, model_store, tmp_path), inputs).MODEL
    model = handle.load(model_store)
    held = {p.dtype for n, p in model.named_parameters() if n.endswith("proj_out.weight")}
    assert held == {torch.float8_e4m3fn}
    plain = flux.build_flux(_dequantized(scaled), "", "flux-dev", torch.float32)
    cfg = model.transformer.config
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 8, 8, generator=g)
    context = torch.randn(1, 6, cfg.joint_attention_dim, generator=g)
    pooled = torch.randn(1, cfg.pooled_projection_dim, generator=g)
    args = (x, torch.tensor([0.6]), context, pooled, torch.tensor([3.5]))
    torch.testing.assert_close(model(*args), plain(*args), rtol=1e-5, atol=1e-6)


def test_scaled_fp8_t5_encodes_like_its_dequantized_weights(tmp_path):
    path = make_text_encoder("t5xxl", "tiny", 5, tmp_path / "t5.safetensors")
    scaled = to_scaled_fp8(load_file(str(path)))
    assert scaled["encoder.block.0.layer.0.SelfAttention.q.weight"].dtype == torch.float8_e4m3fn
    ids = torch.tensor([[100, 200, 300, 1]])
    out = run_t5(build_t5(scaled), ids)
    plain, wide = build_t5(_dequantized(scaled)), _dequantized(scaled)
    for name, param in plain.named_parameters():
        if name in wide and name.removesuffix(".weight") + SCALE_WEIGHT in scaled:
            param.data = wide[name]  # float32, not narrowed to the fp16 a float32 file would be held in
    expected = run_t5(plain, ids)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_scaled_fp8_scales_without_marker_are_refused(tmp_path):
    sd = to_scaled_fp8({"a.weight": torch.randn(4, 4)})
    del sd["scaled_fp8"]
    with pytest.raises(ValueError, match="marker"):
        split_weight_scales(sd)
    save_file(sd, tmp_path / "x.safetensors")


@pytest.mark.slow
def test_scaled_fp8_flux_reduced_forward_matches_comfyui():
    """Reduced-depth full-width FLUX dev made scaled fp8 (1 GB): rel L2 2.9e-7 against ComfyUI when recorded."""
    from tests.nodes.flow_reference import flow_models_dir
    from tests.nodes.test_flux_reference import FLUX_DEV

    source = flow_models_dir(only=(FLUX_DEV,)) / FLUX_DEV[0] / FLUX_DEV[1]
    model = flux.build_flux(to_scaled_fp8(load_file(str(source))), "", "flux-dev", torch.float32)
    ref = load_file(str(DATA / "comfy_flux_d2s2_scaled.safetensors"))
    out = model(ref["x"], ref["timesteps"], ref["context"], ref["pooled"], torch.tensor([3.5]))
    assert float((out - ref["velocity"]).norm() / ref["velocity"].norm()) < 1e-5


def test_scaled_fp8_t5_hidden_states_match_comfyui(tmp_path):
    from nodes.diffusion.make_checkpoint import main as make_checkpoint_main

    path = tmp_path / "t5_scaled.safetensors"
    make_checkpoint_main(["--arch", "t5xxl", "--size", "tiny", "--seed", "9", "--scaled-fp8", str(path)])
    ref = load_file(str(DATA / "comfy_t5_tiny_scaled.safetensors"))
    out = run_t5(build_t5(load_file(str(path))), ref["ids"])
    assert float((out - ref["hidden"]).norm() / ref["hidden"].norm()) < 1e-5

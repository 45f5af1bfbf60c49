"""Style models: the T2I-Adapter style file (published layout, ComfyUI's tokens), StyleModelApply's rules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from engine import UserFacingError
from engine.model_store import ModelStore
from nodes.defs.style_model import StyleModelApply, StyleModelLoader
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.make_guidance import make_style_model, style_adapter_layout
from nodes.diffusion.style_model import StyleModelError, build_style_model
from nodes.types import ClipVisionOutput, CondEntry, Conditioning
from tests.nodes.helpers_models import make_ctx

REFERENCE = Path(__file__).parent / "data" / "style_reference" / "style_reference.safetensors"

# Facts from the header of t2iadapter_style_sd14v1.pth (TencentARC/T2I-Adapter).
T2I_STYLE = {
    "style_embedding": (1, 8, 1024),
    "proj": (1024, 768),
    "ln_pre.weight": (1024,),
    "transformer_layes.2.attn.in_proj_weight": (3072, 1024),
    "transformer_layes.0.mlp.c_fc.weight": (4096, 1024),
    "transformer_layes.0.mlp.c_proj.weight": (1024, 4096),
}


def test_style_layout_full_size_has_the_published_names_and_shapes():
    layout = style_adapter_layout("full", torch.float16)
    assert len(layout) == 6 + 3 * 12
    for key, shape in T2I_STYLE.items():
        assert tuple(layout[key][0]) == shape, key


@pytest.mark.slow
def test_style_adapter_matches_comfyui_tokens(tmp_path: Path):
    path = make_style_model(tmp_path / "style-full.safetensors", "full", 5)
    model = build_style_model(read_weights(path), path.name)
    hidden = torch.randn(2, 257, 1024, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        tokens = model(hidden)
    expected = load_file(str(REFERENCE))["tokens"]
    assert float((tokens - expected).norm() / expected.norm()) <= 1e-5


REDUX = Path(__file__).parent / "data" / "redux"


def test_style_redux_tokens_match_comfyui(tmp_path: Path):
    """ComfyUI's tokens for a small random Redux file (tests/nodes/data/redux/make_comfyui_redux.py)."""
    reference = load_file(str(REDUX / "redux_reference.safetensors"))
    (tmp_path / "style_models").mkdir()
    (tmp_path / "style_models" / "redux.safetensors").write_bytes(
        (REDUX / "redux_tiny.safetensors").read_bytes()
    )
    ctx = make_ctx(tmp_path, ModelStore(), tmp_path)
    loader = StyleModelLoader()
    handle = loader.run(ctx, loader.Inputs(style_model_name="redux.safetensors")).STYLE_MODEL
    hidden = reference["hidden"]
    vision = ClipVisionOutput(
        last_hidden_state=hidden, penultimate_hidden_states=hidden, image_embeds=hidden[:, 0]
    )
    cond = Conditioning(entries=(CondEntry(embeds=torch.ones(1, 5, 8)),))
    inputs = StyleModelApply.Inputs(
        conditioning=cond,
        style_model=handle,
        clip_vision_output=vision,
        strength=1.0,
        strength_type="multiply",
    )
    joined = StyleModelApply().run(ctx, inputs).CONDITIONING.entries[0].embeds
    expected = reference["tokens"].flatten(0, 1)  # both images' tokens side by side, after the prompt's
    assert joined.shape == (1, 5 + 18, 8)
    assert torch.equal(joined[0, :5], torch.ones(5, 8))
    assert float((joined[0, 5:] - expected).norm() / expected.norm()) <= 1e-6


def test_style_loader_refuses_broken_redux_and_unknown_files(tmp_path: Path):
    with pytest.raises(StyleModelError, match="FLUX Redux tensors"):
        build_style_model({"redux_down.weight": torch.zeros(2, 2)}, "redux.safetensors")
    with pytest.raises(StyleModelError, match="not a style model"):
        build_style_model({"foo": torch.zeros(1)}, "x.safetensors")


@pytest.fixture
def style_setup(tmp_path: Path):
    make_style_model(tmp_path / "models" / "style_models" / "tiny-style.safetensors", "tiny", 0)
    ctx = make_ctx(tmp_path / "models", ModelStore(), tmp_path)
    loader = StyleModelLoader()
    handle = loader.run(ctx, loader.Inputs(style_model_name="tiny-style.safetensors")).STYLE_MODEL
    hidden = torch.randn(2, 5, 64, generator=torch.Generator().manual_seed(0))
    vision = ClipVisionOutput(
        last_hidden_state=hidden, penultimate_hidden_states=hidden, image_embeds=hidden[:, 0]
    )
    cond = Conditioning(entries=(CondEntry(embeds=torch.ones(1, 77, 32)),))
    return ctx, handle, vision, cond


def test_style_apply_appends_the_style_tokens_of_every_image_scaled_by_strength(style_setup):
    ctx, handle, vision, cond = style_setup
    node = StyleModelApply()

    def apply(strength: float, kind: str = "multiply") -> torch.Tensor:
        inputs = node.Inputs(
            conditioning=cond,
            style_model=handle,
            clip_vision_output=vision,
            strength=strength,
            strength_type=kind,
        )
        return node.run(ctx, inputs).CONDITIONING.entries[0].embeds

    one = apply(1.0)
    assert one.shape == (1, 77 + 2 * 4, 32)  # 4 style tokens per image, both images side by side
    assert torch.equal(one[:, :77], cond.entries[0].embeds)
    torch.testing.assert_close(apply(0.5)[:, 77:], one[:, 77:] * 0.5)
    assert torch.equal(apply(1.0, "attn_bias"), one)
    with pytest.raises(UserFacingError, match="attn_bias"):
        apply(0.5, "attn_bias")


def test_style_apply_refuses_a_conditioning_of_another_width(style_setup):
    ctx, handle, vision, _ = style_setup
    node = StyleModelApply()
    wide = Conditioning(entries=(CondEntry(embeds=torch.ones(1, 77, 1024)),))
    inputs = node.Inputs(
        conditioning=wide, style_model=handle, clip_vision_output=vision, strength_type="multiply"
    )
    with pytest.raises(UserFacingError, match="32-wide"):
        node.run(ctx, inputs)


def test_style_loader_reads_a_pickle_only_with_the_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from nodes.diffusion.checkpoint_io import PICKLE_ENV, PickleRefusedError

    src = make_style_model(tmp_path / "s.safetensors", "tiny", 1)
    pth = tmp_path / "t2iadapter_style_sd14v1.pth"
    torch.save(load_file(str(src)), pth)
    monkeypatch.delenv(PICKLE_ENV, raising=False)
    with pytest.raises(PickleRefusedError):
        read_weights(pth)
    monkeypatch.setenv(PICKLE_ENV, "1")
    assert build_style_model(read_weights(pth), pth.name).style_embedding.shape == (1, 4, 64)


def test_style_redux_template_runs_on_tiny_files(tmp_path: Path):
    """ComfyUI's FLUX Redux template headless (2 steps, 64x64): SigLIP + Redux tokens reach the FLUX model."""
    import numpy as np
    from PIL import Image as PILImage
    from safetensors.torch import save_file

    from bench.template_coverage import installed_templates
    from diffgraph.api import Session
    from nodes.diffusion.make_checkpoint import main as make_checkpoint
    from tests.nodes.flux_files import write_tiny_flux_models

    models = write_tiny_flux_models(tmp_path / "models")
    siglip = models / "clip_vision" / "sigclip_vision_patch14_384.safetensors"
    assert make_checkpoint(["--arch", "siglip-vision", "--size", "tiny", str(siglip)]) == 0
    width = next(v for k, v in load_file(str(siglip)).items() if k.endswith("post_layernorm.weight")).shape[0]
    context = load_file(str(models / "text_encoders" / "t5xxl_fp16.safetensors"))["shared.weight"].shape[1]
    gen = torch.Generator().manual_seed(0)
    redux = {
        "redux_up.weight": torch.randn(3 * context, width, generator=gen) * 0.1,
        "redux_up.bias": torch.zeros(3 * context),
        "redux_down.weight": torch.randn(context, 3 * context, generator=gen) * 0.1,
        "redux_down.bias": torch.zeros(context),
    }
    (models / "style_models").mkdir()
    save_file(
        {k: v.half() for k, v in redux.items()}, str(models / "style_models" / "flux1-redux-dev.safetensors")
    )
    (tmp_path / "input").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    PILImage.fromarray(pixels).save(tmp_path / "input" / "sd3_controlnet_example.png")
    session = Session(models_dir=models, input_dir=tmp_path / "input", output_dir=tmp_path / "out")
    workflow = session.load(installed_templates()[1] / "flux_redux_model_example.json")
    for node in workflow.prompt.values():
        if node["class_type"] == "BasicScheduler":
            node["inputs"]["steps"] = 2
        if node["class_type"] in ("EmptySD3LatentImage", "ModelSamplingFlux"):
            node["inputs"]["width"] = node["inputs"]["height"] = 64
    result = session.run(workflow)
    assert result.status == "success"
    (image,) = [f for files in result.files.values() for f in files]
    assert PILImage.open(image).size == (64, 64)

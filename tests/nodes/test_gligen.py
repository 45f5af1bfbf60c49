"""GLIGEN: the published text-box layout, the gated UNet copy, boxes in latent cells, the nodes end to end."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock

from engine import UserFacingError
from engine.model_store import ModelStore
from nodes.defs.gligen import GLIGENLoader, GLIGENTextBoxApply
from nodes.defs.loaders import CheckpointLoaderSimple
from nodes.defs.sampler import KSampler
from nodes.defs.text import CLIPTextEncode
from nodes.diffusion.checkpoint_io import read_weights
from nodes.diffusion.gligen import GligenBox, GligenError, box_inputs, gated_unet
from nodes.diffusion.make_guidance import gligen_layout, make_gligen
from nodes.types import Conditioning, Latent
from tests.nodes.helpers_models import make_ctx

# Facts from the header of gligen_sd14_textbox_pruned.safetensors (SD1.4 GLIGEN, text boxes).
GLIGEN_SD14 = {
    "input_blocks.1.1.transformer_blocks.0.fuser.linear.weight": (320, 768),
    "input_blocks.1.1.transformer_blocks.0.fuser.attn.to_q.weight": (320, 320),
    "input_blocks.1.1.transformer_blocks.0.fuser.ff.net.0.proj.weight": (2560, 320),
    "input_blocks.1.1.transformer_blocks.0.fuser.alpha_attn": (),
    "middle_block.1.transformer_blocks.0.fuser.linear.weight": (1280, 768),
    "output_blocks.11.1.transformer_blocks.0.fuser.ff.net.2.weight": (320, 1280),
    "position_net.null_positive_feature": (768,),
    "position_net.null_position_feature": (64,),
    "position_net.linears.0.weight": (512, 832),
    "position_net.linears.4.weight": (768, 512),
}


def test_gligen_layout_full_size_has_the_published_names_and_shapes():
    layout = gligen_layout("full", torch.float16)
    for key, shape in GLIGEN_SD14.items():
        assert tuple(layout[key][0]) == shape, key
    assert sum(k.endswith("fuser.alpha_attn") for k in layout) == 16  # one per SD1.x transformer block


def test_gligen_boxes_are_fractions_of_the_latent_and_padded_to_30():
    pooled = torch.arange(4.0).reshape(1, 4)
    inputs = box_inputs([GligenBox(pooled, height=2, width=4, y=1, x=2)], height=8, width=8, batch=2)
    assert inputs["boxes"].shape == (2, 30, 4) and inputs["masks"].shape == (2, 30)
    torch.testing.assert_close(inputs["boxes"][1, 0], torch.tensor([0.25, 0.125, 0.75, 0.375]))
    assert inputs["masks"][0].tolist() == [1.0] + [0.0] * 29
    assert torch.equal(inputs["positive_embeddings"][0, 0], pooled[0])
    with pytest.raises(GligenError, match="at most 30"):
        box_inputs([GligenBox(pooled, 1, 1, 0, 0)] * 31, 8, 8, 1)


@pytest.fixture(scope="module")
def gligen_models(tiny_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gligen_models")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "tiny-sd15.safetensors").write_bytes(
        (tiny_models_dir / "checkpoints" / "tiny-sd15.safetensors").read_bytes()
    )
    make_gligen(root / "gligen" / "tiny-gligen.safetensors", "tiny", 0)
    return root


def test_gligen_gated_copy_leaves_the_base_unet_untouched(gligen_models: Path, tmp_path: Path):
    ctx = make_ctx(gligen_models, ModelStore(), tmp_path)
    loader = CheckpointLoaderSimple()
    model = loader.run(ctx, loader.Inputs(ckpt_name="tiny-sd15.safetensors")).MODEL
    base = model.load(ctx.models)
    gated = gated_unet(base, read_weights(gligen_models / "gligen" / "tiny-gligen.safetensors"), "g")
    assert not any(hasattr(b, "fuser") for b in base.modules() if isinstance(b, BasicTransformerBlock))
    fusers = [b.fuser for b in gated.modules() if isinstance(b, BasicTransformerBlock)]
    assert len(fusers) == 16 and hasattr(gated, "position_net")  # 6 down, 1 middle, 9 up
    with pytest.raises(GligenError, match="not a GLIGEN"):
        gated_unet(base, {"foo.weight": torch.zeros(1)}, "x")


def _sample(ctx, model, positive: Conditioning, negative: Conditioning) -> torch.Tensor:
    sampler = KSampler()
    inputs = sampler.Inputs(
        model=model,
        seed=3,
        steps=2,
        cfg=4.0,
        sampler_name="euler",
        scheduler="normal",
        positive=positive,
        negative=negative,
        latent_image=Latent(samples=torch.zeros(1, 4, 8, 8)),
        denoise=1.0,
    )
    return sampler.run(ctx, inputs).LATENT.samples


def test_gligen_text_box_changes_the_sample_and_zero_gates_change_nothing(
    gligen_models: Path, tmp_path: Path
):
    ctx = make_ctx(gligen_models, ModelStore(), tmp_path)
    loaded = CheckpointLoaderSimple().run(
        ctx, CheckpointLoaderSimple.Inputs(ckpt_name="tiny-sd15.safetensors")
    )
    gligen = GLIGENLoader().run(ctx, GLIGENLoader.Inputs(gligen_name="tiny-gligen.safetensors")).GLIGEN
    text = CLIPTextEncode()
    positive = text.run(ctx, text.Inputs(text="a park", clip=loaded.CLIP)).CONDITIONING
    negative = text.run(ctx, text.Inputs(text="", clip=loaded.CLIP)).CONDITIONING
    node = GLIGENTextBoxApply()
    boxed = node.run(
        ctx,
        node.Inputs(
            conditioning_to=positive,
            clip=loaded.CLIP,
            gligen_textbox_model=gligen,
            text="a dog",
            width=32,
            height=16,
            x=16,
            y=8,
        ),
    ).CONDITIONING
    two = node.run(
        ctx, node.Inputs(conditioning_to=boxed, clip=loaded.CLIP, gligen_textbox_model=gligen, text="a ball")
    ).CONDITIONING
    assert len(two.entries[0].extras["gligen"][1]) == 2 and "gligen" not in positive.entries[0].extras
    base = _sample(ctx, loaded.MODEL, positive, negative)
    with_box = _sample(ctx, loaded.MODEL, boxed, negative)
    assert (base - with_box).abs().max() > 0.05
    # With both tanh gates at zero the gated layers add nothing: the sample equals the plain one (up to
    # float noise: the boxed prompt runs in its own UNet call, not batched with the negative).
    key = next(k for k in list(ctx.models.keys()) if "gligen" in k)
    for module in ctx.models.get(key, lambda: None).modules():
        if isinstance(module, BasicTransformerBlock):
            module.fuser.alpha_attn.data.zero_()
            module.fuser.alpha_dense.data.zero_()
    torch.testing.assert_close(_sample(ctx, loaded.MODEL, boxed, negative), base, rtol=0, atol=2e-3)


def test_gligen_loader_refuses_a_file_without_gated_layers(gligen_models: Path, tmp_path: Path):
    from safetensors.torch import save_file

    save_file({"foo.weight": torch.zeros(2)}, str(gligen_models / "gligen" / "not-gligen.safetensors"))
    ctx = make_ctx(gligen_models, ModelStore(), tmp_path)
    with pytest.raises(UserFacingError, match="not a GLIGEN"):
        GLIGENLoader().run(ctx, GLIGENLoader.Inputs(gligen_name="not-gligen.safetensors"))


REFERENCE = Path(__file__).parent / "data" / "gligen_reference" / "gligen_reference.safetensors"


@pytest.mark.slow
def test_gligen_gated_layers_match_comfyui(tiny_checkpoint_paths, tmp_path: Path):
    """Full-size random GLIGEN file: position net, box placement and three gated layers vs ComfyUI."""
    from safetensors.torch import load_file

    from nodes.diffusion import loader
    from nodes.diffusion.gligen import transformer_blocks

    path = make_gligen(tmp_path / "gligen-full.safetensors", "full", 9)
    base, _ = loader.build_component(
        "unet", "sd15", read_weights(tiny_checkpoint_paths["sd15"]), torch.float32
    )
    gated = gated_unet(base, read_weights(path), path.name)
    boxes = [
        GligenBox(torch.randn(1, 768, generator=torch.Generator().manual_seed(seed)), h, w, y, x)
        for seed, h, w, y, x in ((1, 8, 12, 2, 4), (2, 4, 6, 10, 16))
    ]
    ref = load_file(str(REFERENCE))
    blocks = transformer_blocks(gated)
    with torch.inference_mode():
        objs = gated.position_net(**box_inputs(boxes, 16, 24, 1))
        for index, width in {0: 320, 6: 1280, 15: 320}.items():
            x = torch.randn(1, 16 * 24, width, generator=torch.Generator().manual_seed(10 + index))
            out = blocks[index].fuser(x, objs)
            expected = ref[f"block_{index}"]
            assert float((out[:, :16] - expected).norm() / expected.norm()) <= 1e-5
            torch.testing.assert_close(
                torch.stack([out.sum(), out.norm()]), ref[f"block_{index}_stats"], rtol=1e-4, atol=1e-2
            )

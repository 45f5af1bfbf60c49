"""FLUX Kontext reference latents and FLUX Fill inputs against ComfyUI 0.3.64's numbers.

data/flux_kontext/comfyui_forward.safetensors holds ComfyUI's FLUX forward on the tiny random dev and
Fill files (make-checkpoint, seed 0) for inputs stored beside it, and the Fill input channels its
Flux model builds from a masked-image latent and a mask; data/flux_kontext/make_comfyui_forward.py
made it (see its docstring). Measured: relative L2 about 1.6e-7 on every forward, the concat exact.
data/comfyui_kontext_node_facts.json holds the nodes' /object_info facts (data/make_node_facts.py
--out comfyui_kontext_node_facts.json with the three Kontext node ids and DifferentialDiffusion),
checked as test_node_facts.py checks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nodes.diffusion.flux_kontext import reference_batch, reference_positions
from nodes.diffusion.flux_layout import make_flux_file
from nodes.diffusion.recipe import ComponentRecipe, Variant
from nodes.diffusion.unet_file import inspect_diffusion_model, load_diffusion_model
from nodes.sampling.conds import InpaintSource, fill_concat
from nodes.types import FLUX_LATENT, CondEntry
from tests.nodes import test_node_facts as base
from tests.nodes.test_node_facts import registry  # noqa: F401  (the fixture)

DATA = load_file(str(Path(__file__).parent / "data" / "flux_kontext" / "comfyui_forward.safetensors"))
INPUTS = {k.removeprefix("in."): v for k, v in DATA.items() if k.startswith("in.")}
MAX_REL_L2 = 1e-5
NODE_FACTS = json.loads((Path(__file__).parent / "data" / "comfyui_kontext_node_facts.json").read_text())


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("kontext")
    out = {}
    for arch in ("flux1-dev", "flux1-fill-dev"):
        path = make_flux_file(arch, "tiny", 0, root / f"{arch}.safetensors")
        family = inspect_diffusion_model(path)
        recipe = ComponentRecipe(str(path), family, "unet", variant=Variant.DIFFUSION_FILE)
        out[arch] = load_diffusion_model(recipe, torch.float32)
    return out


def _rel(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).norm() / theirs.norm())


def _call(model, x, *extra):
    args = (INPUTS["sigma"], INPUTS["context"], INPUTS["pooled"], INPUTS["guidance"])
    with torch.inference_mode():
        return model(x, *args, *extra)


@pytest.mark.parametrize("method", ["offset", "index", "uxo"])
def test_flux_reference_latents_match_comfyui_forward(tiny_models, method):
    refs = [INPUTS["ref0"], INPUTS["ref1"]]
    ours = _call(tiny_models["flux1-dev"], INPUTS["x"], refs, method)
    assert _rel(ours, DATA[f"dev.{method}"]) <= MAX_REL_L2
    # The references steer the prediction: without them it is a different velocity.
    assert _rel(ours, DATA["dev.none"]) > 1e-3


def test_flux_fill_file_is_detected_and_matches_comfyui_forward(tiny_models):
    assert tiny_models["flux1-fill-dev"].transformer.config.in_channels == 384
    ours = _call(tiny_models["flux1-fill-dev"], INPUTS["fill_x"])
    assert ours.shape == (2, 16, 10, 12)
    assert _rel(ours, DATA["fill"]) <= MAX_REL_L2


def _source(denoise_mask=None) -> InpaintSource:
    return InpaintSource(torch.zeros(2, 16, 10, 12), denoise_mask, FLUX_LATENT, kind="fill")


@pytest.mark.parametrize("case", ["image_mask", "denoise_mask", "none"])
def test_flux_fill_concat_matches_comfyui(case):
    entry = CondEntry(embeds=torch.zeros(1, 1, 8))
    source = _source()
    if case == "image_mask":
        entry = CondEntry(
            embeds=entry.embeds, concat_latent=INPUTS["concat_image"], concat_mask=INPUTS["concat_mask"]
        )
    elif case == "denoise_mask":
        source = _source(INPUTS["concat_denoise_mask"])
    ours = fill_concat(entry, source, torch.Size((2, 16, 10, 12)))
    torch.testing.assert_close(ours, DATA[f"concat.{case}"], rtol=1e-6, atol=1e-6)


def test_flux_reference_positions_lay_references_out_per_method():
    # Image 64x64 latent (32x32 tokens); two 64x64 references: index 1, the second moved below the first.
    assert reference_positions([(64, 64), (64, 64)], 32, 32, "offset") == [(1, 0, 0), (1, 32, 0)]
    assert reference_positions([(64, 64), (64, 64)], 32, 32, "index") == [(1, 0, 0), (2, 0, 0)]
    assert reference_positions([(64, 64)], 32, 32, "uxo") == [(0, 32, 32)]
    with pytest.raises(ValueError, match="reference latents method"):
        reference_positions([(8, 8)], 4, 4, "diagonal")


def test_flux_reference_batch_repeats_one_reference_over_the_batch():
    ref = torch.randn(1, 16, 4, 6)
    extras = [{"reference_latents": (ref,)}] * 3
    refs, method = reference_batch(extras, 3)
    assert method == "offset" and len(refs) == 1 and refs[0].shape == (3, 16, 4, 6)
    assert torch.equal(refs[0][2], ref[0])
    with pytest.raises(ValueError, match="different reference latents"):
        reference_batch([{"reference_latents": (ref,)}, {}], 2)


@pytest.mark.parametrize("node_id", sorted(NODE_FACTS["nodes"]))
def test_kontext_node_object_info_matches_comfyui(node_id, registry, monkeypatch):  # noqa: F811
    monkeypatch.setitem(base.FACTS, node_id, NODE_FACTS["nodes"][node_id])
    base.test_object_info_matches_comfyui(node_id, registry)


def test_kontext_image_scale_picks_the_nearest_aspect_ratio():
    from nodes.defs.flux_kontext import FluxKontextImageScale, kontext_size
    from nodes.types import Image

    assert kontext_size(200, 100) == (1456, 720)
    assert kontext_size(100, 100) == (1024, 1024)
    assert kontext_size(60, 200) == (672, 1568)
    node = FluxKontextImageScale()
    pixels = torch.rand(2, 60, 80, 3, generator=torch.Generator().manual_seed(1))
    out = node.run(None, node.Inputs(image=Image(pixels=pixels))).IMAGE.pixels  # type: ignore[arg-type]
    assert out.shape == (2, 880, 1184, 3)
    # ComfyUI 0.3.64's FluxKontextImageScale on the same pixels (its output was equal to ours exactly):
    # sha256 of the output * 255 rounded to bytes.
    digest = hashlib.sha256((out * 255).round().byte().numpy().tobytes()).hexdigest()
    assert digest == "27a0ee6265e4deee6958d5961e1d5507a50d6c0b382425640be5c4011a01443d"


def test_reference_latent_nodes_append_references_and_set_the_method():
    from nodes.defs.flux_kontext import FluxKontextMultiReferenceLatentMethod, ReferenceLatent
    from nodes.types import Conditioning, Latent

    cond = Conditioning(entries=(CondEntry(embeds=torch.zeros(1, 4, 8)),))
    first, second = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 6, 2)
    node = ReferenceLatent()
    once = node.run(None, node.Inputs(conditioning=cond, latent=Latent(samples=first))).CONDITIONING  # type: ignore[arg-type]
    twice = node.run(None, node.Inputs(conditioning=once, latent=Latent(samples=second))).CONDITIONING  # type: ignore[arg-type]
    assert twice.entries[0].extras["reference_latents"] == (first, second)
    assert node.run(None, node.Inputs(conditioning=cond)).CONDITIONING is cond  # type: ignore[arg-type]
    method = FluxKontextMultiReferenceLatentMethod()
    out = method.run(None, method.Inputs(conditioning=twice, reference_latents_method="uxo/uno"))  # type: ignore[arg-type]
    assert out.CONDITIONING.entries[0].extras["reference_latents_method"] == "uxo"


@pytest.mark.parametrize("kind", ["sd", "flux"])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_differential_diffusion_masks_match_comfyui(kind, strength):
    """Per-step masks against data/flux_kontext/comfyui_differential.safetensors (its script made them)."""
    from nodes.sampling.differential import differential_mask
    from nodes.sampling.flow import FlowModelSampling
    from nodes.sampling.model_sampling import DiscreteModelSampling
    from nodes.types import FlowSampling

    data = load_file(
        str(Path(__file__).parent / "data" / "flux_kontext" / "comfyui_differential.safetensors")
    )
    ms = (
        DiscreteModelSampling.create()
        if kind == "sd"
        else FlowModelSampling.create(FlowSampling("flux", 1.15))
    )
    sigmas = data[f"{kind}.sigmas"]
    ours = [
        differential_mask(sigmas[i : i + 1], data["mask"], sigmas, ms, strength)
        for i in range(len(sigmas) - 1)
    ]
    torch.testing.assert_close(torch.stack(ours), data[f"{kind}.{strength}"], rtol=0, atol=1e-6)


def test_flux_fill_is_detected_in_all_in_one_files(tmp_path):
    from safetensors.torch import save_file

    from nodes.diffusion.loader import inspect_checkpoint

    fill = make_flux_file("flux1-fill-dev", "tiny", 0, tmp_path / "fill.safetensors")
    parts = {f"model.diffusion_model.{k}": v for k, v in load_file(str(fill)).items()}
    save_file(parts, str(tmp_path / "all.safetensors"))
    assert inspect_checkpoint(tmp_path / "all.safetensors").family == "flux-fill"
    assert inspect_diffusion_model(fill) == "flux-fill"

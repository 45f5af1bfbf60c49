"""ControlNets: file layouts, detection, residuals, chains, sigma ranges and caching on tiny random models."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors import safe_open

from engine import Environment, ModelPaths
from engine.executor import Executor
from engine.validation import validate_prompt
from nodes.diffusion.checkpoint_io import CheckpointFormatError
from nodes.diffusion.controlnet import (
    build_control_lora,
    build_controlnet,
    detect_layout,
    inspect_control_file,
)
from nodes.diffusion.controlnet_files import (
    controlnet_layout,
    make_control_lora,
    make_controlnet,
    make_t2i_adapter,
)
from nodes.sampling.control import broadcast_hint, share_with_uncond
from nodes.types import CondArea, CondEntry, ControlApplication, ControlNet

# Facts read from published files' headers (tensor names and shapes):
# lllyasviel ControlNet v1.1 (control_v11p_sd15_canny.pth / .safetensors), original layout, 340 tensors.
PUBLISHED_SD15_LDM = {
    "control_model.input_hint_block.0.weight": (16, 3, 3, 3),
    "control_model.input_hint_block.14.weight": (320, 256, 3, 3),
    "control_model.zero_convs.0.0.weight": (320, 320, 1, 1),
    "control_model.zero_convs.11.0.weight": (1280, 1280, 1, 1),
    "control_model.middle_block_out.0.weight": (1280, 1280, 1, 1),
    "control_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
    "control_model.time_embed.0.weight": (1280, 320),
}
PUBLISHED_SD15_TENSORS, PUBLISHED_SD15_PARAMS = 340, 361_279_120
# diffusers/controlnet-canny-sdxl-1.0 (diffusion_pytorch_model.safetensors), diffusers layout.
PUBLISHED_SDXL_DIFFUSERS = {
    "controlnet_cond_embedding.conv_in.weight": (16, 3, 3, 3),
    "controlnet_cond_embedding.conv_out.weight": (320, 256, 3, 3),
    "controlnet_down_blocks.0.weight": (320, 320, 1, 1),
    "controlnet_down_blocks.8.weight": (1280, 1280, 1, 1),
    "controlnet_mid_block.weight": (1280, 1280, 1, 1),
    "add_embedding.linear_1.weight": (1280, 2816),
}


def _header_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def test_controlnet_layout_full_sd15_has_the_published_names_and_shapes():
    layout = controlnet_layout("sd15", "full")
    assert len(layout) == PUBLISHED_SD15_TENSORS
    assert sum(math.prod(s) for s in layout.values()) == PUBLISHED_SD15_PARAMS
    for key, shape in PUBLISHED_SD15_LDM.items():
        assert layout[key] == shape, key


def test_controlnet_layout_full_sdxl_in_diffusers_names_matches_the_published_file(tmp_path):
    # Only the names and shapes matter here; the tiny writer converts the same way the full one would.
    from nodes.diffusion.controlnet import controlnet_config, ldm_to_diffusers

    layout = controlnet_layout("sdxl", "full")
    meta = {k.removeprefix("control_model."): torch.empty(s, device="meta") for k, s in layout.items()}
    state = ldm_to_diffusers(meta, controlnet_config("sdxl", meta))
    for key, shape in PUBLISHED_SDXL_DIFFUSERS.items():
        assert tuple(state[key].shape) == shape, key
    assert len([k for k in state if k.startswith("controlnet_down_blocks.") and k.endswith(".weight")]) == 9


@pytest.fixture(scope="module")
def control_files(tmp_path_factory) -> dict[str, Path]:
    """Tiny random ControlNets of each family in both layouts (same values per family and seed)."""
    root = tmp_path_factory.mktemp("controlnets")
    out = {}
    for arch in ("sd15", "sd2", "sdxl"):
        for layout in ("ldm", "diffusers"):
            out[f"{arch}-{layout}"] = make_controlnet(
                arch, "tiny", 7, root / f"{arch}-{layout}.safetensors", layout
            )
    return out


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl"])
@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_controlnet_file_is_recognised_from_its_tensors(control_files, arch, layout):
    kind, found, family = inspect_control_file(control_files[f"{arch}-{layout}"])
    assert (kind, found, family) == ("controlnet", layout, arch)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_controlnet_both_layouts_give_the_same_residuals(control_files, arch):
    torch.manual_seed(0)
    a: Any = build_controlnet(control_files[f"{arch}-ldm"], "ldm", arch, torch.float32)
    b: Any = build_controlnet(control_files[f"{arch}-diffusers"], "diffusers", arch, torch.float32)
    ctx = 64 if arch == "sd15" else 128
    x, hint = torch.randn(1, 4, 8, 8), torch.rand(1, 3, 64, 64)
    kwargs = {"encoder_hidden_states": torch.randn(1, 77, ctx), "controlnet_cond": hint, "return_dict": False}
    if arch == "sdxl":
        pooled = a.config.projection_class_embeddings_input_dim - 6 * 256
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, pooled),
            "time_ids": torch.rand(1, 6) * 64,
        }
    down_a, mid_a = a(x, torch.tensor([500.0]), **kwargs)
    down_b, mid_b = b(x, torch.tensor([500.0]), **kwargs)
    assert len(down_a) == (12 if arch == "sd15" else 9)
    assert all(torch.equal(p, q) for p, q in zip(down_a, down_b, strict=True)) and torch.equal(mid_a, mid_b)
    assert float(mid_a.abs().mean()) > 0


def test_controlnet_unknown_files_are_refused_with_their_name():
    with pytest.raises(CheckpointFormatError, match="mystery.safetensors is not a ControlNet"):
        detect_layout({"foo.weight": [3, 3]}, "mystery.safetensors")
    with pytest.raises(CheckpointFormatError, match="FLUX"):
        detect_layout({"controlnet_blocks.0.weight": [3, 3]}, "flux_cn.safetensors")


def test_controlnet_hint_broadcast_follows_each_batched_entry():
    hint = torch.arange(2.0).view(2, 1, 1, 1)
    # Two entries (cond, uncond) of 2 items each: the 2 hints repeat per entry.
    assert broadcast_hint(hint, 4, 2).flatten().tolist() == [0, 1, 0, 1]
    # A single hint broadcasts on its own.
    assert broadcast_hint(hint[:1], 4, 2).shape[0] == 1


def _entry(area: CondArea | None = None, control: ControlApplication | None = None) -> CondEntry:
    return CondEntry(embeds=torch.zeros(1, 77, 8), area=area, control=control)


def test_controlnet_apply_old_reaches_the_negative_side_only_without_controls_there():
    net = ControlNet("x", "controlnet", "ldm", "sd15")
    old = ControlApplication(net, torch.zeros(1, 3, 8, 8), apply_to_uncond=True)
    advanced = ControlApplication(net, torch.zeros(1, 3, 8, 8))
    negative = [_entry(), _entry(area=CondArea(8, 8, 0, 0))]
    shared = share_with_uncond([_entry(control=old)], negative)
    assert shared[0].control is old and shared[1].control is None
    assert share_with_uncond([_entry(control=advanced)], negative)[0].control is None
    already = [_entry(control=advanced)]
    assert share_with_uncond([_entry(control=old)], already)[0].control is advanced


# ---- whole workflows on the tiny SD1.5 checkpoint ----------------------------------------------------

PROMPT = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd15.safetensors"}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red cube", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 3,
            "steps": 4,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["7", 0],
            "latent_image": ["5", 0],
        },
    },
    "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
}


def _with_control(
    prompt: dict,
    name: str = "cn-ldm.safetensors",
    strength: float = 1.0,
    start: float = 0.0,
    end: float = 1.0,
) -> dict:
    out = json.loads(json.dumps(prompt))
    out["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}
    out["21"] = {"class_type": "LoadImage", "inputs": {"image": "hint.png"}}
    out["22"] = {
        "class_type": "Canny",
        "inputs": {"image": ["21", 0], "low_threshold": 0.2, "high_threshold": 0.5},
    }
    out["23"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["6", 0],
            "negative": ["7", 0],
            "control_net": ["20", 0],
            "image": ["22", 0],
            "strength": strength,
            "start_percent": start,
            "end_percent": end,
        },
    }
    out["3"]["inputs"]["positive"] = ["23", 0]
    out["3"]["inputs"]["negative"] = ["23", 1]
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_models_dir, control_files):
    """A models root with the tiny checkpoints and ControlNets, and an input folder holding a hint picture."""
    from nodes.pack import build_registry

    root = tmp_path_factory.mktemp("cn_models")
    (root / "checkpoints").symlink_to(tiny_models_dir / "checkpoints", target_is_directory=True)
    (root / "controlnet").mkdir()
    shutil.copyfile(control_files["sd15-ldm"], root / "controlnet" / "cn-ldm.safetensors")
    shutil.copyfile(control_files["sd15-diffusers"], root / "controlnet" / "cn-diffusers.safetensors")
    make_controlnet("sd15", "tiny", 8, root / "controlnet" / "cn-other.safetensors")
    make_control_lora("sdxl", "tiny", 9, root / "controlnet" / "control-lora-xl.safetensors")
    make_controlnet("sdxl", "tiny", 12, root / "controlnet" / "union-xl.safetensors", "union")
    make_t2i_adapter("sd15", "tiny", 10, root / "controlnet" / "t2i-sd15.safetensors")
    make_t2i_adapter("sdxl", "tiny", 11, root / "controlnet" / "t2i-xl.safetensors")
    input_dir = tmp_path_factory.mktemp("cn_input")
    picture = np.zeros((80, 80, 3), dtype=np.uint8)
    picture[20:60, 10:50] = (250, 200, 30)
    PILImage.fromarray(picture).save(input_dir / "hint.png")
    return build_registry(ModelPaths(root), input_dir), root, input_dir


@pytest.fixture
def run(workspace, tmp_path, model_store):
    registry, root, input_dir = workspace
    env = Environment(
        tmp_path / "out", tmp_path / "tmp", input_dir, models=model_store, model_paths=ModelPaths(root)
    )
    executor = Executor(registry, env)

    def go(prompt: dict):
        checked = validate_prompt(prompt, registry, env=env)
        assert checked.ok, checked.node_errors or checked.error
        result = executor.execute(checked.prompt, prompt_id="t", outputs=checked.outputs)
        assert result.status == "success", result.error and result.error.data()
        return result

    return go


def _latent(result) -> torch.Tensor:
    return result.node_outputs["3"].LATENT.samples


@pytest.mark.slow
def test_controlnet_added_to_a_graph_reruns_only_what_depends_on_it(run):
    plain = run(PROMPT)
    steered = run(_with_control(PROMPT))
    assert set(steered.executed) == {"20", "21", "22", "23", "3", "8", "9"}
    assert not torch.allclose(_latent(plain), _latent(steered))
    # The same graph again runs nothing; a new strength re-runs the apply node and what follows only.
    assert run(_with_control(PROMPT)).executed == []
    assert set(run(_with_control(PROMPT, strength=0.5)).executed) == {"23", "3", "8", "9"}


@pytest.mark.slow
def test_controlnet_outside_its_range_or_at_zero_strength_changes_nothing(run):
    plain = _latent(run(PROMPT))
    assert torch.equal(_latent(run(_with_control(PROMPT, strength=0.0))), plain)
    # Percent 1.0 maps to sigma 0: the range holds no step of the schedule.
    assert torch.equal(_latent(run(_with_control(PROMPT, start=1.0, end=1.0))), plain)
    # Active on the first half only: differs from both no control and control throughout.
    half = _latent(run(_with_control(PROMPT, end=0.5)))
    full = _latent(run(_with_control(PROMPT)))
    assert not torch.equal(half, plain) and not torch.equal(half, full)


@pytest.mark.slow
def test_controlnet_diffusers_file_steers_like_the_original_layout(run):
    a = _latent(run(_with_control(PROMPT, "cn-ldm.safetensors")))
    b = _latent(run(_with_control(PROMPT, "cn-diffusers.safetensors")))
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_controlnet_chain_sums_both_and_the_old_apply_node_runs(run):
    one = _with_control(PROMPT)
    two = json.loads(json.dumps(one))
    two["30"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "cn-other.safetensors"}}
    two["31"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["23", 0],
            "negative": ["23", 1],
            "control_net": ["30", 0],
            "image": ["21", 0],
            "strength": 0.7,
            "start_percent": 0.0,
            "end_percent": 1.0,
        },
    }
    two["3"]["inputs"]["positive"] = ["31", 0]
    two["3"]["inputs"]["negative"] = ["31", 1]
    single = _latent(run(one))
    chained = run(two)
    assert set(chained.executed) == {"30", "31", "3", "8", "9"}
    assert not torch.allclose(_latent(chained), single)
    old = json.loads(json.dumps(PROMPT))
    old["20"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "cn-ldm.safetensors"}}
    old["21"] = {"class_type": "LoadImage", "inputs": {"image": "hint.png"}}
    old["23"] = {
        "class_type": "ControlNetApply",
        "inputs": {"conditioning": ["6", 0], "control_net": ["20", 0], "image": ["21", 0], "strength": 0.9},
    }
    old["3"]["inputs"]["positive"] = ["23", 0]
    assert torch.isfinite(_latent(run(old))).all()


def test_controlnet_loader_refuses_a_checkpoint_with_the_file_name(tiny_sd15_path):
    with pytest.raises(CheckpointFormatError, match=f"{tiny_sd15_path.name} is not a ControlNet"):
        inspect_control_file(tiny_sd15_path)


def test_control_lora_adds_its_pairs_to_the_base_unet_and_keeps_its_own_tensors(tmp_path, tiny_sdxl_path):
    from safetensors.torch import load_file

    from nodes.diffusion.checkpoint_io import read_weights
    from nodes.diffusion.loader import build_unet

    path = make_control_lora("sdxl", "tiny", 3, tmp_path / "cl.safetensors")
    assert inspect_control_file(path) == ("control_lora", "control_lora", "")
    sd = read_weights(
        tiny_sdxl_path, lambda k: k.startswith("model.diffusion_model."), lambda _k: torch.float32
    )
    unet, _ = build_unet("sdxl", sd, torch.float32)
    ours = build_control_lora(path, unet, torch.float32).state_dict()
    raw = {k: v.float() for k, v in load_file(str(path)).items()}
    base = unet.state_dict()
    # input_blocks.4 is the first resnet of the second level (diffusers down_blocks.1.resnets.0).
    up, down = raw["input_blocks.4.0.in_layers.2.up"], raw["input_blocks.4.0.in_layers.2.down"]
    conv1 = base["down_blocks.1.resnets.0.conv1.weight"]
    expected = conv1 + (up.flatten(1) @ down.flatten(1)).reshape(conv1.shape)
    assert torch.equal(ours["down_blocks.1.resnets.0.conv1.weight"], expected)
    assert torch.equal(
        ours["down_blocks.1.resnets.0.norm1.weight"], raw["input_blocks.4.0.in_layers.0.weight"]
    )
    assert torch.equal(ours["controlnet_cond_embedding.conv_in.weight"], raw["input_hint_block.0.weight"])
    assert torch.equal(ours["controlnet_down_blocks.0.weight"], raw["zero_convs.0.0.weight"])


@pytest.mark.slow
def test_control_lora_steers_an_sdxl_workflow(run):
    prompt = json.loads(json.dumps(PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "tiny-sdxl.safetensors"
    plain = _latent(run(prompt))
    steered = _latent(run(_with_control(prompt, "control-lora-xl.safetensors")))
    assert torch.isfinite(steered).all() and not torch.allclose(plain, steered)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("controlnet", ("controlnet", "ldm", "sd15")),
        ("controlnet-diffusers", ("controlnet", "diffusers", "sd15")),
        ("controlnet-union", ("controlnet", "union", "sd15")),
        ("control-lora", ("control_lora", "control_lora", "")),
        ("t2i-adapter", ("t2i_adapter", "t2i", "")),
    ],
)
def test_make_checkpoint_cli_writes_each_control_kind(tmp_path, kind, expected):
    from diffgraph.cli import main

    out = tmp_path / f"{kind}.safetensors"
    assert main(["make-checkpoint", "--kind", kind, "--arch", "sd15", "--seed", "1", str(out)]) == 0
    assert inspect_control_file(out) == expected


def test_diff_controlnet_adds_the_base_unet_back(tmp_path, tiny_sd15_path):
    from safetensors.torch import save_file

    from nodes.diffusion.checkpoint_io import read_weights
    from nodes.diffusion.controlnet_files import controlnet_values
    from nodes.diffusion.loader import build_unet

    values = {k: v.float() for k, v in controlnet_values("sd15", "tiny", 5).items()}
    full = tmp_path / "full.safetensors"
    save_file(values, str(full))
    ckpt = read_weights(
        tiny_sd15_path, lambda k: k.startswith("model.diffusion_model."), lambda _k: torch.float32
    )
    unet, _ = build_unet("sd15", ckpt, torch.float32)
    diff = {"difference": torch.zeros(1)}
    for key, value in values.items():
        base = ckpt.get("model.diffusion_model." + key.removeprefix("control_model."))
        diff[key] = value - base if base is not None else value
    diff_path = tmp_path / "diff.safetensors"
    save_file(diff, str(diff_path))
    assert inspect_control_file(diff_path) == ("controlnet", "ldm_difference", "sd15")
    with pytest.raises(CheckpointFormatError, match="DiffControlNetLoader"):
        build_controlnet(diff_path, "ldm_difference", "sd15", torch.float32)
    restored = build_controlnet(diff_path, "ldm_difference", "sd15", torch.float32, unet).state_dict()
    expected = build_controlnet(full, "ldm", "sd15", torch.float32).state_dict()
    assert restored.keys() == expected.keys()
    assert all(torch.allclose(restored[k], expected[k], atol=1e-6) for k in expected)


# xinsir/controlnet-union-sdxl-1.0 (diffusion_pytorch_model_promax.safetensors): the union parts.
PUBLISHED_UNION_SDXL = {
    "task_embedding": (8, 320),
    "transformer_layes.0.attn.in_proj_weight": (960, 320),
    "spatial_ch_projs.weight": (320, 320),
    "control_add_embedding.linear_1.weight": (1280, 2048),
}


def test_union_layout_has_the_published_names_and_shapes():
    from nodes.diffusion.controlnet_files import union_layout

    layout = union_layout(320, 1280)
    for key, shape in PUBLISHED_UNION_SDXL.items():
        assert layout[key] == shape, key


def _with_union(prompt: dict, task: str) -> dict:
    out = _with_control(prompt, "union-xl.safetensors")
    out["24"] = {"class_type": "SetUnionControlNetType", "inputs": {"control_net": ["20", 0], "type": task}}
    out["23"]["inputs"]["control_net"] = ["24", 0]
    return out


@pytest.mark.slow
def test_union_controlnet_task_type_changes_the_result(run):
    prompt = json.loads(json.dumps(PROMPT))
    prompt["4"]["inputs"]["ckpt_name"] = "tiny-sdxl.safetensors"
    plain = _latent(run(prompt))
    auto = _latent(run(_with_union(prompt, "auto")))
    canny = run(_with_union(prompt, "canny/lineart/anime_lineart/mlsd"))
    assert set(canny.executed) == {"24", "23", "3", "8", "9"}
    assert not torch.allclose(plain, auto) and not torch.allclose(auto, _latent(canny))

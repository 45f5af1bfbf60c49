"""`diffgraph make-checkpoint --kind diffusers`: random FLUX.1 and SD3.5 pipeline folders as published on the hub.

A folder holds exactly the values of the single files the same arch, size and seed give (the FLUX
diffusion model, flux-ae, clip_l and t5xxl files; the SD3 all-in-one file with its text encoders),
converted to diffusers' names: `transformer/` sharded with its index, `text_encoder*/` in transformers'
layout (T5 sharded too), `vae/` as AutoencoderKL, `scheduler/` and model_index.json. So a workflow run on
the folder and on the files must give the same latents. Tokenizer folders are left out: diffgraph
tokenizes with its shipped vocabularies and never reads them.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders import single_file_utils as sfu
from safetensors.torch import save_file
from transformers import CLIPTextConfig, T5Config

from nodes.diffusion import families, flux, sd3
from nodes.diffusion.flux_layout import COMPONENTS, flux_ae_layout, flux_layout
from nodes.diffusion.make_text_encoder import text_encoder_shapes
from nodes.diffusion.mmdit_layout import SD3_ARCHS, sd3_checkpoint_layout
from nodes.diffusion.random_weights import random_state_dict
from nodes.diffusion.t5 import t5_config
from nodes.diffusion.text_encoders import encoder_spec

FOLDER_ARCHS = ("flux1-dev", "flux1-schnell", "flux1-fill-dev", *SD3_ARCHS)
_PIPELINES = {
    "flux1-dev": "FluxPipeline",
    "flux1-schnell": "FluxPipeline",
    "flux1-fill-dev": "FluxFillPipeline",
}
# What the published pipelines' schedulers say (diffgraph samples by the family defaults and nodes instead).
_FLUX_SCHEDULER = {"base_shift": 0.5, "max_shift": 1.15, "shift": 3.0, "use_dynamic_shifting": True}
_SD3_SCHEDULER = {"shift": 3.0, "use_dynamic_shifting": False}
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def save_sharded(tensors: dict[str, torch.Tensor], folder: Path, stem: str, shards: int) -> None:
    """Write tensors as `<stem>.safetensors`, or as N shards plus `<stem>.safetensors.index.json`."""
    folder.mkdir(parents=True, exist_ok=True)
    if shards <= 1:
        save_file(tensors, str(folder / f"{stem}.safetensors"), metadata={"format": "pt"})
        return
    keys = sorted(tensors)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    per_shard = math.ceil(total / shards)
    groups: list[list[str]] = [[]]
    filled = 0
    for key in keys:
        size = tensors[key].numel() * tensors[key].element_size()
        if groups[-1] and filled + size > per_shard and len(groups) < shards:
            groups.append([])
            filled = 0
        groups[-1].append(key)
        filled += size
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        name = f"{stem}-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in group}, str(folder / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(group, name))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(index, indent=2))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def _write_text_encoder(
    folder: Path, kind: str, size: str, seed: int, dtype: torch.dtype, shards: int
) -> None:
    """One text encoder with the values of its standalone file (make_text_encoder) and a transformers config."""
    shapes = text_encoder_shapes(kind, size)
    tensors = random_state_dict(seed, kind, {k: (list(v), dtype) for k, v in shapes.items()})
    if kind == "t5xxl":
        cfg = T5Config(**t5_config({k: list(v) for k, v in shapes.items()})).to_dict()
        cfg["architectures"] = ["T5EncoderModel"]
    else:
        spec = encoder_spec("sd3", kind, "hf")  # type: ignore[arg-type]
        assert spec is not None  # CLIP kinds always have rules
        args = families.text_config(spec, tensors)
        if "text_projection.weight" in tensors:
            args["projection_dim"] = tensors["text_projection.weight"].shape[0]
        cfg = CLIPTextConfig(**args).to_dict()
        cfg["architectures"] = ["CLIPTextModelWithProjection" if kind == "clip_g" else "CLIPTextModel"]
    cfg["torch_dtype"] = str(dtype).removeprefix("torch.")
    save_sharded(tensors, folder, "model", shards)
    _write_json(folder / "config.json", cfg)


def _write_vae(folder: Path, cfg: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    save_sharded(state, folder, "diffusion_pytorch_model", 1)
    _write_json(folder / "config.json", {"_class_name": "AutoencoderKL", **cfg})


def _flux_parts(arch: str, size: str, seed: int, out: Path, shards: int) -> None:
    layout = {k: (list(s), torch.bfloat16) for k, s in flux_layout(arch, size).items()}
    bfl = random_state_dict(seed, COMPONENTS[arch], layout)
    cfg = flux.flux_config({k: list(v.shape) for k, v in bfl.items()}, "")
    state = flux.bfl_to_diffusers(bfl, "", cfg["num_attention_heads"] * flux.HEAD_DIM)
    save_sharded(state, out / "transformer", "diffusion_pytorch_model", shards)
    _write_json(out / "transformer" / "config.json", cfg)
    ae_layout = {k: (list(s), torch.float32) for k, s in flux_ae_layout(size).items()}
    ae = random_state_dict(seed, COMPONENTS["flux-ae"], ae_layout)
    vae_cfg = families.vae_config("flux", ae, "")
    _write_vae(out / "vae", vae_cfg, sfu.convert_ldm_vae_checkpoint(ae, vae_cfg))
    text_size = "tiny" if size == "tiny" else "full"
    _write_text_encoder(out / "text_encoder", "clip_l", text_size, seed, torch.float16, 1)
    _write_text_encoder(out / "text_encoder_2", "t5xxl", text_size, seed, torch.float16, shards)


def _sd3_parts(arch: str, size: str, seed: int, out: Path, shards: int, dtype: torch.dtype) -> None:
    component = SD3_ARCHS[arch][1]
    layout = {k: (list(s), dtype) for k, s in sd3_checkpoint_layout(arch, size).items()}
    sd = random_state_dict(seed, component, layout)
    cfg = {"_class_name": "SD3Transformer2DModel", **sd3.transformer_config(sd)}
    cfg["dual_attention_layers"] = list(cfg["dual_attention_layers"])
    save_sharded(sd3.convert_transformer(sd), out / "transformer", "diffusion_pytorch_model", shards)
    _write_json(out / "transformer" / "config.json", cfg)
    vae_cfg = sd3.vae_config(sd)
    _write_vae(out / "vae", vae_cfg, sd3.convert_vae(sd, vae_cfg))
    text_size = "tiny" if size == "tiny" else "full"
    for sub, kind in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g"), ("text_encoder_3", "t5xxl")):
        _write_text_encoder(out / sub, kind, text_size, seed, dtype, shards if kind == "t5xxl" else 1)


def make_flow_folder(
    arch: str, size: str, seed: int, out_path: str | Path, dtype: str = "fp16", shards: int = 2
) -> Path:
    """Write a random FLUX or SD3 pipeline folder (see the module docstring); returns its path.

    FLUX parts keep their single files' dtypes (bf16 model, fp32 autoencoder, `fp16` encoders); SD3
    parts are all written in `dtype`, as the all-in-one SD3 file is.
    """
    if arch not in FOLDER_ARCHS:
        raise ValueError(f"no diffusers folder for {arch!r}; one of {', '.join(FOLDER_ARCHS)}")
    out = Path(out_path)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    is_flux = arch in _PIPELINES
    if is_flux:
        _flux_parts(arch, size, seed, tmp, shards)
    else:
        _sd3_parts(arch, size, seed, tmp, shards, _DTYPES[dtype])
    index: dict[str, Any] = {
        "_class_name": _PIPELINES.get(arch, "StableDiffusion3Pipeline"),
        "_diffusers_version": "0.30.0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel" if is_flux else "CLIPTextModelWithProjection"],
        "text_encoder_2": ["transformers", "T5EncoderModel" if is_flux else "CLIPTextModelWithProjection"],
        "transformer": ["diffusers", "FluxTransformer2DModel" if is_flux else "SD3Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if not is_flux:
        index["text_encoder_3"] = ["transformers", "T5EncoderModel"]
    _write_json(tmp / "model_index.json", index)
    scheduler = {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000}
    scheduler.update(_FLUX_SCHEDULER if is_flux else _SD3_SCHEDULER)
    _write_json(tmp / "scheduler" / "scheduler_config.json", scheduler)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out

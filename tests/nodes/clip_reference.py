"""Test oracle: transformers CLIP text models built from a checkpoint without diffgraph's loader.

The weights go through transformers' own `from_pretrained` (HF-layout keys are written as they are in
the file; open_clip keys are renamed here by hand, following the published open_clip -> HF mapping),
and configs come from tensor shapes plus CLIP's fixed conventions (64-wide heads; quick_gelu for
OpenAI CLIP-L, gelu for OpenCLIP). Nothing from nodes.diffusion is used, so a conversion bug there
cannot hide in both sides of a comparison.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

START, END = 49406, 49407


def _open_clip_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {
        "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
        "text_model.final_layer_norm.weight": sd["ln_final.weight"],
        "text_model.final_layer_norm.bias": sd["ln_final.bias"],
    }
    if "text_projection" in sd:
        out["text_projection.weight"] = sd["text_projection"].t().contiguous()
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}
    names["attn.out_proj"] = "self_attn.out_proj"
    for key, value in sd.items():
        if not key.startswith("transformer.resblocks."):
            continue
        index, rest = key[len("transformer.resblocks.") :].split(".", 1)
        hf = f"text_model.encoder.layers.{index}."
        if rest.startswith("attn.in_proj_"):
            kind = rest.rsplit("_", 1)[1]  # weight or bias
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0), strict=True):
                out[f"{hf}self_attn.{name}.{kind}"] = part.contiguous()
            continue
        module, kind = rest.rsplit(".", 1)
        out[f"{hf}{names[module]}.{kind}"] = value
    return out


def reference_clip(
    sd: dict[str, torch.Tensor], prefix: str, open_clip: bool
) -> CLIPTextModel | CLIPTextModelWithProjection:
    """A float32 transformers CLIP text model holding the checkpoint's encoder under `prefix`."""
    raw = {
        k[len(prefix) :]: v.float() if v.is_floating_point() else v
        for k, v in sd.items()
        if k.startswith(prefix)
    }
    raw.pop("logit_scale", None)
    state = _open_clip_to_hf(raw) if open_clip else raw
    state.pop("text_model.embeddings.position_ids", None)
    width = state["text_model.embeddings.token_embedding.weight"].shape[1]
    layers = len({k.split(".")[3] for k in state if k.startswith("text_model.encoder.layers.")})
    with_projection = "text_projection.weight" in state
    config = CLIPTextConfig(
        vocab_size=state["text_model.embeddings.token_embedding.weight"].shape[0],
        hidden_size=width,
        intermediate_size=state["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=max(1, width // 64),
        max_position_embeddings=state["text_model.embeddings.position_embedding.weight"].shape[0],
        hidden_act="gelu" if open_clip else "quick_gelu",
        projection_dim=state["text_projection.weight"].shape[0] if with_projection else width,
        bos_token_id=START,
        eos_token_id=END,
    )
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    with tempfile.TemporaryDirectory() as tmp:
        config.save_pretrained(tmp)
        save_file(state, str(Path(tmp) / "model.safetensors"))
        model, info = cls.from_pretrained(tmp, local_files_only=True, output_loading_info=True)
    bad = [k for k in info["missing_keys"] if "position_ids" not in k]
    assert not bad and not info["unexpected_keys"], info
    return model.eval()


def padded_ids(ids: list[int], pad: int) -> torch.Tensor:
    """One 77-token row: the ids (with start/end) followed by `pad`."""
    return torch.tensor([ids + [pad] * (77 - len(ids))])


def reference_hidden(model, ids: torch.Tensor, layer: int | None, layer_norm: bool) -> torch.Tensor:
    """ComfyUI's layer choice on a transformers CLIP: last_hidden_state, or layer `layer` (+ final LN)."""
    with torch.inference_mode():
        out = model(input_ids=ids, output_hidden_states=True)
        if layer is None:
            return out.last_hidden_state
        hidden = out.hidden_states[layer]
        if layer_norm:
            final = (
                model.text_model.final_layer_norm if hasattr(model, "text_model") else model.final_layer_norm
            )
            hidden = final(hidden)
        return hidden

"""T5-XXL text encoder: transformers' T5EncoderModel from a single file, and the shipped T5 tokenizer.

Files in the published layout hold `shared.weight` and `encoder.block.N.*` (transformers' own names);
sizes are read from the tensors, so a tiny test file and the 4.7 GB fp8 file load alike. Weights stay
in their stored dtype (fp8 stays fp8) and each block is widened to the compute dtype while it runs
(see stored_weights). The tokenizer is T5 v1.1's SentencePiece vocabulary shipped in vocab/.
"""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import torch
from tokenizers import Tokenizer
from transformers import T5Config, T5EncoderModel

from nodes.diffusion.stored_weights import storage_dtype, widen_while_running

T5_END = 1
T5_PAD = 0
DETECT_KEY = "encoder.block.0.layer.1.DenseReluDense.wi_1.weight"
# The encoder's own name for the shared (tied) token embedding, which transformers may save instead.
EMBED_KEY = "encoder.embed_tokens.weight"


@cache
def t5_tokenizer() -> Tokenizer:
    """The T5 v1.1 SentencePiece (Unigram) tokenizer; it appends `</s>` (id 1) to each sequence."""
    raw = resources.files("nodes.diffusion").joinpath("vocab", "t5_tokenizer.json.gz").read_bytes()
    return Tokenizer.from_str(gzip.decompress(raw).decode("utf-8"))


def t5_encode_words(text: str) -> list[int]:
    """Token ids of a text without the trailing `</s>`."""
    return t5_tokenizer().encode(text).ids[:-1]


def _count_blocks(keys: list[str]) -> int:
    rx = re.compile(r"encoder\.block\.(\d+)\.")
    return len({m.group(1) for k in keys if (m := rx.match(k))})


def t5_config(shapes: dict[str, list[int]]) -> dict[str, Any]:
    """T5Config arguments: the shipped T5-XXL config with sizes read from the tensor shapes."""
    cfg = json.loads(resources.files("nodes.diffusion").joinpath("configs", "t5xxl.json").read_text())
    vocab, d_model = shapes["shared.weight"]
    inner = shapes["encoder.block.0.layer.0.SelfAttention.q.weight"][0]
    buckets, heads = shapes["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    cfg.update(
        vocab_size=vocab,
        d_model=d_model,
        d_ff=shapes[DETECT_KEY][0],
        num_heads=heads,
        d_kv=inner // heads,
        num_layers=_count_blocks(list(shapes)),
        relative_attention_num_buckets=buckets,
    )
    return cfg


def build_t5(sd: dict[str, torch.Tensor], compute_dtype: torch.dtype = torch.float32) -> T5EncoderModel:
    """A T5EncoderModel holding the file's tensors in their storage dtype, widened block by block."""
    # "Scaled fp8" files (ComfyUI's t5xxl_fp8_e4m3fn_scaled) keep one float32 scale per linear weight.
    scale_of = {
        k[: -len(".scale_weight")] + ".weight": v for k, v in sd.items() if k.endswith(".scale_weight")
    }
    sd = {
        k: v for k, v in sd.items() if not k.endswith((".scale_weight", ".scale_input")) and k != "scaled_fp8"
    }
    if EMBED_KEY in sd:
        sd.setdefault("shared.weight", sd.pop(EMBED_KEY))
    cfg = T5Config(**t5_config({k: list(v.shape) for k, v in sd.items()}))
    with torch.device("meta"):
        model = T5EncoderModel(cfg)
    state = {k: v.to(storage_dtype(v.dtype)) for k, v in sd.items() if v.is_floating_point()}
    # The encoder's embedding is the shared one (tied in the model, stored once in the file).
    state.setdefault("encoder.embed_tokens.weight", state["shared.weight"])
    result = model.load_state_dict(state, strict=False, assign=True)
    leftover = [n for n, t in model.named_parameters() if t.is_meta]
    if leftover or result.unexpected_keys:
        raise ValueError(
            f"T5 tensors do not fit T5EncoderModel: missing {leftover[:3]}, unexpected {result.unexpected_keys[:3]}"
        )
    model.encoder.embed_tokens = model.shared
    params = dict(model.named_parameters())
    scales = {id(params[k]): v.float().reshape(()) for k, v in scale_of.items() if k in params}
    if len(scales) != len(scale_of):
        raise ValueError(f"T5 scales without a weight: {sorted(set(scale_of) - set(params))[:3]}")
    modules = [model.shared, *model.encoder.block, model.encoder.final_layer_norm]
    widen_while_running(modules, compute_dtype, scales)
    return model.eval().requires_grad_(False)


def run_t5(
    model: T5EncoderModel,
    ids: torch.Tensor,
    layer: int | None = None,
    spots: list[tuple[int, int, torch.Tensor]] | None = None,
) -> torch.Tensor:
    """Hidden states [N, L, D] float32 for token ids [N, L], without attention mask (as ComfyUI's FLUX/SD3).

    `spots` (row, position, vector) overwrite token embeddings (textual-inversion vectors).
    `layer` (negative, from CLIPSetLastLayer) picks an inner block's output, passed through the final
    norm as ComfyUI does; out-of-range values mean the last layer.
    """
    n_blocks = len(model.encoder.block)
    wanted = None if layer is None or abs(layer) > n_blocks or layer == -1 else n_blocks + layer
    ids = ids.to(model.shared.weight.device)
    with torch.inference_mode():
        embeds = model.shared(ids)
        for r, p, vec in spots or []:
            embeds[r, p] = vec.to(embeds.device, embeds.dtype)
        if model.shared.weight.dtype.itemsize == 1:
            embeds = torch.nan_to_num(embeds)  # fp8 files may hold NaN codes; ComfyUI zeroes them here
        out = model(inputs_embeds=embeds, output_hidden_states=wanted is not None)
        if wanted is None:
            return out.last_hidden_state.float().cpu()
        hidden = out.hidden_states[wanted + 1]
        return model.encoder.final_layer_norm(hidden).float().cpu()

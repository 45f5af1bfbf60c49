"""USO's style projector: model-patch file detection, the projector network and its FLUX token hook.

Facts followed (ComfyUI 0.3.64's ModelPatchLoader and USOStyleReference, reimplemented): a USO
projector file holds `feature_embedder.{low,mid,high}_{embedding_linear.0,layer_norm,projection}.*`.
Each of its three branches takes one SigLIP hidden state [B, T, D] (low: the 20th layer from the end,
mid: the 11th from the end, high: the penultimate), mixes the T tokens down to S style tokens with a
Linear + SiLU over the token axis, layer-norms them and projects them to the FLUX width H. The three
results, high then mid then low, are 3*S style tokens that go before the prompt's tokens after FLUX's
text input layer, with position ids of zero. The published file is 729 tokens (384 px SigLIP), 64
style tokens, 1152 wide, into 3072; other sizes (test files) are read from the tensors.

ComfyUI computes the projector in the file's weight dtype (inputs cast to it) and casts the result to
the FLUX compute dtype; the same happens here.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nodes.diffusion.checkpoint_io import CheckpointFormatError, read_weights

USO_PREFIX = "feature_embedder."
USO_MARK = USO_PREFIX + "mid_layer_norm.bias"
# The Qwen-Image DiffSynth ControlNet patches ComfyUI's loader also reads (not supported here).
DIFFSYNTH_MARK = "controlnet_blocks.0.y_rms.weight"
BRANCHES = ("high", "mid", "low")
# Which SigLIP hidden state feeds each branch, counted from the end of all layer outputs.
BRANCH_LAYERS = {"low": -20, "mid": -11, "high": -2}
LAYER_NORM_EPS = 1e-5


def _expected_keys() -> list[str]:
    """Every tensor name a USO projector file holds (without the prefix)."""
    keys = []
    for b in BRANCHES:
        for part in ("embedding_linear.0", "layer_norm", "projection"):
            keys += [f"{b}_{part}.weight", f"{b}_{part}.bias"]
    return keys


def patch_kind(keys: list[str], where: str) -> str:
    """The kind of model patch a file holds ("uso_projector"), or a refusal naming what was expected."""
    names = set(keys)
    if USO_MARK in names:
        return "uso_projector"
    if DIFFSYNTH_MARK in names:
        raise CheckpointFormatError(
            f"{where}: a Qwen-Image DiffSynth ControlNet patch; Qwen-Image models are not supported yet"
        )
    raise CheckpointFormatError(
        f"{where}: not a known model patch; expected a USO style projector ({USO_MARK!r} and the other "
        "feature_embedder.{low,mid,high}_* tensors)"
    )


@dataclass(frozen=True)
class UsoSizes:
    """Sizes of a projector: SigLIP tokens T and width D in, S style tokens per branch, FLUX width H out."""

    tokens: int
    style_tokens: int
    width: int
    hidden: int


class UsoProjector(torch.nn.Module):
    """Three SigLIP hidden states [3, B, T, D] (low, mid, high) -> style tokens [B, 3*S, H]."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        super().__init__()
        self.weights = torch.nn.ParameterDict(
            {k.replace(".", "_"): torch.nn.Parameter(v, requires_grad=False) for k, v in tensors.items()}
        )
        # The dtype most tensors have: ComfyUI computes in it.
        self.dtype = Counter(v.dtype for v in tensors.values()).most_common(1)[0][0]
        weight = tensors["high_embedding_linear.0.weight"]
        self.sizes = UsoSizes(
            tokens=weight.shape[1],
            style_tokens=weight.shape[0],
            width=tensors["high_layer_norm.weight"].shape[0],
            hidden=tensors["high_projection.weight"].shape[0],
        )

    def _w(self, name: str) -> torch.Tensor:
        return self.weights[name.replace(".", "_")]

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """Style tokens from the stacked (low, mid, high) hidden states, in the file's dtype."""
        dt = self.dtype
        parts = []
        # `states` is stacked low, mid, high; the tokens come out high, mid, low.
        for branch, index in zip(BRANCHES, (2, 1, 0), strict=True):
            hidden = states[index].to(dt)
            mixed = F.silu(
                F.linear(
                    hidden.transpose(1, 2),
                    self._w(f"{branch}_embedding_linear.0.weight"),
                    self._w(f"{branch}_embedding_linear.0.bias"),
                )
            ).transpose(1, 2)
            normed = F.layer_norm(
                mixed,
                (mixed.shape[-1],),
                self._w(f"{branch}_layer_norm.weight"),
                self._w(f"{branch}_layer_norm.bias"),
                LAYER_NORM_EPS,
            )
            parts.append(
                F.linear(normed, self._w(f"{branch}_projection.weight"), self._w(f"{branch}_projection.bias"))
            )
        return torch.cat(parts, dim=1)


def build_uso_projector(sd: dict[str, torch.Tensor], where: str) -> UsoProjector:
    """The projector from a file's tensors (prefix stripped); refuses missing or extra tensors."""
    tensors = {k[len(USO_PREFIX) :]: v for k, v in sd.items() if k.startswith(USO_PREFIX)}
    expected = set(_expected_keys())
    missing, extra = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or extra:
        raise CheckpointFormatError(f"{where}: USO projector tensors missing {missing}, unexpected {extra}")
    projector = UsoProjector(tensors)
    s = projector.sizes
    for branch in BRANCHES:
        shapes = {
            "embedding_linear.0.weight": (s.style_tokens, s.tokens),
            "layer_norm.weight": (s.width,),
            "projection.weight": (s.hidden, s.width),
        }
        for part, shape in shapes.items():
            got = tuple(tensors[f"{branch}_{part}"].shape)
            if got != shape:
                raise CheckpointFormatError(
                    f"{where}: {USO_PREFIX}{branch}_{part} is {got}, expected {shape}"
                )
    return projector.eval()


def branch_states(all_hidden: torch.Tensor, where: str) -> torch.Tensor:
    """[3, B, T, D]: the low, mid and high SigLIP states from all layer outputs [B, L, T, D]."""
    layers = all_hidden.shape[1]
    if layers < -min(BRANCH_LAYERS.values()):
        raise ValueError(
            f"{where}: the image encoder has {layers} layers; USO reads the 20th from the end (SigLIP)"
        )
    return torch.stack([all_hidden[:, BRANCH_LAYERS[b]] for b in ("low", "mid", "high")])


def load_uso_projector(store: Any, path: str) -> UsoProjector:
    """The projector of a model-patch file, loaded through the model store (reloaded if evicted)."""

    def load() -> UsoProjector:
        file = Path(path)
        sd = read_weights(file)
        patch_kind(list(sd), file.name)
        return build_uso_projector(sd, file.name)

    projector = store.get(("model_patch", path), load)
    assert isinstance(projector, UsoProjector)
    return projector


@dataclass(frozen=True, eq=False)
class StyleTokens:
    """A USO projector file and the SigLIP states [3, B, T, D] (float32, see `branch_states`) it projects."""

    path: str
    states: torch.Tensor

    def tokens(self, store: Any, dtype: torch.dtype, batch: int) -> torch.Tensor:
        """[batch, 3*S, H] style tokens in `dtype`; one image serves every item, otherwise one per item."""
        projector = load_uso_projector(store, self.path)
        out = projector(self.states.to(dtype)).to(dtype)
        if out.shape[0] == batch:
            return out
        if out.shape[0] == 1:
            return out.expand(batch, -1, -1)
        raise ValueError(f"USO style reference has {out.shape[0]} images for a batch of {batch}")


# USO's DiT LoRA (uso-flux1-dit-lora-v1) names its adapters after the attention processors of USO's
# own code; ComfyUI recognises the file by two keys of the full-depth model and renames every key.
USO_LORA_MARKS = (
    "single_blocks.37.processor.qkv_lora.up.weight",
    "double_blocks.18.processor.qkv_lora2.up.weight",
)
_USO_LORA_PARTS = (
    (".down.weight", ".lora_down.weight"),
    (".up.weight", ".lora_up.weight"),
    (".qkv_lora2.", ".txt_attn.qkv."),
    (".qkv_lora1.", ".img_attn.qkv."),
    (".proj_lora1.", ".img_attn.proj."),
    (".proj_lora2.", ".txt_attn.proj."),
    (".qkv_lora.", ".linear1_qkv."),
    (".proj_lora.", ".linear2."),
    (".processor.", "."),
)


def uso_lora_renamed(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A USO DiT LoRA's tensors under the native FLUX LoRA names (other files unchanged)."""
    if not all(mark in lora for mark in USO_LORA_MARKS):
        return lora
    out = {}
    for key, tensor in lora.items():
        name = key
        for old, new in _USO_LORA_PARTS:
            name = name.replace(old, new)
        out["diffusion_model." + name] = tensor
    return out

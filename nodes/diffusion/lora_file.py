"""Reading the adapters out of a LoRA file: every pair naming, alpha, DoRA magnitudes and full diffs.

A LoRA tensor name is `<stem><suffix>`; the stem names the target layer (in whatever naming the trainer
used) and the suffix says what the tensor is. The pair suffixes are those of kohya
(`.lora_up/.lora_down.weight`), diffusers/peft (`.lora_B/.lora_A.weight`, `.lora.up/.lora.down.weight`,
`_lora.up/_lora.down.weight`, `.lora_linear_layer.up/down.weight`, `.lora_B/.lora_A.default.weight`) and
the bare `.lora_B/.lora_A` some transformer trainers write. `.alpha` scales a pair by alpha / rank,
`.dora_scale` makes it DoRA, `.diff` / `.diff_b` are stored differences of a weight / its bias,
`.set_weight` a value that replaces the weight and `.reshape_weight` the shape a pair's weight is
zero-padded to first.

BFL's FLUX control LoRAs (Canny/Depth dev) name their tensors by bare BFL keys: LoRA pairs, pair biases
(`.lora_B.bias`, added to the layer's bias) and whole RMSNorm scales (`*_norm.scale`, replacing the
model's); their img_in pair reads 128 features, so the 64-wide img_in is widened first. They are read
under the generic names above, as ComfyUI converts them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine import UserFacingError
from nodes.diffusion.lora_math import FullDiff, LowRank, SetValue
from nodes.diffusion.uso import uso_lora_renamed

# (up suffix, down suffix) of each pair naming, longest first so `.lora_B.weight` wins over `.lora_B`.
PAIR_SUFFIXES = (
    (".lora_B.default.weight", ".lora_A.default.weight"),
    (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight"),
    (".lora_up.weight", ".lora_down.weight"),
    ("_lora.up.weight", "_lora.down.weight"),
    (".lora_B.weight", ".lora_A.weight"),
    (".lora.up.weight", ".lora.down.weight"),
    (".lora_B", ".lora_A"),
)
_EXTRA = (".alpha", ".dora_scale", ".diff", ".diff_b", ".set_weight", ".reshape_weight")
# Adapter kinds ComfyUI also reads that are refused here rather than skipped.
UNSUPPORTED_SUFFIXES = (
    ".lora_mid.weight",
    ".hada_w1_a",
    ".lokr_w1",
    ".lokr_w1_a",
    ".oft_blocks",
    ".oft_diag",
)


class LoraFormatError(UserFacingError):
    """A LoRA file holding an adapter kind diffgraph cannot apply."""

    code = "lora_unsupported"


@dataclass
class StemAdapters:
    """What a LoRA file holds for one stem: a weight adapter and/or a bias diff, and the keys used."""

    weight: LowRank | FullDiff | SetValue | None = None
    bias: FullDiff | None = None
    keys: list[str] = field(default_factory=list)


def _pair_stem(key: str) -> tuple[str, str, str] | None:
    """(stem, up suffix, down suffix) when `key` is the up half of a pair."""
    for up, down in PAIR_SUFFIXES:
        if key.endswith(up):
            return key[: -len(up)], up, down
    return None


def is_bfl_control(lora: dict[str, torch.Tensor]) -> bool:
    """Whether a LoRA file is one of BFL's FLUX control LoRAs (bare keys, img_in pair, norm scales)."""
    return "img_in.lora_A.weight" in lora and "single_blocks.0.norm.key_norm.scale" in lora


def bfl_control_keys(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A BFL control LoRA under the generic names: pair biases as bias diffs, norm scales as set values,
    img_in widened to the features its pair reads."""
    out = {}
    for key, tensor in lora.items():
        key = key.replace(".lora_B.bias", ".diff_b").replace("_norm.scale", "_norm.scale.set_weight")
        out["diffusion_model." + key] = tensor
    widened = (lora["img_in.lora_B.weight"].shape[0], lora["img_in.lora_A.weight"].shape[1])
    out["diffusion_model.img_in.reshape_weight"] = torch.tensor(widened)
    return out


def read_adapters(name: str, lora: dict[str, torch.Tensor]) -> tuple[dict[str, StemAdapters], list[str]]:
    """Stem -> adapters of a LoRA file, and the keys that are none of the known parts."""
    lora = uso_lora_renamed(lora)
    if is_bfl_control(lora):
        lora = bfl_control_keys(lora)
    unsupported = sorted(k for k in lora if k.endswith(UNSUPPORTED_SUFFIXES))
    if unsupported:
        raise LoraFormatError(
            f"{name}: holds adapters diffgraph cannot apply yet (LoCon mid weights, LoHa, LoKr or OFT), "
            f"e.g. {unsupported[0]!r}; plain LoRA, DoRA and diff patches are supported"
        )
    out: dict[str, StemAdapters] = {}
    used: set[str] = set()
    for key, up in lora.items():
        found = _pair_stem(key)
        if found is None:
            continue
        stem, _, down_suffix = found
        down = lora.get(stem + down_suffix)
        if down is None:
            continue
        alpha = lora.get(stem + ".alpha")
        dora = lora.get(stem + ".dora_scale")
        reshape = lora.get(stem + ".reshape_weight")
        entry = out.setdefault(stem, StemAdapters())
        entry.weight = LowRank(
            up,
            down,
            None if alpha is None else float(alpha.item()),
            dora,
            None if reshape is None else tuple(int(n) for n in reshape.tolist()),
        )
        entry.keys += [key, stem + down_suffix]
        entry.keys += [
            k for k in (stem + ".alpha", stem + ".dora_scale", stem + ".reshape_weight") if k in lora
        ]
    for key, tensor in lora.items():
        for suffix in (".diff", ".diff_b", ".set_weight"):
            if key.endswith(suffix):
                entry = out.setdefault(key[: -len(suffix)], StemAdapters())
                if suffix == ".diff":
                    entry.weight = entry.weight or FullDiff(tensor)
                elif suffix == ".set_weight":
                    # ComfyUI reads a set value last for a stem: it wins over a pair or diff.
                    entry.weight = SetValue(tensor)
                else:
                    entry.bias = FullDiff(tensor)
                entry.keys.append(key)
    for entry in out.values():
        used.update(entry.keys)
    stray = [k for k in lora if k not in used and not k.endswith(_EXTRA)]
    return out, stray

"""ControlNet and T2I-Adapter files: layout detection from the tensor names, and diffusers modules built from them.

Recognised layouts (published files are taken as they are):
  ldm           the original single file, keys `control_model.*` (or the same without the prefix):
                time_embed, input_blocks, middle_block, input_hint_block, zero_convs, middle_block_out
                (plus label_emb for SDXL); a `difference` key marks a file holding differences to a base
                UNet (DiffControlNetLoader adds the model's weights back).
  diffusers     diffusers' ControlNetModel names (controlnet_cond_embedding.*, controlnet_down_blocks.*).
  control_lora  Stability's control-lora: a `lora_controlnet` marker, LoRA `up`/`down` pairs over the
                base UNet's encoder weights, and full tensors for the hint blocks, zero convs and norms.
  t2i_*         T2I-Adapters: full (`conv_in`, `body.N.block1`), light (`body.N.in_conv`) and diffusers'
                (`adapter.body.N.resnets.M.*`).
Anything else is refused with the file's name and what was looked for.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from diffusers import ControlNetModel
from diffusers.loaders import single_file_utils as sfu

from nodes.diffusion import families
from nodes.diffusion.checkpoint_io import CheckpointFormatError, read_header, read_weights
from nodes.diffusion.controlnet_union import UNION_MARKER, build_union
from nodes.diffusion.t2i_adapter import build_t2i_adapter
from nodes.types import ControlKind, ControlNet

if TYPE_CHECKING:
    from nodes.diffusion.model_handle import DiffusionModel

LDM_PREFIX = "control_model."
LORA_MARKER = "lora_controlnet"
# Other families' control models, refused by name rather than as "unknown".
_OTHER_FAMILIES = (
    ("after_proj_list.", "a Hunyuan-DiT ControlNet"),
    ("controlnet_blocks.", "a FLUX/SD3/Qwen ControlNet"),
    ("controlnet_x_embedder.", "a FLUX ControlNet"),
    ("backbone.", "a Stable Cascade ControlNet"),
)
_CONTEXT_FAMILY = {768: "sd15", 1024: "sd2", 2048: "sdxl"}


def _context_family(shapes: dict[str, list[int]], name: str) -> str:
    """sd15 / sd2 / sdxl from the cross-attention context width of the encoder's attention layers."""
    widths = {s[1] for k, s in shapes.items() if k.endswith("attn2.to_k.weight")}
    if not widths:
        raise CheckpointFormatError(f"{name}: ControlNet without cross-attention layers is not supported")
    width = widths.pop()
    if any(k.startswith(("label_emb.", "add_embedding.")) for k in shapes) or width == 2048:
        return "sdxl"
    family = _CONTEXT_FAMILY.get(width)
    if family is None:
        # Tiny test files: a narrow context; the hint of SD2's linear projections decides.
        linear = any(len(s) == 2 for k, s in shapes.items() if k.endswith(".proj_in.weight"))
        family = "sd2" if linear else "sd15"
    return family


def detect_layout(shapes: dict[str, list[int]], name: str) -> tuple[ControlKind, str, str]:
    """(kind, layout, family) of a control file from its tensor names and shapes."""
    keys = set(shapes)
    if LORA_MARKER in keys:
        return "control_lora", "control_lora", ""
    if "controlnet_cond_embedding.conv_in.weight" in keys:
        layout = "union" if UNION_MARKER in keys else "diffusers"
        return "controlnet", layout, _context_family(shapes, name)
    if LDM_PREFIX + "zero_convs.0.0.weight" in keys or "zero_convs.0.0.weight" in keys:
        prefix = LDM_PREFIX if LDM_PREFIX + "zero_convs.0.0.weight" in keys else ""
        bare = {k[len(prefix) :]: s for k, s in shapes.items() if k.startswith(prefix)}
        layout = "ldm_difference" if "difference" in keys else "ldm"
        return "controlnet", layout, _context_family(bare, name)
    if "body.0.in_conv.weight" in keys:
        raise CheckpointFormatError(
            f"{name} is a light T2I-Adapter; diffgraph runs the full T2I-Adapters only"
        )
    if "adapter.conv_in.weight" in keys or ("conv_in.weight" in keys and "body.0.block1.weight" in keys):
        return "t2i_adapter", "t2i_diffusers" if "adapter.conv_in.weight" in keys else "t2i", ""
    for prefix, what in _OTHER_FAMILIES:
        if any(k.startswith(prefix) for k in keys):
            raise CheckpointFormatError(f"{name} is {what}; diffgraph runs SD1.x/SD2.x/SDXL ControlNets")
    raise CheckpointFormatError(
        f"{name} is not a ControlNet or T2I-Adapter: found none of control_model.zero_convs.*, "
        "zero_convs.*, controlnet_cond_embedding.*, lora_controlnet, conv_in/body.* (adapter)"
    )


def inspect_control_file(path: Path) -> tuple[ControlKind, str, str]:
    """(kind, layout, family) of a control file, read from its header (safetensors) or tensors."""
    if path.suffix.lower() in (".safetensors", ".sft"):
        header, _ = read_header(path)
        shapes = {k: list(v["shape"]) for k, v in header.items() if k != "__metadata__"}
    else:
        shapes = {k: list(v.shape) for k, v in read_weights(path).items()}
    return detect_layout(shapes, path.name)


def _hint_channels(state: dict[str, torch.Tensor]) -> tuple[int, list[int]]:
    """Hint input channels and the cond-embedding block widths (ldm input_hint_block 0, 2, ... 14)."""
    convs = sorted(
        (int(m.group(1)), v)
        for k, v in state.items()
        if (m := re.fullmatch(r"input_hint_block\.(\d+)\.weight", k))
    )
    widths = [v.shape[0] for _, v in convs[:-1]]
    # diffusers' blocks: conv_in then pairs of (same width, next width); its embedding channels are each pair's input.
    return convs[0][1].shape[1], widths[::2]


def controlnet_config(family: str, ldm_state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """diffusers ControlNetModel config from ldm-named tensors (no prefix) and the family template."""
    unet_like = {families.UNET_PREFIX + k: v for k, v in ldm_state.items()}
    cfg = families.unet_config(family, unet_like)
    hint_in, widths = _hint_channels(ldm_state)
    cfg["conditioning_channels"] = hint_in
    cfg["conditioning_embedding_out_channels"] = widths
    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    return {k: v for k, v in cfg.items() if k in accepted}


def ldm_to_diffusers(state: dict[str, torch.Tensor], cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Original ControlNet tensors (no prefix) renamed to diffusers' ControlNetModel names."""
    # Prefixed, so diffusers' converter takes files lacking a time embedding (control-lora parts) too.
    converted = sfu.convert_controlnet_checkpoint({LDM_PREFIX + k: v for k, v in state.items()}, cfg)
    for i, part in ((0, "linear_1"), (2, "linear_2")):
        for suffix in ("weight", "bias"):
            key = f"label_emb.0.{i}.{suffix}"
            if key in state:
                converted[f"add_embedding.{part}.{suffix}"] = state[key]
    return {k: v for k, v in converted.items() if v is not None}


def _renamed_parts(
    tensors: dict[str, torch.Tensor], suffix: str, cfg: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """Control-lora `up`/`down` tensors under diffusers layer names (without the suffix)."""
    as_weights = {k[: -len(suffix)] + ".weight": v for k, v in tensors.items() if k.endswith(suffix)}
    return {k.removesuffix(".weight"): v for k, v in ldm_to_diffusers(as_weights, cfg).items()}


def build_control_lora(path: Path, base_unet: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A ControlNetModel from a control-lora file over the sampler's UNet (ComfyUI's ControlLora rules).

    Every encoder weight starts as the base UNet's; the file's full tensors (hint blocks, zero convs,
    norms, biases) replace theirs; each LoRA pair adds up @ down (flattened, reshaped to the weight).
    """
    raw = read_weights(path, cast=lambda _key: torch.float32)
    tensors = {k: v for k, v in raw.items() if k != LORA_MARKER and "__" not in k}
    full = {k: v for k, v in tensors.items() if k.endswith((".weight", ".bias"))}
    base_cfg: Any = base_unet.config
    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    cfg = {k: v for k, v in dict(base_cfg).items() if k in accepted}
    cfg["conditioning_channels"], cfg["conditioning_embedding_out_channels"] = _hint_channels(full)
    own = ldm_to_diffusers(full, cfg)
    ups, downs = _renamed_parts(tensors, ".up", cfg), _renamed_parts(tensors, ".down", cfg)
    base = base_unet.state_dict()
    with torch.device("meta"):
        wanted = list(ControlNetModel.from_config(cfg).state_dict())
    state: dict[str, torch.Tensor] = {}
    for key in wanted:
        value = own.get(key, base.get(key))
        if value is None:
            raise CheckpointFormatError(f"{path.name}: control-lora and base model both lack {key}")
        value = value.float()
        layer = key.removesuffix(".weight")
        if key.endswith(".weight") and layer in ups:
            delta = torch.mm(ups[layer].flatten(start_dim=1), downs[layer].flatten(start_dim=1))
            value = value + delta.reshape(value.shape)
        state[key] = value
    return _assign(cfg, state, dtype, path.name)


def diffusers_to_ldm_shapes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stand-in ldm-named tensors for a diffusers file, enough for `controlnet_config` to read shapes."""
    out: dict[str, torch.Tensor] = {"input_blocks.0.0.weight": state["conv_in.weight"]}
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"down_blocks\.(\d+)\.", k))})
    index = 1
    for b in blocks:
        resnets = sorted(
            {int(m.group(1)) for k in state if (m := re.match(rf"down_blocks\.{b}\.resnets\.(\d+)\.", k))}
        )
        for r in resnets:
            out[f"input_blocks.{index}.0.out_layers.3.weight"] = state[
                f"down_blocks.{b}.resnets.{r}.conv2.weight"
            ]
            for k, v in state.items():
                m = re.match(rf"down_blocks\.{b}\.attentions\.{r}\.(.*)$", k)
                if m:
                    out[f"input_blocks.{index}.1.{m.group(1)}"] = v
            index += 1
        if f"down_blocks.{b}.downsamplers.0.conv.weight" in state:
            out[f"input_blocks.{index}.0.op.weight"] = state[f"down_blocks.{b}.downsamplers.0.conv.weight"]
            index += 1
    for k, v in state.items():
        if k.startswith("mid_block.attentions.0."):
            out["middle_block.1." + k[len("mid_block.attentions.0.") :]] = v
        if k.startswith("add_embedding.linear_1."):
            out["label_emb.0.0." + k.rsplit(".", 1)[1]] = v
    hint = {k: v for k, v in state.items() if k.startswith("controlnet_cond_embedding.")}
    out["input_hint_block.0.weight"] = hint["controlnet_cond_embedding.conv_in.weight"]
    n = len([k for k in hint if k.startswith("controlnet_cond_embedding.blocks.") and k.endswith(".weight")])
    for i in range(n):
        out[f"input_hint_block.{2 * (i + 1)}.weight"] = hint[f"controlnet_cond_embedding.blocks.{i}.weight"]
    out[f"input_hint_block.{2 * (n + 1)}.weight"] = hint["controlnet_cond_embedding.conv_out.weight"]
    return out


def _assign(cfg: dict[str, Any], state: dict[str, torch.Tensor], dtype: torch.dtype, name: str) -> Any:
    """A meta-built ControlNetModel receiving the converted tensors; refuses missing or extra tensors."""
    with torch.device("meta"):
        model = ControlNetModel.from_config(cfg)
    state = {k: v.to(dtype) for k, v in state.items()}
    result = model.load_state_dict(state, strict=False, assign=True)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointFormatError(
            f"{name}: the ControlNet lacks {len(result.missing_keys)} tensors {result.missing_keys[:3]} and has "
            f"{len(result.unexpected_keys)} unknown ones {result.unexpected_keys[:3]}"
        )
    return model.eval().requires_grad_(False)


def build_controlnet(
    path: Path, layout: str, family: str, dtype: torch.dtype, base_unet: torch.nn.Module | None = None
) -> Any:
    """A ControlNetModel from an ldm- or diffusers-layout file (a difference file needs `base_unet`)."""
    raw = read_weights(path, cast=lambda _key: torch.float32)
    if layout == "union":
        return build_union(raw, controlnet_config(family, diffusers_to_ldm_shapes(raw)), dtype, path.name)
    if layout == "diffusers":
        cfg = controlnet_config(family, diffusers_to_ldm_shapes(raw))
        return _assign(cfg, raw, dtype, path.name)
    prefix = LDM_PREFIX if any(k.startswith(LDM_PREFIX) for k in raw) else ""
    state = {k[len(prefix) :]: v for k, v in raw.items() if k.startswith(prefix)}
    cfg = controlnet_config(family, state)
    converted = ldm_to_diffusers(state, cfg)
    if layout == "ldm_difference":
        if base_unet is None:
            raise CheckpointFormatError(
                f"{path.name} holds differences to a base model: load it with DiffControlNetLoader"
            )
        # ControlNetModel shares the UNet's encoder names, so the base weights line up key by key.
        base = base_unet.state_dict()
        converted = {k: v + base[k].float() if k in base else v for k, v in converted.items()}
    return _assign(cfg, converted, dtype, path.name)


@dataclass
class Residuals:
    """What the UNet adds: one tensor per encoder skip connection (input-block order), the middle's,
    and T2I-Adapter features added inside the encoder (one per down block, then the middle's for SDXL).
    """

    down: list[torch.Tensor | None]
    mid: torch.Tensor | None
    adapter: list[torch.Tensor | None] = field(default_factory=list)

    def scaled(self, strength: float) -> Residuals:
        """Every residual times a control's strength."""
        return Residuals(
            [None if t is None else t * strength for t in self.down],
            None if self.mid is None else self.mid * strength,
            [None if t is None else t * strength for t in self.adapter],
        )

    def plus(self, other: Residuals | None) -> Residuals:
        """Element-wise sum with an earlier chain member's residuals (missing entries count as zero)."""
        if other is None:
            return self
        n = max(len(self.down), len(other.down))
        down = [_add(_at(other.down, i), _at(self.down, i)) for i in range(n)]
        m = max(len(self.adapter), len(other.adapter))
        adapter = [_add(_at(other.adapter, i), _at(self.adapter, i)) for i in range(m)]
        return Residuals(down, _add(other.mid, self.mid), adapter)


def _at(items: list[torch.Tensor | None], i: int) -> torch.Tensor | None:
    return items[i] if i < len(items) else None


def _add(earlier: torch.Tensor | None, later: torch.Tensor | None) -> torch.Tensor | None:
    if earlier is None:
        return later
    if later is None:
        return earlier
    return earlier + later


def control_store_key(net: ControlNet, dtype: torch.dtype, model: DiffusionModel) -> tuple[Any, ...]:
    """The model store key of a loaded control model (one built on a UNet also names that UNet)."""
    base = net.base_model if net.base_model is not None else model if net.kind == "control_lora" else None
    base_key = base.recipe.store_key if base is not None else None
    return ("diffgraph", "controlnet", net.path, net.layout, net.family, str(dtype), base_key)


def load_control_model(
    store: Any, net: ControlNet, dtype: torch.dtype, model: DiffusionModel
) -> torch.nn.Module:
    """The control model on the compute device, loaded through the store on first use.

    `model` is the UNet being sampled: a control-lora is built on top of it.
    """

    def build() -> torch.nn.Module:
        if net.kind == "control_lora":
            return build_control_lora(Path(net.path), model.load(store), dtype)
        if net.kind == "t2i_adapter":
            return build_t2i_adapter(Path(net.path), net.layout, dtype)
        base = net.base_model.load(store) if net.base_model is not None else None
        return build_controlnet(Path(net.path), net.layout, net.family, dtype, base)

    return store.get(control_store_key(net, dtype, model), build)


def run_control_model(
    module: torch.nn.Module,
    x_in: torch.Tensor,
    timesteps: torch.Tensor,
    embeds: torch.Tensor,
    hint: torch.Tensor,
    added_cond: dict[str, torch.Tensor] | None,
    global_average_pooling: bool,
) -> Residuals:
    """One ControlNet forward: its unscaled residuals for the UNet's skips and middle block."""
    dtype = next(module.parameters()).dtype
    kwargs: dict[str, Any] = {"added_cond_kwargs": added_cond} if added_cond is not None else {}
    down, mid = module(
        x_in.to(dtype),
        timesteps,
        encoder_hidden_states=embeds.to(dtype),
        controlnet_cond=hint.to(dtype),
        return_dict=False,
        **kwargs,
    )
    out = Residuals(list(down), mid)
    if global_average_pooling:
        # Shuffle ControlNets: each residual's spatial mean, spread back over its grid.
        pool = [None if t is None else t.mean(dim=(2, 3), keepdim=True).expand_as(t) for t in out.down]
        out = Residuals(pool, None if mid is None else mid.mean(dim=(2, 3), keepdim=True).expand_as(mid))
    return out

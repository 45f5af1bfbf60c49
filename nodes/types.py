"""Typed values on the edges between nodes: latents, images, masks, conditioning, sampling parts.

Model-family knowledge lives on this (nodes) side of the engine boundary. Handles for MODEL/CLIP/VAE
reference models kept by the engine's model store; they do not pin weights themselves, so the cache
never keeps a model alive behind the store's back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch

from engine import EdgeType

# Re-exported: nodes and edge values name latent formats through this module.
from nodes.latent_formats import FLUX_LATENT as FLUX_LATENT
from nodes.latent_formats import SD3_LATENT as SD3_LATENT
from nodes.latent_formats import SD15_LATENT as SD15_LATENT
from nodes.latent_formats import SDXL_LATENT as SDXL_LATENT
from nodes.latent_formats import LatentFormat as LatentFormat

if TYPE_CHECKING:
    # Only for annotations: the model handle module itself imports this one.
    from nodes.diffusion.model_handle import DiffusionModel


def tensor_nbytes(*tensors: torch.Tensor | None) -> int:
    """Bytes held by the given tensors (None entries count zero)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass(frozen=True, eq=False)
class Latent(EdgeType):
    """LATENT: `samples` float32 [B, C, H/8, W/8] in raw VAE latent space (unscaled, as ComfyUI).

    `batch_index` picks per-item noise draws (None: items 0..B-1). `noise_mask` limits denoising
    (inpainting): float32 [B or 1, 1, Hm, Wm] in 0..1, 1 = the sampler may change the latent there. It is
    stored at the mask's own resolution (usually the image's pixel size, as SetLatentNoiseMask writes
    it) and resized to the latent by the sampler, as ComfyUI does.
    """

    io_type: ClassVar[str] = "LATENT"
    samples: torch.Tensor
    batch_index: tuple[int, ...] | None = None
    noise_mask: torch.Tensor | None = None

    def nbytes(self) -> int:
        """Bytes of the latent and mask tensors."""
        return tensor_nbytes(self.samples, self.noise_mask)


@dataclass(frozen=True, eq=False)
class LatentSequence(EdgeType):
    """LATENT_SEQUENCE: the latent after every sampler step, float32 [S, B, C, H/8, W/8], VAE space."""

    io_type: ClassVar[str] = "LATENT_SEQUENCE"
    steps: torch.Tensor
    latent_format: LatentFormat = SD15_LATENT

    def nbytes(self) -> int:
        """Bytes of the stacked step latents."""
        return tensor_nbytes(self.steps)


@dataclass(frozen=True, eq=False)
class Image(EdgeType):
    """IMAGE: `pixels` float32 [B, H, W, 3] in 0..1, channels last (ComfyUI's layout)."""

    io_type: ClassVar[str] = "IMAGE"
    pixels: torch.Tensor

    def nbytes(self) -> int:
        """Bytes of the pixel tensor."""
        return tensor_nbytes(self.pixels)


@dataclass(frozen=True, eq=False)
class Mask(EdgeType):
    """MASK: float32 [B, H, W] in 0..1 (1 = masked)."""

    io_type: ClassVar[str] = "MASK"
    mask: torch.Tensor

    def nbytes(self) -> int:
        """Bytes of the mask tensor."""
        return tensor_nbytes(self.mask)


@dataclass(frozen=True)
class CondArea:
    """Where a conditioning applies: (height, width, y, x) in latent pixels (the 8x-downscaled grid).

    With `percentage` the four numbers are fractions of the latent's height/width, resolved when sampling.
    """

    height: float
    width: float
    y: float
    x: float
    percentage: bool = False


@dataclass(frozen=True, eq=False)
class CondEntry:
    """One conditioning item: token embeddings [B, 77*k, D] plus pooled output and SDXL size extras.

    The remaining fields say where and when the sampler applies it (ComfyUI's cond dict keys):
    `area`/`strength` (ConditioningSetArea*), `mask` float32 [B, H, W] in 0..1 with `mask_strength`
    and `set_area_to_bounds` (ConditioningSetMask), `start_percent`/`end_percent` of the schedule
    (ConditioningSetTimestepRange), and `concat_latent` raw VAE latents [B, 4, h, w] with `concat_mask`
    [B, 1, H, W] for 9-channel inpainting UNets (InpaintModelConditioning).
    """

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    area: CondArea | None = None
    strength: float = 1.0
    mask: torch.Tensor | None = None
    mask_strength: float = 1.0
    set_area_to_bounds: bool = False
    start_percent: float = 0.0
    end_percent: float = 1.0
    concat_latent: torch.Tensor | None = None
    concat_mask: torch.Tensor | None = None
    # The ControlNets/T2I-Adapters steering this entry (the last applied, linked to the earlier ones).
    control: ControlApplication | None = None


# What a model reads after its latent's channels (nodes.sampling.conds builds each): SD inpainting's
# mask and masked image, instruct-pix2pix's image latent, FLUX Fill's, FLUX Canny/Depth's image latent.
ConcatKind = Literal["inpaint", "ip2p", "fill", "flux_image"]
ControlKind = Literal["controlnet", "t2i_adapter", "control_lora"]


@dataclass(frozen=True, eq=False)
class ControlNet(EdgeType):
    """CONTROL_NET: a ControlNet, control-lora or T2I-Adapter file, loaded on demand by the sampler.

    `layout` names the key layout the file was recognised by (see nodes.diffusion.controlnet);
    `family` the base model family it steers ("" for a control-lora, which takes the sampler's model).
    `control_type` is a union ControlNet's task list (SetUnionControlNetType; empty = auto).
    `base_model` is the UNet a "difference" ControlNet file is added onto (DiffControlNetLoader).
    """

    io_type: ClassVar[str] = "CONTROL_NET"
    path: str
    kind: ControlKind
    layout: str
    family: str
    control_type: tuple[int, ...] = ()
    base_model: DiffusionModel | None = None
    global_average_pooling: bool = False


@dataclass(frozen=True, eq=False)
class ControlApplication:
    """One ControlNet applied to conditioning: hint pixels [B, 3, H, W] in 0..1, strength and range.

    `previous` is the control applied before this one on the same entry: the residuals of the whole
    chain are summed. Identity matters: entries sharing one application run the control model in one
    batch, as ComfyUI batches entries whose control object is the same.
    """

    net: ControlNet
    hint: torch.Tensor
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: ControlApplication | None = None
    # Set by the older ControlNetApply node: the sampler hands the control to the negative side too.
    apply_to_uncond: bool = False

    def chain(self) -> list[ControlApplication]:
        """Every application of the chain, earliest first."""
        out: list[ControlApplication] = []
        node: ControlApplication | None = self
        while node is not None:
            out.append(node)
            node = node.previous
        return out[::-1]

    def nbytes(self) -> int:
        """Bytes of the hint images along the chain."""
        return sum(tensor_nbytes(a.hint) for a in self.chain())


@dataclass(frozen=True, eq=False)
class Conditioning(EdgeType):
    """CONDITIONING: a list of CondEntry (ComfyUI's list of [tensor, dict])."""

    io_type: ClassVar[str] = "CONDITIONING"
    entries: tuple[CondEntry, ...]

    def nbytes(self) -> int:
        """Bytes of all embedding, mask and inpainting tensors."""
        return sum(
            tensor_nbytes(e.embeds, e.pooled, e.mask, e.concat_latent, e.concat_mask)
            + (e.control.nbytes() if e.control is not None else 0)
            for e in self.entries
        )


# What a discrete-time model outputs (see nodes.sampling.model_sampling); checkpoints are eps or v.
Prediction = Literal["eps", "v", "x0", "img_to_img", "lcm"]


@dataclass(frozen=True)
class FlowSampling:
    """A flow-matching model's sigma schedule (ComfyUI's CONST prediction).

    `kind` "flux": FLUX's resolution shift `shift` (mu; 1.15 for FLUX dev), the model fed sigma itself;
    "discrete_flow": SD3/AuraFlow's shift with the model fed sigma * `multiplier` (FLUX schnell: shift 1,
    multiplier 1).
    """

    kind: Literal["flux", "discrete_flow"]
    shift: float
    multiplier: float = 1000.0


@dataclass(frozen=True, eq=False)
class Sigmas(EdgeType):
    """SIGMAS: a noise schedule, float32 [steps + 1], high to low (usually ending at 0)."""

    io_type: ClassVar[str] = "SIGMAS"
    sigmas: torch.Tensor

    def nbytes(self) -> int:
        """Bytes of the schedule."""
        return tensor_nbytes(self.sigmas)


@dataclass(frozen=True, eq=False)
class Noise(EdgeType):
    """NOISE: where a sampler's starting noise comes from: a seed's CPU draw, or none (zeros).

    The seed also drives the sampler's in-loop noise, even when the starting noise is off (KSamplerAdvanced
    without added noise keeps its seed; DisableNoise gives seed 0), as in ComfyUI.
    """

    io_type: ClassVar[str] = "NOISE"
    seed: int = 0
    enabled: bool = True


@dataclass(frozen=True, eq=False)
class SamplerSpec(EdgeType):
    """SAMPLER: a sampler by ComfyUI name plus keyword options for its loop (eta, s_noise, order...)."""

    io_type: ClassVar[str] = "SAMPLER"
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)


GuidanceKind = Literal["basic", "cfg", "dual_cfg", "dual_cfg_nested"]


@dataclass(frozen=True, eq=False)
class Guider(EdgeType):
    """GUIDER: a model plus the conditionings and guidance rule that turn its predictions into one x0.

    `conds` maps a role to its conditioning: basic uses `positive`; cfg `positive`/`negative`; the
    dual kinds `positive`, `middle` and `negative` with `cfg` for positive-vs-middle and `cfg2` for
    middle-vs-negative.
    """

    io_type: ClassVar[str] = "GUIDER"
    model: DiffusionModel
    kind: GuidanceKind
    conds: Mapping[str, Conditioning]
    cfg: float = 1.0
    cfg2: float = 1.0

    def nbytes(self) -> int:
        """Bytes of the conditioning tensors (the model lives in the model store)."""
        return sum(c.nbytes() for c in self.conds.values())


@dataclass(frozen=True)
class SkipLayerGuidance:
    """Skip Layer Guidance set on a MODEL: after CFG, x0 += (cond x0 - cond x0 with `layers` skipped) * scale.

    Applied while sigma_end <= sigma <= sigma_start (the first item's sigma); the window was turned
    from percents into sigmas with the model's sampling when the node ran, as ComfyUI does.
    """

    layers: tuple[int, ...]
    scale: float
    sigma_start: float
    sigma_end: float


@dataclass(frozen=True, eq=False)
class UpscaleModel(EdgeType):
    """UPSCALE_MODEL: a spandrel image model by file; weights live in the model store under `store_key`.

    `architecture` is spandrel's name for it (ESRGAN, SwinIR, ...) and `scale` its enlargement factor.
    """

    io_type: ClassVar[str] = "UPSCALE_MODEL"
    path: str
    architecture: str
    scale: int

    @property
    def store_key(self) -> tuple[str, str]:
        """The model store key: one loaded network per file."""
        return ("upscale_model", self.path)


@dataclass(frozen=True, eq=False)
class ClipVision(EdgeType):
    """CLIP_VISION: a CLIP image tower by file (and key prefix inside it); weights live in the model store."""

    io_type: ClassVar[str] = "CLIP_VISION"
    path: str
    # Key prefix of the tower inside the file ("" for a standalone file, the embedder inside unCLIP files).
    prefix: str = ""
    name: str = ""

    @property
    def store_key(self) -> tuple[str, str, str]:
        """The model store key: one loaded tower per file and prefix."""
        return ("clip_vision", self.path, self.prefix)


@dataclass(frozen=True, eq=False)
class ClipVisionOutput(EdgeType):
    """CLIP_VISION_OUTPUT: one image batch through a CLIP tower, float32 on CPU.

    `last_hidden_state` [B, T, D] (the last layer, before the final norm), `penultimate_hidden_states`
    [B, T, D] (the layer before it) and `image_embeds` [B, P] (pooled token through the projection).
    SigLIP towers have no class token or projection: `last_hidden_state` is after the final norm,
    `image_embeds` equals it [B, T, D], and `all_hidden_states` [B, L, T, D] holds every layer's output
    (None for CLIP towers).
    """

    io_type: ClassVar[str] = "CLIP_VISION_OUTPUT"
    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor
    image_embeds: torch.Tensor
    all_hidden_states: torch.Tensor | None = None

    def nbytes(self) -> int:
        """Bytes of the tensors."""
        return tensor_nbytes(
            self.last_hidden_state, self.penultimate_hidden_states, self.image_embeds, self.all_hidden_states
        )


@dataclass(frozen=True, eq=False)
class ModelPatchFile(EdgeType):
    """MODEL_PATCH: an add-on network for a diffusion model by file (USO's style projector); weights live
    in the model store under `store_key`."""

    io_type: ClassVar[str] = "MODEL_PATCH"
    path: str
    kind: str

    @property
    def store_key(self) -> tuple[str, str]:
        """The model store key: one loaded patch network per file."""
        return ("model_patch", self.path)


@dataclass(frozen=True, eq=False)
class StyleModel(EdgeType):
    """STYLE_MODEL: a style adapter by file; weights live in the model store under `store_key`."""

    io_type: ClassVar[str] = "STYLE_MODEL"
    path: str

    @property
    def store_key(self) -> tuple[str, str]:
        """The model store key: one loaded adapter per file."""
        return ("style_model", self.path)


@dataclass(frozen=True, eq=False)
class Gligen(EdgeType):
    """GLIGEN: a GLIGEN text-box file by path; its gated layers join a UNet copy when sampling."""

    io_type: ClassVar[str] = "GLIGEN"
    path: str

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

if TYPE_CHECKING:
    # Only for annotations: the model handle module itself imports this one.
    from nodes.diffusion.model_handle import DiffusionModel


def tensor_nbytes(*tensors: torch.Tensor | None) -> int:
    """Bytes held by the given tensors (None entries count zero)."""
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


@dataclass(frozen=True)
class LatentFormat:
    """How a family's VAE latents are scaled for the UNet and projected to RGB for previews."""

    name: str
    channels: int
    scale_factor: float
    shift: float = 0.0
    # Rows per latent channel -> (R, G, B); bias added after (ComfyUI latent_formats facts).
    rgb_factors: tuple[tuple[float, float, float], ...] = ()
    rgb_bias: tuple[float, float, float] | None = None
    taesd_decoder: str | None = None

    def process_in(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE latent space -> UNet space."""
        return (latents - self.shift) * self.scale_factor

    def process_out(self, latents: torch.Tensor) -> torch.Tensor:
        """UNet space -> VAE latent space."""
        return latents / self.scale_factor + self.shift


SD15_LATENT = LatentFormat(
    name="sd15",
    channels=4,
    scale_factor=0.18215,
    rgb_factors=(
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    ),
    taesd_decoder="taesd_decoder",
)
SDXL_LATENT = LatentFormat(
    name="sdxl",
    channels=4,
    scale_factor=0.13025,
    rgb_factors=(
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    rgb_bias=(0.1084, -0.0175, -0.0011),
    taesd_decoder="taesdxl_decoder",
)
# SD3 / SD3.5: 16 channels with a shift (ComfyUI latent_formats.SD3 facts).
SD3_LATENT = LatentFormat(
    name="sd3",
    channels=16,
    scale_factor=1.5305,
    shift=0.0609,
    rgb_factors=(
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    rgb_bias=(0.2394, 0.2135, 0.1925),
    taesd_decoder="taesd3_decoder",
)
# FLUX's 16-channel VAE (ComfyUI latent_formats.Flux facts: scale 0.3611, shift 0.1159, RGB rows).
FLUX_LATENT = LatentFormat(
    name="flux",
    channels=16,
    scale_factor=0.3611,
    shift=0.1159,
    rgb_factors=(
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    rgb_bias=(-0.0329, -0.0718, -0.0851),
    taesd_decoder="taef1_decoder",
)


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
    """

    io_type: ClassVar[str] = "CLIP_VISION_OUTPUT"
    last_hidden_state: torch.Tensor
    penultimate_hidden_states: torch.Tensor
    image_embeds: torch.Tensor

    def nbytes(self) -> int:
        """Bytes of the three tensors."""
        return tensor_nbytes(self.last_hidden_state, self.penultimate_hidden_states, self.image_embeds)


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

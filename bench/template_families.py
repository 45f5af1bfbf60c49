"""Which later piece of work brings a node type diffgraph lacks: the families the coverage report names."""

from __future__ import annotations

# Families by the issue that brings them; checked in this order, first match wins.
ISSUE_18B = "issue 18b: conditioning ops, area composition and inpainting"
ISSUE_19 = "issue 19: ControlNet, upscale models, CLIP vision/unCLIP/style, GLIGEN, model patches"
ISSUE_13 = "issue 13: FLUX/SD3 component loaders, flow-matching sampling, custom-sampling nodes"
ISSUE_12 = "issue 12: execution semantics (lazy inputs, lists) and third-party node packs"
API = "cloud API nodes (not planned: they call paid services)"
NEW_ARCH = "new model architecture (video, audio, 3D, image families beyond SD/SDXL/FLUX/SD3; not filed yet)"
UTILITY = "core utility node not yet covered (no issue yet)"

EXACT: dict[str, str] = {
    **dict.fromkeys(
        (
            "ConditioningCombine",
            "ConditioningAverage",
            "ConditioningConcat",
            "ConditioningSetArea",
            "ConditioningSetAreaPercentage",
            "ConditioningSetAreaStrength",
            "ConditioningSetMask",
            "ConditioningSetTimestepRange",
            "ConditioningZeroOut",
            "VAEEncodeForInpaint",
            "InpaintModelConditioning",
        ),
        ISSUE_18B,
    ),
    **dict.fromkeys(
        (
            "Canny",
            "UpscaleModelLoader",
            "ImageUpscaleWithModel",
            "GLIGENLoader",
            "GLIGENTextBoxApply",
            "FreeU",
            "FreeU_V2",
            "PerturbedAttentionGuidance",
            "SelfAttentionGuidance",
            "RescaleCFG",
            "ModelMergeSimple",
            "CheckpointSave",
            "SetUnionControlNetType",
        ),
        ISSUE_19,
    ),
    **dict.fromkeys(
        (
            "UNETLoader",
            "CLIPLoader",
            "DualCLIPLoader",
            "TripleCLIPLoader",
            "FluxGuidance",
            "KSamplerSelect",
            "BasicScheduler",
            "KarrasScheduler",
            "ExponentialScheduler",
            "PolyexponentialScheduler",
            "VPScheduler",
            "BetaSamplingScheduler",
            "SDTurboScheduler",
            "SplitSigmas",
            "SetFirstSigma",
            "RandomNoise",
            "DisableNoise",
            "CFGGuider",
            "BasicGuider",
            "DualCFGGuider",
            "EmptySD3LatentImage",
            "CLIPTextEncodeFlux",
            "CLIPTextEncodeSD3",
            "T5TokenizerOptions",
            "ReferenceLatent",
            "FluxKontextImageScale",
            "FluxKontextMultiReferenceLatentMethod",
            "SkipLayerGuidanceDiT",
            "CFGZeroStar",
            "CFGNorm",
            "ManualSigmas",
            "SkipLayerGuidanceDiTSimple",
        ),
        ISSUE_13,
    ),
    **dict.fromkeys(
        ("ComfySwitchNode", "RebatchLatents", "RebatchImages", "ComfyMathExpression", "PreviewAny"), ISSUE_12
    ),
}
PREFIXES: tuple[tuple[str, str], ...] = (
    ("ControlNet", ISSUE_19),
    ("DiffControlNet", ISSUE_19),
    ("CLIPVision", ISSUE_19),
    ("unCLIP", ISSUE_19),
    ("StyleModel", ISSUE_19),
    ("ModelSampling", ISSUE_13),
    ("SamplerCustom", ISSUE_13),
    ("Sampler", ISSUE_13),
)
API_MARKERS = (
    "OpenAI",
    "Gemini",
    "Recraft",
    "Tripo",
    "Rodin3D",
    "Stability",
    "Kling",
    "Luma",
    "Pika",
    "Pixverse",
    "Runway",
    "Vidu",
    "Veo",
    "Minimax",
    "Moonvalley",
    "ByteDance",
    "Ideogram",
    "FluxPro",
    "FluxKontextPro",
    "FluxKontextMax",
    "Bria",
    "Topaz",
    "Hailuo",
    "Claude",
    "Grok",
    "OpenRouter",
    "ElevenLabs",
)
ARCH_MARKERS = (
    "Wan",
    "Hunyuan",
    "LTXV",
    "Mochi",
    "Cosmos",
    "Video",
    "Audio",
    "AceStep",
    "3D",
    "Mesh",
    "GLB",
    "Voxel",
    "SVD_",
    "StableZero123",
    "Lotus",
    "Qwen",
    "HiDream",
    "Omnigen",
    "Chroma",
    "Lumina",
    "QuadrupleCLIPLoader",
    "ImageOnlyCheckpointLoader",
    "ModelPatchLoader",
    "USOStyleReference",
    "TrimVideoLatent",
    "EasyCache",
    "UNetTemporalAttentionMultiply",
    "Camera",
    "Flux2",
    "Flux3",
    "LTX",
    "MoGe",
    "DA3",
    "SeedVR",
    "Marigold",
    "MageFlow",
    "Anima",
    "SAM",
    "RTDETR",
    "SDPose",
    "TextGenerate",
    "ModelAttention",
)
# Video and audio file I/O is model-agnostic: a missing utility, not a new architecture.
MEDIA_IO = frozenset(
    {"SaveVideo", "CreateVideo", "LoadVideo", "GetVideoComponents", "LoadAudio", "SaveAudio"}
)
# Node types from third-party packs that some templates use.
CUSTOM_PACK_NODES = frozenset(
    {
        "Sam2Segmentation",
        "DownloadAndLoadSAM2Model",
        "DWPreprocessor",
        "PixelPerfectResolution",
        "PointsEditor",
        "DrawMaskOnImage",
        "BlockifyMask",
    }
)


def family_of(node_type: str) -> str:
    """The family (and the issue) that brings a missing node type."""
    if node_type in EXACT:
        return EXACT[node_type]
    if node_type in CUSTOM_PACK_NODES:
        return ISSUE_12
    if node_type in MEDIA_IO:
        return UTILITY
    for prefix, family in PREFIXES:
        if node_type.startswith(prefix):
            return family
    if node_type.endswith("Api") or any(marker in node_type for marker in API_MARKERS):
        return API
    if any(marker in node_type for marker in ARCH_MARKERS):
        return NEW_ARCH
    return UTILITY

"""ComfyUI's V3 schema API (`comfy_api.latest.io`) for packs: ComfyNode, Schema, typed inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any


class FolderType(StrEnum):
    """Which folder a file lives in."""

    input = "input"
    output = "output"
    temp = "temp"


class UploadType(StrEnum):
    """The upload widget a combo shows."""

    image = "image_upload"
    audio = "audio_upload"
    video = "video_upload"
    model = "file_upload"


class NumberDisplay(StrEnum):
    """How a number widget is drawn."""

    number = "number"
    slider = "slider"


class Hidden(StrEnum):
    """Hidden values a node may ask for in its schema."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """`cls.hidden` inside execute(): the hidden values of this call (None when not asked for)."""

    def __init__(self, values: dict[str, Any]):
        self.__dict__.update(values)

    def __getattr__(self, key: str) -> Any:
        return None


_OPTION_NAMES = {
    "default": "default",
    "min": "min",
    "max": "max",
    "step": "step",
    "tooltip": "tooltip",
    "lazy": "lazy",
    "force_input": "forceInput",
    "multiline": "multiline",
    "placeholder": "placeholder",
    "dynamic_prompts": "dynamicPrompts",
    "control_after_generate": "control_after_generate",
    "display_name": "display_name",
    "socketless": "socketless",
    "label_on": "label_on",
    "label_off": "label_off",
    "round": "round",
}


class Input:
    """An input of a V3 schema; `entry()` is its V1 INPUT_TYPES form."""

    io_type = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, **options: Any):  # noqa: A002
        self.id = id
        self.optional = optional
        self.options = {"display_name": display_name, **options}

    def entry(self) -> list[Any]:
        """[type, options] as a V1 node declares it."""
        opts: dict[str, Any] = {}
        for key, value in self.options.items():
            if value is None:
                continue
            if key == "display_mode":
                opts["display"] = value.value if isinstance(value, Enum) else value
            elif key == "upload":
                opts[value.value if isinstance(value, Enum) else str(value)] = True
            elif key == "image_folder":
                opts["image_folder"] = value.value if isinstance(value, Enum) else value
            elif key in _OPTION_NAMES:
                opts[_OPTION_NAMES[key]] = value
            elif key == "extra_dict":
                opts.update(value)
        return [self.io_type, opts]


class ComboInput(Input):
    """A dropdown; options may be a list or an Enum class."""

    io_type = "COMBO"

    def __init__(
        self, id: str, options: Any = None, display_name: str | None = None, optional: bool = False, **kw: Any
    ):  # noqa: A002
        if isinstance(options, type) and issubclass(options, Enum):
            options = [member.value for member in options]
        if isinstance(kw.get("default"), Enum):
            kw["default"] = kw["default"].value
        super().__init__(id, display_name, optional, **kw)
        self.choices = list(options or [])

    def entry(self) -> list[Any]:
        """The old list form: [choices, options]."""
        _, opts = super().entry()
        return [self.choices, opts]


class Output:
    """An output of a V3 schema."""

    io_type = "*"

    def __init__(
        self,
        id: str | None = None,
        display_name: str | None = None,
        tooltip: str | None = None,  # noqa: A002
        is_output_list: bool = False,
        **_: Any,
    ):
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list


def _io_type(name: str, io_type: str, input_base: type[Input] = Input) -> type:
    kind = type(name, (), {"io_type": io_type, "__doc__": f"The {io_type} type."})
    kind.Input = type("Input", (input_base,), {"io_type": io_type})  # type: ignore[attr-defined]
    kind.Output = type("Output", (Output,), {"io_type": io_type})  # type: ignore[attr-defined]
    return kind


def Custom(io_type: str) -> type:  # noqa: N802 - the API's name
    """A pack's own link type."""
    return _io_type(io_type, io_type)


Boolean = _io_type("Boolean", "BOOLEAN")
Int = _io_type("Int", "INT")
Float = _io_type("Float", "FLOAT")
String = _io_type("String", "STRING")
Combo = _io_type("Combo", "COMBO", ComboInput)
Image = _io_type("Image", "IMAGE")
Mask = _io_type("Mask", "MASK")
Latent = _io_type("Latent", "LATENT")
Conditioning = _io_type("Conditioning", "CONDITIONING")
Model = _io_type("Model", "MODEL")
Clip = _io_type("Clip", "CLIP")
Vae = _io_type("Vae", "VAE")
ControlNet = _io_type("ControlNet", "CONTROL_NET")
Sampler = _io_type("Sampler", "SAMPLER")
Sigmas = _io_type("Sigmas", "SIGMAS")
Noise = _io_type("Noise", "NOISE")
Guider = _io_type("Guider", "GUIDER")
UpscaleModel = _io_type("UpscaleModel", "UPSCALE_MODEL")
Audio = _io_type("Audio", "AUDIO")
Video = _io_type("Video", "VIDEO")
AnyType = _io_type("AnyType", "*")


@dataclass
class Schema:
    """What a V3 node declares about itself."""

    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    hidden: list[Hidden] = field(default_factory=list)
    description: str = ""
    is_input_list: bool = False
    is_output_node: bool = False
    is_deprecated: bool = False
    is_experimental: bool = False
    is_api_node: bool = False
    not_idempotent: bool = False
    enable_expand: bool = False
    search_aliases: list[str] = field(default_factory=list)


class NodeOutput:
    """What execute() returns: output values, and optionally UI, an expansion or a block."""

    def __init__(
        self,
        *args: Any,
        ui: Any = None,
        expand: dict[str, Any] | None = None,
        block_execution: str | None = None,
    ):
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        """The output values, or None when there are none."""
        return self.args if self.args else None

    def __getitem__(self, index: int) -> Any:
        return self.args[index]


class ComfyNode:
    """Base class of V3 nodes: classmethods define_schema and execute, optional hooks beside them."""

    hidden: HiddenHolder = HiddenHolder({})

    @classmethod
    def define_schema(cls) -> Schema:
        """The node's schema."""
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        """Compute the outputs."""
        raise NotImplementedError

    @classmethod
    def validate_inputs(cls, **kwargs: Any) -> bool | str:
        """True, or a message saying what is wrong (V1's VALIDATE_INPUTS)."""
        raise NotImplementedError

    @classmethod
    def fingerprint_inputs(cls, **kwargs: Any) -> Any:
        """A value that changes when the node must run again (V1's IS_CHANGED)."""
        raise NotImplementedError

    @classmethod
    def check_lazy_status(cls, **kwargs: Any) -> list[str]:
        """Lazy inputs still needed: by default every one not yet evaluated."""
        return [name for name, value in kwargs.items() if value is None]


ComfyNodeV3 = ComfyNode

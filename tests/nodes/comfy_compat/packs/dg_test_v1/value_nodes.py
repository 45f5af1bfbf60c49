"""Value nodes: primitives, image/mask/latent shapes, validation and caching hooks, hidden inputs."""

import folder_paths
import node_helpers
import torch
from comfy.comfy_types import IO, ComfyNodeABC

from nodes import MAX_RESOLUTION
from server import PromptServer


class V1Int(ComfyNodeABC):
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": (IO.INT, {"default": 0, "min": -100, "max": 100, "tooltip": "a number"})}
        }

    RETURN_TYPES = (IO.INT,)
    RETURN_NAMES = ("value",)
    OUTPUT_TOOLTIPS = ("the number given",)
    FUNCTION = "make"
    CATEGORY = "dg_test"
    DESCRIPTION = "Outputs an integer."
    SEARCH_ALIASES = ["number", "integer"]

    def make(self, value):
        return (value,)


class V1Show:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"value": (IO.ANY,)},
            "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True
    CATEGORY = "dg_test"

    def show(self, value, unique_id, prompt, extra_pnginfo):
        PromptServer.instance.send_sync("dg_test.shown", {"node": unique_id, "value": str(value)})
        return {
            "ui": {
                "text": [str(value)],
                "classes": [prompt[unique_id]["class_type"] if unique_id in prompt else "added"],
            }
        }


class V1Invert:
    """IMAGE in, IMAGE and MASK out; LATENT passed through doubled: ComfyUI's shapes at the boundary."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}, "optional": {"latent": ("LATENT",)}}

    RETURN_TYPES = ("IMAGE", "MASK", "LATENT")
    FUNCTION = "invert"
    CATEGORY = "dg_test"

    def invert(self, image, latent=None):
        assert image.ndim == 4 and image.shape[-1] == 3, "IMAGE arrives as [B,H,W,C]"
        mask = image.mean(dim=-1)
        out_latent = (
            {"samples": latent["samples"] * 2} if latent is not None else {"samples": torch.zeros(1, 4, 8, 8)}
        )
        return (1.0 - image, mask, out_latent)


class V1Picky:
    """VALIDATE_INPUTS with input_types: judges its own link type and combo value."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT,FLOAT",), "mode": (["plain", "loud"],)}}

    RETURN_TYPES = ("STRING",)
    FUNCTION = "say"
    CATEGORY = "dg_test"

    @classmethod
    def VALIDATE_INPUTS(cls, input_types, mode, value=None):
        if input_types.get("value") not in (None, "INT"):
            return f"value must come from an INT output, not {input_types['value']}"
        if not mode.startswith(("plain", "loud", "custom:")):
            return f"unknown mode {mode}"
        return True

    def say(self, value, mode):
        return (f"{mode}:{value}",)


STAMPS = []


class V1Stamp:
    """IS_CHANGED returning NaN (always re-run) or a stable value; NOT_IDEMPOTENT variant below."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"always": ("BOOLEAN", {"default": False})}, "hidden": {"unique_id": "UNIQUE_ID"}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "stamp"
    CATEGORY = "dg_test"

    @classmethod
    def IS_CHANGED(cls, always):
        return float("nan") if always else "same"

    def stamp(self, always, unique_id):
        STAMPS.append(unique_id)
        return (len(STAMPS),)


class V1Fresh(V1Stamp):
    NOT_IDEMPOTENT = True
    DEPRECATED = True
    EXPERIMENTAL = True


class V1Kwargs:
    """Takes undeclared linked inputs through **kwargs."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"base": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "total"
    CATEGORY = "dg_test"

    def total(self, base, **kwargs):
        return (base + sum(kwargs.values()),)


class V1Files:
    """folder_paths: combo of model files, input/output folders, MAX_RESOLUTION from `nodes`."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                "size": ("INT", {"default": 64, "min": 8, "max": MAX_RESOLUTION}),
            }
        }

    RETURN_TYPES = ("STRING",)
    FUNCTION = "where"
    CATEGORY = "dg_test"

    def where(self, ckpt_name, size):
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        node_helpers.hasher()
        return (
            f"{path}|{folder_paths.get_output_directory()}|{folder_paths.get_annotated_filepath('x.png [output]')}",
        )


VALUE_NODES = {
    "V1Int": V1Int,
    "V1Show": V1Show,
    "V1Invert": V1Invert,
    "V1Picky": V1Picky,
    "V1Stamp": V1Stamp,
    "V1Fresh": V1Fresh,
    "V1Kwargs": V1Kwargs,
    "V1Files": V1Files,
}

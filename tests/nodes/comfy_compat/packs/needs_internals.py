"""A pack that drives ComfyUI's model internals directly: refused with a message naming the module."""

import comfy.sd  # noqa: F401

NODE_CLASS_MAPPINGS = {}

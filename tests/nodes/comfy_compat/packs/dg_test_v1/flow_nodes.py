"""Flow nodes: lazy switch, list mapping, expansion (GraphBuilder), blockers, an async node."""

import asyncio

import comfy.model_management
import comfy.utils
from comfy.comfy_types import IO
from comfy_execution.graph import ExecutionBlocker
from comfy_execution.graph_utils import GraphBuilder


class V1LazySwitch:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "switch": ("BOOLEAN", {"default": True}),
                "on_true": (IO.ANY, {"lazy": True}),
                "on_false": (IO.ANY, {"lazy": True}),
            }
        }

    RETURN_TYPES = (IO.ANY,)
    FUNCTION = "pick"
    CATEGORY = "dg_test"

    def check_lazy_status(self, switch, on_true=None, on_false=None):
        if switch and on_true is None:
            return ["on_true"]
        if not switch and on_false is None:
            return ["on_false"]
        return []

    def pick(self, switch, on_true=None, on_false=None):
        return (on_true if switch else on_false,)


class V1Range:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 100})}}

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "range"
    CATEGORY = "dg_test"

    def range(self, count):
        return (list(range(count)),)


class V1Scale:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"x": ("INT", {"forceInput": True}), "factor": ("INT", {"default": 10})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "scale"
    CATEGORY = "dg_test"

    def scale(self, x, factor):
        return (x * factor,)


class V1Sum:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"xs": ("INT", {"forceInput": True})}}

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "total"
    CATEGORY = "dg_test"

    def total(self, xs):
        return (sum(xs),)


class V1Countdown:
    """Recursion through expansion: each round adds one and expands into the next round."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"n": ("INT", {"default": 3}), "acc": ("INT", {"default": 0})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "count"
    CATEGORY = "dg_test"

    def count(self, n, acc):
        if n == 0:
            return (acc,)
        graph = GraphBuilder()
        step = graph.node("V1Countdown", n=n - 1, acc=acc + 1)
        return {"result": (step.out(0),), "expand": graph.finalize()}


class V1Gate:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "value": (IO.ANY,),
                "open": ("BOOLEAN", {"default": True}),
                "message": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = (IO.ANY,)
    FUNCTION = "gate"
    CATEGORY = "dg_test"

    def gate(self, value, open, message):
        return (value,) if open else (ExecutionBlocker(message or None),)


class V1AsyncWait:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("INT", {"forceInput": True}), "seconds": ("FLOAT", {"default": 0.1})}}

    RETURN_TYPES = ("INT",)
    FUNCTION = "wait"
    CATEGORY = "dg_test"

    async def wait(self, value, seconds):
        bar = comfy.utils.ProgressBar(2)
        bar.update(1)
        for _ in range(int(seconds / 0.01)):
            comfy.model_management.throw_exception_if_processing_interrupted()
            await asyncio.sleep(0.01)
        bar.update(1)
        return (value,)


FLOW_NODES = {
    "V1LazySwitch": V1LazySwitch,
    "V1Range": V1Range,
    "V1Scale": V1Scale,
    "V1Sum": V1Sum,
    "V1Countdown": V1Countdown,
    "V1Gate": V1Gate,
    "V1AsyncWait": V1AsyncWait,
}

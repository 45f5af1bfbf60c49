"""A node pack written in ComfyUI's V3 style (ComfyExtension + io.ComfyNode), covering its protocol."""

import asyncio

from comfy_api.latest import ComfyExtension, io, ui
from comfy_execution.graph_utils import GraphBuilder

RUNS = []


class V3Int(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Int",
            display_name="V3 Integer",
            category="dg_test_v3",
            description="Outputs an integer.",
            inputs=[io.Int.Input("value", default=1, min=-10, max=10, tooltip="a number")],
            outputs=[io.Int.Output(display_name="value", tooltip="the number given")],
        )

    @classmethod
    def execute(cls, value):
        RUNS.append("V3Int")
        return io.NodeOutput(value)


class V3LazySwitch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3LazySwitch",
            category="dg_test_v3",
            inputs=[
                io.Boolean.Input("switch", default=True),
                io.AnyType.Input("on_true", lazy=True),
                io.AnyType.Input("on_false", lazy=True),
            ],
            outputs=[io.AnyType.Output()],
        )

    @classmethod
    def check_lazy_status(cls, switch, on_true=None, on_false=None):
        wanted = "on_true" if switch else "on_false"
        return [wanted] if (on_true if switch else on_false) is None else []

    @classmethod
    def execute(cls, switch, on_true=None, on_false=None):
        return io.NodeOutput(on_true if switch else on_false)


class V3Show(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Show",
            category="dg_test_v3",
            is_output_node=True,
            inputs=[io.AnyType.Input("value")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    def execute(cls, value):
        return io.NodeOutput(ui=ui.PreviewText(f"{cls.hidden.unique_id}:{value}"))


class V3Countdown(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Countdown",
            category="dg_test_v3",
            enable_expand=True,
            inputs=[io.Int.Input("n", default=2), io.Int.Input("acc", default=0)],
            outputs=[io.Int.Output()],
        )

    @classmethod
    def execute(cls, n, acc):
        if n == 0:
            return io.NodeOutput(acc)
        graph = GraphBuilder()
        step = graph.node("V3Countdown", n=n - 1, acc=acc + 10)
        return io.NodeOutput(step.out(0), expand=graph.finalize())


class V3Gate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Gate",
            category="dg_test_v3",
            inputs=[io.AnyType.Input("value"), io.String.Input("message", default="")],
            outputs=[io.AnyType.Output()],
        )

    @classmethod
    def execute(cls, value, message):
        return io.NodeOutput(block_execution=message) if message else io.NodeOutput(value)


class V3Range(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Range",
            category="dg_test_v3",
            inputs=[io.Int.Input("count", default=2)],
            outputs=[io.Int.Output(is_output_list=True)],
        )

    @classmethod
    def execute(cls, count):
        return io.NodeOutput(list(range(count)))


class V3AsyncDouble(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3AsyncDouble",
            category="dg_test_v3",
            inputs=[io.Int.Input("value", force_input=True)],
            outputs=[io.Int.Output()],
        )

    @classmethod
    async def execute(cls, value):
        await asyncio.sleep(0.01)
        return io.NodeOutput(value * 2)


class V3Picky(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="V3Picky",
            category="dg_test_v3",
            inputs=[io.Combo.Input("mode", options=["a", "b"]), io.Int.Input("value", default=0)],
            outputs=[io.String.Output()],
            not_idempotent=True,
        )

    @classmethod
    def validate_inputs(cls, mode, value):
        return True if value >= 0 else "value must not be negative"

    @classmethod
    def fingerprint_inputs(cls, mode, value):
        return float("nan") if mode == "b" else mode

    @classmethod
    def execute(cls, mode, value):
        RUNS.append("V3Picky")
        return io.NodeOutput(f"{mode}{value}")


class TestExtension(ComfyExtension):
    async def get_node_list(self):
        return [V3Int, V3LazySwitch, V3Show, V3Countdown, V3Gate, V3Range, V3AsyncDouble, V3Picky]


async def comfy_entrypoint():
    return TestExtension()

"""Node schema generation in ComfyUI's /object_info shape, and the registry."""

from __future__ import annotations

from typing import Literal

import pytest

from engine import DiffgraphError, EdgeType, Hidden, Input, Node, NodeInputs, NodeOutputs, Output, Registry


class Latentish(EdgeType):
    io_type = "LATENT"


class Sampler(Node):
    class_type = "TestSampler"
    display_name = "Test Sampler"
    category = "sampling"
    description = "samples"
    hidden = {"prompt": Hidden.PROMPT, "unique_id": Hidden.UNIQUE_ID}

    class Inputs(NodeInputs):
        latent_image: Latentish = Input(description="the latent")
        seed: int = Input(0, ge=0, le=2**64 - 1, control_after_generate=True, description="noise seed")
        cfg: float = Input(8.0, ge=0.0, le=100.0, step=0.1, round=0.01)
        sampler_name: Literal["euler", "heun"] = Input("euler")
        ckpt_name: str = Input(combo_source="checkpoints")
        text: str = Input(multiline=True, dynamicPrompts=True)
        mask: Latentish | None = Input(None, optional=True)

    class Outputs(NodeOutputs):
        latent: Latentish = Output(description="result")
        other: Latentish = Output(name="LEFTOVER")


def test_object_info_has_comfyui_shape():
    registry = Registry([Sampler], choices=lambda source: {"checkpoints": ["a.safetensors"]}[source])
    info = registry.object_info()["TestSampler"]
    assert set(info) >= {
        "input",
        "input_order",
        "output",
        "output_is_list",
        "output_name",
        "name",
        "display_name",
        "description",
        "python_module",
        "category",
        "output_node",
    }
    required = info["input"]["required"]
    assert required["latent_image"] == ["LATENT", {"tooltip": "the latent"}]
    assert required["seed"] == [
        "INT",
        {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True, "tooltip": "noise seed"},
    ]
    assert required["cfg"] == [
        "FLOAT",
        {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01},
    ]
    assert required["sampler_name"] == [["euler", "heun"], {"default": "euler"}]
    assert required["ckpt_name"] == [["a.safetensors"]]
    assert required["text"] == ["STRING", {"multiline": True, "dynamicPrompts": True}]
    assert info["input"]["optional"] == {"mask": ["LATENT"]}
    assert info["input"]["hidden"] == {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}
    assert info["input_order"] == {
        "required": ["latent_image", "seed", "cfg", "sampler_name", "ckpt_name", "text"],
        "optional": ["mask"],
        "hidden": ["prompt", "unique_id"],
    }
    assert info["output"] == ["LATENT", "LATENT"]
    assert info["output_name"] == ["LATENT", "LEFTOVER"]
    assert info["output_is_list"] == [False, False]
    assert info["output_tooltips"] == ["result", ""]
    assert (info["name"], info["display_name"], info["category"], info["output_node"]) == (
        "TestSampler",
        "Test Sampler",
        "sampling",
        False,
    )


def test_registry_is_explicit_and_refuses_duplicates():
    first = Registry([Sampler])
    assert "TestSampler" in first and "TestSampler" not in Registry()

    class Other(Sampler):
        pass

    with pytest.raises(DiffgraphError, match="registered twice"):
        first.register(Other)


def test_input_refuses_unknown_widget_option():
    with pytest.raises(TypeError, match="unknown widget option"):
        Input(0, colour="red")


def test_schema_refuses_a_hidden_input_the_engine_cannot_supply():
    class Dynamic(Node):
        class_type = "Dynamic"
        hidden = {"dynprompt": "DYNPROMPT"}

        class Inputs(NodeInputs):
            pass

        class Outputs(NodeOutputs):
            pass

    with pytest.raises(DiffgraphError, match="DYNPROMPT.*Hidden.PROMPT") as caught:
        Registry([Dynamic])
    assert caught.value.code == "bad_node_class"


def test_schema_refuses_raw_link_inputs_the_executor_would_resolve():
    with pytest.raises(TypeError, match="rawLink"):
        Input(description="the link itself", rawLink=True)


def test_schema_list_outputs_and_whole_list_inputs_are_typed_by_their_items():
    from engine import Input, Node, NodeInputs, NodeOutputs, Output, Registry

    class Spread(Node):
        class_type = "Spread"
        input_is_list = True

        class Inputs(NodeInputs):
            values: list[int] = Input(description="numbers, as one list")

        class Outputs(NodeOutputs):
            items: list[float] = Output(is_list=True)

    entry = Registry([Spread]).object_info()["Spread"]
    assert entry["input"]["required"]["values"][0] == "INT"
    assert entry["output"] == ["FLOAT"] and entry["output_is_list"] == [True]

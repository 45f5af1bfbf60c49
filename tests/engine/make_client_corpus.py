"""Write the UI workflows of the client-prompt corpus (tests/engine/data/client_prompts/corpus).

Usage: `python -m tests.engine.make_client_corpus`, then `python -m tests.engine.make_client_prompts` to
capture what the web client queues for them. Each file is an API prompt on the builtin nodes turned into a
UI graph by `api_to_ui`, then edited where the case needs what only a UI graph has (titles, properties,
modes, primitives, subgraphs, link ids, node order).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import ModelPaths
from engine.formats.ui_export import api_to_ui
from tests.engine.make_client_prompts import CHECKPOINT, CORPUS

UI = dict[str, Any]
DIGITS = "{0|1|2|3|4|5|6|7|8|9}"
SUBGRAPH_ID = "c0000000-0000-4000-8000-00000000000c"


def graph(pos: str, neg: str, tail: str = "latent", prefix: str = "client") -> dict[str, Any]:
    """A small txt2img API prompt on the tiny checkpoint, ending in SaveLatent or VAEDecode + SaveImage."""
    prompt: dict[str, Any] = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": pos, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": neg, "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                **{"seed": 42, "steps": 2, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal"},
                **{"denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0]},
                "latent_image": ["5", 0],
            },
        },
    }
    if tail == "latent":
        prompt["9"] = {"class_type": "SaveLatent", "inputs": {"filename_prefix": prefix, "samples": ["3", 0]}}
    else:
        prompt["8"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}}
        prompt["9"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]}}
    return prompt


def node(ui: UI, node_id: int) -> dict[str, Any]:
    """The UI node with this id."""
    return next(n for n in ui["nodes"] if n["id"] == node_id)


def renumber_link(ui: UI, old: int, new: int) -> None:
    """Give a link another id everywhere it is named."""
    for link in ui["links"]:
        if link[0] == old:
            link[0] = new
    for item in ui["nodes"]:
        for slot in item.get("inputs") or []:
            if slot.get("link") == old:
                slot["link"] = new
        for slot in item.get("outputs") or []:
            if slot.get("links"):
                slot["links"] = [new if lid == old else lid for lid in slot["links"]]
    ui["last_link_id"] = max(ui["last_link_id"], new)


def comments(info: dict[str, Any]) -> UI:
    """Line and block comments in dynamic-prompt text (CRLF, U+2028, a URL, an unclosed block)."""
    pos = (
        "a red fox // the animal\r\nin a snowy forest /* block\nspanning lines */, golden light\n"
        "see http://example.com/ref for the look // URL: everything from // goes\n"
        "a/b and a/ /b stay, /* unclosed block\u2028next line // after U+2028"
    )
    return api_to_ui(graph(pos, "// only a comment\nblurry /**/ low quality//no space"), info)


def choices(info: dict[str, Any]) -> UI:
    """`{a|b}` groups with nesting, escapes, an unclosed group, a trailing backslash, a muted node."""
    pos = "a {red|green|blue} {fox|{wolf|bear}|} \\{not a group\\} {x\\|y|z} {unclosed|group"
    neg = "{blurry|noisy|dark}, {{a|b}|c} // {comment|ignored}\n{last|one} ends\\"
    prompt = graph(pos, neg)
    prompt["10"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "{muted|node}", "clip": ["4", 1]}}
    ui = api_to_ui(prompt, info)
    node(ui, 10)["mode"] = 2
    return ui


def choices_order(info: dict[str, Any]) -> UI:
    """Three choice texts whose execution order (7, 11, 6) is neither file order nor id order."""
    prompt = graph("first " + DIGITS, "second " + DIGITS)
    prompt["11"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "unused " + DIGITS, "clip": ["4", 1]}}
    prompt["3"]["inputs"].update(positive=["7", 0], negative=["6", 0])
    ui = api_to_ui(prompt, info)
    ui["nodes"].reverse()
    clip_links = sorted((link[3], link[0]) for link in ui["links"] if link[1] == 4 and link[2] == 1)
    for target, link_id in clip_links:  # ids 102 (to 7), 108 (to 11), 999 (to 6)
        renumber_link(ui, link_id, 999 if target == 6 else link_id + 100)
    return ui


def filename_tokens(info: dict[str, Any]) -> UI:
    """`%date:...%` and `%Node.widget%` tokens in SaveImage's prefix, by title and by S&R name."""
    prefix = (
        "%date:yyyy-MM-dd%/%KSampler.seed%_%Base.ckpt_name%_%Positive.text%_%date:yy.M.d h:m:s%_"
        "%date:yyyy.MM%_%date:hhmmss%_%KSampler.cfg%_%KSampler.denoise%_%KSampler.control_after_generate%_"
        "%Nope.seed%_%KSampler.nope%_%width%x%height%_%Alias.batch_size%"
    )
    text = 'odd: a/b\\c *?<>|" // comment\nline2'
    ui = api_to_ui(graph(text, "neg", tail="image", prefix=prefix), info)
    node(ui, 4)["title"] = "Base"
    node(ui, 6)["title"] = "Positive"
    node(ui, 5)["properties"] = {"Node name for S&R": "Alias"}
    return ui


def pack_meta(info: dict[str, Any]) -> UI:
    """Valid and invalid cnr_id / aux_id / ver node properties."""
    ui = api_to_ui(graph("plain", "plain neg", prefix="meta"), info)
    properties = {
        4: {"cnr_id": "comfy-core", "ver": "0.3.64"},
        6: {"cnr_id": "comfy-core", "ver": "v1.2.3-beta.1"},
        7: {"cnr_id": "-bad-", "ver": "not a version"},
        5: {"aux_id": "some-user/some.repo", "ver": "abc123f"},
        3: {"aux_id": "bad--user/repo", "ver": "unknown", "cnr_id": "x"},
        9: {"ver": "vunknown", "cnr_id": "a_b.c-d"},
    }
    for node_id, extra in properties.items():
        node(ui, node_id).setdefault("properties", {}).update(extra)
    return ui


def feed_primitive(ui: UI, target_id: int, widget: str, value: str, primitive_id: int, replace: bool) -> None:
    """Add a STRING PrimitiveNode wired to a widget input of node target_id."""
    link_id = ui["last_link_id"] + 1
    ui["last_link_id"] = link_id
    target = node(ui, target_id)
    target["inputs"].append({"name": widget, "type": "STRING", "widget": {"name": widget}, "link": link_id})
    output = {
        "name": "STRING",
        "type": "STRING",
        "links": [link_id],
        "slot_index": 0,
        "widget": {"name": widget},
    }
    ui["nodes"].append(
        {
            **{
                "id": primitive_id,
                "type": "PrimitiveNode",
                "pos": [0, 600 + primitive_id],
                "size": [300, 100],
            },
            **{"flags": {}, "order": 0, "mode": 0, "inputs": [], "outputs": [output]},
            "title": f"Primitive {primitive_id}",
            "properties": {"Run widget replace on values": replace},
            "widgets_values": [value],
        }
    )
    ui["links"].append([link_id, primitive_id, 0, target_id, len(target["inputs"]) - 1, "STRING"])
    ui["last_node_id"] = max(ui["last_node_id"], primitive_id)


def primitives(info: dict[str, Any]) -> UI:
    """A primitive feeding dynamic text, and a token-expanding one feeding a filename prefix."""
    ui = api_to_ui(graph("own value, never used", "neg {one|two}", tail="image", prefix="unused"), info)
    feed_primitive(ui, 6, "text", "from a primitive: {cat|dog} // cut\nkept", 20, False)
    feed_primitive(ui, 9, "filename_prefix", "%date:yyyy%/p%KSampler.steps%_%date:MM%", 21, True)
    return ui


def _encode_definition() -> dict[str, Any]:
    """A subgraph of two CLIPTextEncode nodes (the second unused), listed out of id order."""

    def encoder(node_id: int, link: int, out: list[int], text: str) -> dict[str, Any]:
        return {
            **{"id": node_id, "type": "CLIPTextEncode", "pos": [0, 200 * node_id], "size": [300, 150]},
            **{
                "flags": {},
                "order": 0,
                "mode": 0,
                "inputs": [{"name": "clip", "type": "CLIP", "link": link}],
            },
            "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": out}],
            "properties": {"Node name for S&R": "CLIPTextEncode"},
            "widgets_values": [text],
        }

    def link(link_id: int, origin: int, target: int, kind: str) -> dict[str, Any]:
        return {
            "id": link_id,
            "origin_id": origin,
            "origin_slot": 0,
            "target_id": target,
            "target_slot": 0,
            "type": kind,
        }

    return {
        **{"id": SUBGRAPH_ID, "version": 1, "name": "Encode", "revision": 0, "config": {}},
        "state": {"lastGroupId": 0, "lastNodeId": 2, "lastLinkId": 3, "lastRerouteId": 0},
        "inputNode": {"id": -10, "bounding": [-300, 0, 120, 60]},
        "outputNode": {"id": -20, "bounding": [900, 0, 120, 60]},
        "inputs": [{"id": "in-clip", "name": "clip", "type": "CLIP", "linkIds": [1, 3]}],
        "outputs": [{"id": "out-cond", "name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [2]}],
        **{"widgets": [], "groups": [], "extra": {}},
        "nodes": [
            encoder(2, 3, [], "unused inner {p|q|r}"),
            encoder(1, 1, [2], "inner {red|green|blue} // note"),
        ],
        "links": [link(1, -10, 1, "CLIP"), link(2, 1, -20, "CONDITIONING"), link(3, -10, 2, "CLIP")],
    }


def subgraph(info: dict[str, Any]) -> UI:
    """The sampler's positive and negative each come from an instance of the same subgraph."""
    ui = api_to_ui(graph("outer {x|y}", "outer neg"), info)
    for instance_id, target_slot in ((20, 1), (21, 2)):
        old = node(ui, 3)["inputs"][target_slot]["link"]
        link_in, link_out = ui["last_link_id"] + 1, ui["last_link_id"] + 2
        ui["last_link_id"] += 2
        ui["links"] = [link for link in ui["links"] if link[0] != old]
        for slot in (s for n in ui["nodes"] for s in n.get("outputs") or []):
            if slot.get("links"):
                slot["links"] = [lid for lid in slot["links"] if lid != old]
        node(ui, 3)["inputs"][target_slot]["link"] = link_out
        node(ui, 4)["outputs"][1]["links"].append(link_in)
        ui["links"] += [
            [link_in, 4, 1, instance_id, 0, "CLIP"],
            [link_out, instance_id, 0, 3, target_slot, "CONDITIONING"],
        ]
        ui["nodes"].append(
            {
                **{
                    "id": instance_id,
                    "type": SUBGRAPH_ID,
                    "pos": [400, 100 * instance_id],
                    "size": [200, 60],
                },
                **{"flags": {}, "order": 0, "mode": 0},
                "inputs": [{"name": "clip", "type": "CLIP", "link": link_in}],
                "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "links": [link_out]}],
                **{"properties": {}, "widgets_values": []},
            }
        )
        ui["last_node_id"] = max(ui["last_node_id"], instance_id)
    ui["definitions"] = {"subgraphs": [_encode_definition()]}
    return ui


def subgraph_promoted(info: dict[str, Any]) -> UI:
    """The inner text promoted to a subgraph input: instance values reach the prompt untransformed."""
    ui = subgraph(info)
    definition = ui["definitions"]["subgraphs"][0]
    definition["inputs"].append({"id": "in-text", "name": "text", "type": "STRING", "linkIds": [4]})
    definition["links"].append(
        {"id": 4, "origin_id": -10, "origin_slot": 1, "target_id": 1, "target_slot": 1, "type": "STRING"}
    )
    inner = next(n for n in definition["nodes"] if n["id"] == 1)
    inner["inputs"].append({"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 4})
    definition["state"]["lastLinkId"] = 4
    for instance_id, value in ((20, "promoted {a|b} // c"), (21, "second {c|d}")):
        instance = node(ui, instance_id)
        instance["inputs"].append(
            {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": None}
        )
        instance["widgets_values"] = [value]
    node(ui, 21)["properties"] = {"proxyWidgets": [["-1", "text"]]}
    return ui


def numbers(info: dict[str, Any]) -> UI:
    """Numbers JavaScript holds differently, and tokens-only text in a save node's prefix."""
    prompt = graph("plain", "plain", prefix="kept {a|b} // as typed")
    prompt["3"]["inputs"].update(seed=9007199254740993, cfg=7.123456789012345678, denoise=0.30000000000000004)
    prompt["3"]["inputs"]["steps"] = 20.0
    prompt["5"]["inputs"]["width"] = 64.0
    return api_to_ui(prompt, info)


CASES: dict[str, Callable[[dict[str, Any]], UI]] = {
    fn.__name__: fn
    for fn in (comments, choices, choices_order, filename_tokens, pack_meta, primitives, subgraph, numbers)
    + (subgraph_promoted,)
}


def main() -> int:
    """Write every corpus file."""
    from nodes.pack import build_registry

    with tempfile.TemporaryDirectory() as tmp:
        models, input_dir = Path(tmp) / "models", Path(tmp) / "input"
        (models / "checkpoints").mkdir(parents=True)
        (models / "checkpoints" / CHECKPOINT).write_bytes(b"")
        input_dir.mkdir()
        info = build_registry(ModelPaths(models), input_dir).object_info()
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        text = json.dumps(case(info), indent=2, ensure_ascii=False) + "\n"
        (CORPUS / f"{name}.json").write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

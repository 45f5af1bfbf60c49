"""Reading and writing workflows embedded in PNG, WebP, GIF and video files."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from engine.formats.media_metadata import (
    MediaMetadataError,
    embed_gif_metadata,
    embed_webp_metadata,
    png_info,
    read_embedded_workflow,
    read_png_text,
)

PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 1}}}
WORKFLOW = {"nodes": [], "links": [], "extra": {"note": "日本"}}


def png_bytes(pnginfo=None) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=pnginfo)
    return buffer.getvalue()


def add_chunk(data: bytes, kind: bytes, body: bytes) -> bytes:
    """Insert a raw chunk right after IHDR."""
    chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return data[:33] + chunk + data[33:]


def test_png_info_round_trips_prompt_and_workflow():
    data = png_bytes(png_info(PROMPT, {"workflow": WORKFLOW}))
    embedded = read_embedded_workflow(data)
    assert embedded.found and embedded.prompt == PROMPT and embedded.workflow == WORKFLOW
    prompt, workflow = embedded
    assert (prompt, workflow) == (PROMPT, WORKFLOW)


def test_read_png_text_accepts_itxt_ztxt_and_apng_comf_chunks():
    info = PngInfo()
    info.add_itxt("workflow", json.dumps(WORKFLOW, ensure_ascii=False), zip=True)
    data = add_chunk(png_bytes(info), b"zTXt", b"note\x00\x00" + zlib.compress(b"hello"))
    data = add_chunk(data, b"comf", b"prompt\x00" + json.dumps(PROMPT).encode())
    texts = read_png_text(data)
    assert texts["note"] == "hello"
    embedded = read_embedded_workflow(data)
    assert embedded.prompt == PROMPT and embedded.workflow == WORKFLOW


def test_read_embedded_workflow_without_metadata_is_not_found():
    assert not read_embedded_workflow(png_bytes()).found


def test_read_embedded_workflow_bad_json_names_the_key():
    info = PngInfo()
    info.add_text("workflow", "{not json")
    with pytest.raises(MediaMetadataError, match="'workflow'"):
        read_embedded_workflow(png_bytes(info))


def test_read_embedded_workflow_unknown_bytes_is_an_error():
    with pytest.raises(MediaMetadataError):
        read_embedded_workflow(b"definitely not media")


def test_read_embedded_workflow_missing_file_is_an_error(tmp_path):
    with pytest.raises(MediaMetadataError, match="cannot read"):
        read_embedded_workflow(tmp_path / "missing.png")


def test_embed_webp_metadata_in_a_still_webp_adds_vp8x():
    buffer = io.BytesIO()
    Image.new("RGB", (5, 7), (9, 9, 9)).save(buffer, format="WEBP")
    data = embed_webp_metadata(buffer.getvalue(), PROMPT, {"workflow": WORKFLOW})
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (5, 7)
        assert image.getexif()[0x0110] == "prompt:" + json.dumps(PROMPT)
    assert read_embedded_workflow(data).workflow == WORKFLOW


def test_embed_gif_metadata_keeps_the_image_readable():
    buffer = io.BytesIO()
    Image.new("RGB", (6, 6), (200, 0, 0)).save(buffer, format="GIF")
    long_workflow = {**WORKFLOW, "padding": "x" * 1000}  # spans several 255-byte sub-blocks
    data = embed_gif_metadata(buffer.getvalue(), PROMPT, {"workflow": long_workflow})
    with Image.open(io.BytesIO(data)) as image:
        assert image.convert("RGB").getpixel((1, 1)) == (200, 0, 0)
    assert read_embedded_workflow(data).workflow == long_workflow

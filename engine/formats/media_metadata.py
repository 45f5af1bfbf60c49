"""Workflows embedded in media files: ComfyUI's metadata in PNG, WebP, GIF and video containers.

Writers and readers of one format live together so that what diffgraph writes reads back the same.
Conventions (ComfyUI's, so files move freely between the two):

- PNG: one tEXt chunk `prompt` = json.dumps(API prompt) and one per extra_pnginfo key (normally
  `workflow` = UI JSON), ASCII. Reading also accepts iTXt, zTXt and animated PNG `comf` chunks.
- WebP: EXIF IFD0 strings `"prompt:<json>"` in tag 0x0110, then `"<key>:<json>"` in 0x010F, 0x010E...
- Video containers (MP4, WebM, MKV, MOV): container metadata keys `prompt` and the extra_pnginfo keys.
  Matroska upper-cases tag names, so keys are read case-insensitively.
- GIF has no ComfyUI convention; diffgraph writes one comment extension per key, `"<key>:<json>"`,
  before the first frame, the same text the WebP tags carry.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import WorkflowFormatError
from engine.strict_json import InputRejected, loads_strict

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WEBP_EXIF_FIRST_TAG = 0x0110
WEBP_EXIF_NEXT_TAG = 0x010F


class MediaMetadataError(WorkflowFormatError):
    """A media file that cannot be read, or whose embedded workflow is not valid JSON."""

    code = "invalid_media_metadata"


@dataclass(frozen=True)
class EmbeddedWorkflow:
    """What a media file carries: the API prompt, the UI workflow and every other JSON entry."""

    prompt: dict[str, Any] | None = None
    workflow: dict[str, Any] | None = None
    entries: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        """True when the file carries a prompt or a UI workflow."""
        return self.prompt is not None or self.workflow is not None

    def __iter__(self) -> Iterator[dict[str, Any] | None]:
        """Unpacks as `prompt, workflow = read_embedded_workflow(path)`."""
        return iter((self.prompt, self.workflow))


def metadata_items(
    prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None
) -> list[tuple[str, str]]:
    """(key, JSON text) pairs in ComfyUI's order: `prompt` first, then each extra_pnginfo key."""
    items = []
    if prompt is not None:
        items.append(("prompt", json.dumps(prompt)))
    for key, value in (extra_pnginfo or {}).items():
        items.append((str(key), json.dumps(value)))
    return items


# ---------------------------------------------------------------------------------------------- PNG


def png_info(prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None) -> Any:
    """A PIL PngInfo with ComfyUI's tEXt chunks, to pass as `pnginfo=` to Image.save."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, text in metadata_items(prompt, extra_pnginfo):
        info.add_text(key, text)
    return info


def apng_info(prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None) -> Any:
    """A PIL PngInfo with ComfyUI's animated-PNG `comf` chunks (`key\\0json`, after the image data)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, text in metadata_items(prompt, extra_pnginfo):
        info.add(b"comf", key.encode("latin-1") + b"\0" + text.encode("latin-1"), after_idat=True)
    return info


def _png_text_chunk(kind: bytes, data: bytes) -> tuple[str, str] | None:
    """Decode one tEXt/zTXt/iTXt/comf chunk into (key, text); None for chunks carrying no text."""
    key_bytes, sep, rest = data.partition(b"\0")
    if not sep:
        return None
    key = key_bytes.decode("latin-1")
    if kind in (b"tEXt", b"comf"):
        return key, rest.decode("latin-1")
    if kind == b"zTXt":
        return key, zlib.decompress(rest[1:]).decode("latin-1")
    compressed, _method = rest[0], rest[1]
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    return key, (zlib.decompress(text) if compressed else text).decode("utf-8")


def read_png_text(data: bytes) -> dict[str, str]:
    """Every text chunk of a PNG (tEXt, zTXt, iTXt, and ComfyUI's APNG `comf`), key -> text."""
    if not data.startswith(PNG_SIGNATURE):
        raise MediaMetadataError("not a PNG file")
    texts: dict[str, str] = {}
    offset = len(PNG_SIGNATURE)
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        if kind in (b"tEXt", b"zTXt", b"iTXt", b"comf"):
            try:
                item = _png_text_chunk(kind, body)
            except (zlib.error, IndexError, UnicodeDecodeError) as exc:
                raise MediaMetadataError(f"PNG {kind.decode()} chunk is corrupt: {exc}") from exc
            if item is not None:
                texts.setdefault(item[0], item[1])
        if kind == b"IEND":
            break
        offset += 12 + length
    return texts


# --------------------------------------------------------------------------------------------- WebP


def _riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (fourcc, payload) chunks of a RIFF WEBP file."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise MediaMetadataError("not a WebP file")
    chunks = []
    offset = 12
    while offset + 8 <= len(data):
        fourcc, size = struct.unpack("<4sI", data[offset : offset + 8])
        chunks.append((fourcc, data[offset + 8 : offset + 8 + size]))
        offset += 8 + size + (size & 1)
    return chunks


def _riff_pack(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """Reassemble WEBP chunks into a RIFF file with the right sizes and padding."""
    body = b"".join(
        fourcc + struct.pack("<I", len(p)) + p + (b"\0" if len(p) & 1 else b"") for fourcc, p in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _vp8x_for_simple(data: bytes) -> bytes:
    """A VP8X header for a simple (single-image) WebP, so it may carry an EXIF chunk."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return bytes([0, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


def webp_exif_bytes(prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None) -> bytes:
    """A TIFF EXIF block with ComfyUI's `"<key>:<json>"` strings in tags 0x0110, 0x010F, 0x010E..."""
    from PIL import Image

    exif = Image.Exif()
    for index, (key, text) in enumerate(metadata_items(prompt, extra_pnginfo)):
        exif[WEBP_EXIF_FIRST_TAG if index == 0 else WEBP_EXIF_NEXT_TAG - (index - 1)] = f"{key}:{text}"
    return exif.tobytes().removeprefix(b"Exif\x00\x00")


def embed_webp_metadata(
    data: bytes, prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None
) -> bytes:
    """Add ComfyUI's EXIF workflow block to WebP bytes (replacing any EXIF chunk there)."""
    if not metadata_items(prompt, extra_pnginfo):
        return data
    chunks = [(c, p) for c, p in _riff_chunks(data) if c != b"EXIF"]
    if chunks[0][0] != b"VP8X":
        chunks.insert(0, (b"VP8X", _vp8x_for_simple(data)))
    flags = chunks[0][1][0] | 0x08  # the VP8X "EXIF present" flag
    chunks[0] = (b"VP8X", bytes([flags]) + chunks[0][1][1:])
    chunks.append((b"EXIF", webp_exif_bytes(prompt, extra_pnginfo)))
    return _riff_pack(chunks)


def _split_key_text(values: list[str]) -> dict[str, str]:
    """`"<key>:<json>"` strings -> {key: json}; strings without such a key are skipped."""
    texts: dict[str, str] = {}
    for value in values:
        key, sep, text = value.partition(":")
        if sep and key.isidentifier():
            texts.setdefault(key, text)
    return texts


def read_webp_text(data: bytes) -> dict[str, str]:
    """The `"<key>:<json>"` strings of a WebP's EXIF IFD0, key -> JSON text."""
    from PIL import Image

    values: list[str] = []
    for fourcc, payload in _riff_chunks(data):
        if fourcc == b"EXIF":
            exif = Image.Exif()
            exif.load(payload if payload.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + payload)
            values += [v.rstrip("\0") for v in exif.values() if isinstance(v, str)]
    return _split_key_text(values)


# ---------------------------------------------------------------------------------------------- GIF


def _gif_header_end(data: bytes) -> int:
    """Offset just past a GIF's header, logical screen descriptor and global colour table."""
    if not data.startswith((b"GIF87a", b"GIF89a")) or len(data) < 13:
        raise MediaMetadataError("not a GIF file")
    packed = data[10]
    return 13 + (3 * 2 ** ((packed & 7) + 1) if packed & 0x80 else 0)


def embed_gif_metadata(
    data: bytes, prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None
) -> bytes:
    """Insert one comment extension per metadata key (`"<key>:<json>"`) before the first frame."""
    blocks = b""
    for key, text in metadata_items(prompt, extra_pnginfo):
        payload = f"{key}:{text}".encode("ascii")
        sub_blocks = b"".join(
            bytes([len(c)]) + c for c in (payload[i : i + 255] for i in range(0, len(payload), 255))
        )
        blocks += b"\x21\xfe" + sub_blocks + b"\x00"
    end = _gif_header_end(data)
    return data[:end] + blocks + data[end:]


def read_gif_text(data: bytes) -> dict[str, str]:
    """The `"<key>:<json>"` comment extensions found before a GIF's first frame."""
    offset = _gif_header_end(data)
    comments: list[str] = []
    while offset + 2 <= len(data) and data[offset] == 0x21:
        label = data[offset + 1]
        offset += 2
        payload = bytearray()
        while offset < len(data) and data[offset] != 0:
            payload += data[offset + 1 : offset + 1 + data[offset]]
            offset += 1 + data[offset]
        offset += 1
        if label == 0xFE:
            comments.append(payload.decode("latin-1"))
    return _split_key_text(comments)


# ---------------------------------------------------------------------------- video containers + API


def container_metadata(
    prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None
) -> dict[str, str]:
    """Container metadata for a PyAV output (`container.metadata.update(...)`), ComfyUI's keys."""
    return dict(metadata_items(prompt, extra_pnginfo))


def read_container_text(source: Path | bytes, name: str = "the file") -> dict[str, str]:
    """Container-level metadata of a video file (path or bytes) through PyAV, keys lower-cased."""
    import av

    try:
        with av.open(str(source) if isinstance(source, Path) else io.BytesIO(source)) as container:
            return {key.lower(): value for key, value in container.metadata.items()}
    except av.error.FFmpegError as exc:
        raise MediaMetadataError(f"{name} is not a media file PyAV can read: {exc}") from exc


def _parse_entries(texts: Mapping[str, str], source: str) -> EmbeddedWorkflow:
    """Parse JSON texts; `prompt`/`workflow` must be JSON objects, other non-JSON texts are skipped."""
    entries: dict[str, Any] = {}
    for key, text in texts.items():
        try:
            entries[key] = loads_strict(text, f"the {key!r} embedded in {source}")
        except InputRejected as exc:
            if key in ("prompt", "workflow"):
                raise MediaMetadataError(exc.message) from exc
    for key in ("prompt", "workflow"):
        if key in entries and not isinstance(entries[key], dict):
            raise MediaMetadataError(f"the {key!r} embedded in {source} is not a JSON object")
    prompt = entries.get("prompt")
    if prompt is not None:
        prompt = _without_change_records(prompt)
    return EmbeddedWorkflow(prompt=prompt, workflow=entries.get("workflow"), entries=entries)


def _without_change_records(prompt: dict[str, Any]) -> dict[str, Any]:
    """The prompt without the per-node `is_changed` values ComfyUI stores beside the inputs it ran.

    They record what the IS_CHANGED hooks answered during that run; a new run asks the hooks again,
    so they are not part of the workflow and would only make identical prompts compare unequal.
    """
    return {
        node_id: {k: v for k, v in node.items() if k != "is_changed"} if isinstance(node, dict) else node
        for node_id, node in prompt.items()
    }


def read_embedded_workflow(source: Path | str | bytes) -> EmbeddedWorkflow:
    """Read the API prompt and UI workflow embedded in a PNG, WebP, GIF or video file (path or bytes).

    Returns an EmbeddedWorkflow whose `found` is False when the file carries none; raises
    MediaMetadataError for files that are not readable media or carry invalid JSON.
    """
    if isinstance(source, bytes):
        data, name, path = source, "the uploaded file", None
    else:
        path = Path(source)
        name = path.name
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MediaMetadataError(f"cannot read {path}: {exc.strerror}") from exc
    if data.startswith(PNG_SIGNATURE):
        return _parse_entries(read_png_text(data), name)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _parse_entries(read_webp_text(data), name)
    if data.startswith((b"GIF87a", b"GIF89a")):
        return _parse_entries(read_gif_text(data), name)
    return _parse_entries(read_container_text(path if path is not None else data, name), name)

"""Template thumbnails drawn by diffgraph: a small picture of a UI workflow's graph (nodes and links).

`python -m diffgraph.thumbnails workflows/ui` writes `workflows/ui/thumbnails/<name>-1.webp` for each
UI workflow, the file name the web client's Templates dialog asks for. Drawn from the workflow itself,
so the pictures need no model weights and stay in step with the files.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

SIZE = (384, 384)  # the Templates dialog shows square cards
MARGIN = 16
BACKGROUND = (32, 34, 38)
NODE_BODY = (53, 56, 62)
NODE_TITLE = (72, 76, 84)
OUTPUT_TITLE = (46, 110, 72)
LINK_COLOURS = {
    "MODEL": (180, 160, 230),
    "CLIP": (240, 210, 80),
    "VAE": (240, 110, 110),
    "CONDITIONING": (240, 170, 90),
    "LATENT": (240, 130, 200),
    "IMAGE": (110, 180, 240),
}
DEFAULT_LINK = (170, 170, 170)
SLOT_HEIGHT = 22
TITLE_HEIGHT = 30


def _bounds(nodes: list[dict[str, Any]]) -> tuple[float, float, float, float]:
    left = min(n["pos"][0] for n in nodes)
    top = min(n["pos"][1] for n in nodes) - TITLE_HEIGHT
    right = max(n["pos"][0] + n["size"][0] for n in nodes)
    bottom = max(n["pos"][1] + n["size"][1] for n in nodes)
    return left, top, right, bottom


def render(workflow: dict[str, Any], size: tuple[int, int] = SIZE) -> Image.Image:
    """A picture of the workflow's graph: title bars, bodies, and links coloured by type."""
    image = Image.new("RGB", size, BACKGROUND)
    nodes = [n for n in workflow.get("nodes", []) if "pos" in n and "size" in n]
    if not nodes:
        return image
    left, top, right, bottom = _bounds(nodes)
    scale = min((size[0] - 2 * MARGIN) / (right - left), (size[1] - 2 * MARGIN) / (bottom - top))
    shift_x = (size[0] - (right - left) * scale) / 2
    shift_y = (size[1] - (bottom - top) * scale) / 2

    def at(x: float, y: float) -> tuple[float, float]:
        return (x - left) * scale + shift_x, (y - top) * scale + shift_y

    draw = ImageDraw.Draw(image)
    by_id = {n["id"]: n for n in nodes}
    for link in workflow.get("links", []):
        _, origin, origin_slot, target, target_slot, kind = link[:6]
        if origin not in by_id or target not in by_id:
            continue
        src, dst = by_id[origin], by_id[target]
        start = at(src["pos"][0] + src["size"][0], src["pos"][1] + (origin_slot + 0.5) * SLOT_HEIGHT)
        end = at(dst["pos"][0], dst["pos"][1] + (target_slot + 0.5) * SLOT_HEIGHT)
        draw.line([start, end], fill=LINK_COLOURS.get(str(kind), DEFAULT_LINK), width=2)
    font = ImageFont.load_default(size=max(8, int(14 * scale * 1.6)))
    for node in nodes:
        x0, y0 = at(node["pos"][0], node["pos"][1] - TITLE_HEIGHT)
        x1, y1 = at(node["pos"][0] + node["size"][0], node["pos"][1] + node["size"][1])
        title_bottom = at(0, node["pos"][1])[1]
        is_output = str(node.get("type", "")).startswith(("Save", "Preview"))
        draw.rounded_rectangle([x0, y0, x1, y1], radius=4, fill=NODE_BODY)
        draw.rounded_rectangle(
            [x0, y0, x1, title_bottom], radius=4, fill=OUTPUT_TITLE if is_output else NODE_TITLE
        )
        title = str(node.get("title") or node.get("type", ""))
        while title and font.getlength(title) > x1 - x0 - 8:
            title = title[:-1]
        draw.text((x0 + 4, y0 + 2), title, fill=(230, 230, 230), font=font)
    return image


def write_thumbnails(folder: Path) -> list[Path]:
    """Render `<name>-1.webp` into folder/thumbnails for every UI workflow in folder."""
    out_dir = folder / "thumbnails"
    out_dir.mkdir(exist_ok=True)
    written = []
    for path in sorted(folder.glob("*.json")):
        target = out_dir / f"{path.stem}-1.webp"
        render(json.loads(path.read_text())).save(target, format="WEBP", quality=80, method=6)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: render the thumbnails of one folder of UI workflows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("workflows/ui"))
    args = parser.parse_args(argv)
    for path in write_thumbnails(args.folder):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

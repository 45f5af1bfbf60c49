"""Writes input/*.png, the control pictures of the whole-workflow cases here (small, smooth or sparse)."""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent / "input"


def edges(size: int) -> Image.Image:
    """White outlines on black, as a Canny edge map looks: a circle, a box and a diagonal."""
    image = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(image)
    draw.ellipse((size // 5, size // 5, size // 2, size // 2), outline=(255, 255, 255), width=2)
    draw.rectangle((size // 2, size // 2, size - 12, size - 20), outline=(255, 255, 255), width=2)
    draw.line((0, size - 1, size // 2, size // 2), fill=(255, 255, 255), width=2)
    return image


def depth(size: int) -> Image.Image:
    """A grey depth map: a far gradient with a near disc."""
    image = Image.new("RGB", (size, size))
    pixels = image.load()
    for y in range(size):
        for x in range(size):
            v = 40 + y // 2
            pixels[x, y] = (v, v, v)
    ImageDraw.Draw(image).ellipse((size // 3, size // 4, size * 3 // 4, size * 2 // 3), fill=(230, 230, 230))
    return image


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    edges(128).save(HERE / "edges.png")
    depth(128).save(HERE / "depth.png")

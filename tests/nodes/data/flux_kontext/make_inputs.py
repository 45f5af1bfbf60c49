"""Writes input/*.png, the pictures of the whole-workflow cases here (smooth shapes, so they stay small)."""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent / "input"


def picture(width: int, height: int, shade: int) -> Image.Image:
    """A diagonal gradient with a disc and a bar on it."""
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for y in range(height):
        for x in range(width):
            pixels[x, y] = (shade + x // 2, 60 + y, 200 - (x + y) // 3)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(230, 210, 40))
    draw.rectangle((width // 2, height * 2 // 3, width - 8, height * 2 // 3 + 10), fill=(20, 30, 90))
    return image


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    picture(128, 128, 40).save(HERE / "kontext_a.png")
    picture(96, 64, 120).save(HERE / "kontext_b.png")
    fill = picture(128, 128, 80).convert("RGBA")
    # Transparent pixels are LoadImage's mask (1 - alpha): the region Fill repaints.
    fill.paste((0, 0, 0, 0), (40, 48, 104, 96))
    fill.save(HERE / "fill_source.png")

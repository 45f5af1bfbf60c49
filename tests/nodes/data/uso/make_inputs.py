"""Writes input/style.png, the style picture of the uso_d2s2 case (run by hand; the file is committed).

    python make_inputs.py

A 96x160 picture of stripes and a disc on a gradient, drawn from fixed numbers (no randomness).
"""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent

image = Image.new("RGB", (160, 96))
draw = ImageDraw.Draw(image)
for x in range(160):
    draw.line([(x, 0), (x, 95)], fill=(40 + x, 200 - x, 90 + (x * 7) % 120))
for y in range(0, 96, 12):
    draw.rectangle([0, y, 159, y + 4], fill=(250, 230, 60))
draw.ellipse([90, 20, 150, 80], fill=(30, 60, 200))
(HERE / "input").mkdir(exist_ok=True)
image.save(HERE / "input" / "style.png")

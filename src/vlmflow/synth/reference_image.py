"""The VL-conditioning study's reference image: the seed's "cartoon house with flat colors, simple
shapes", drawn with Pillow (sky, grass, walls, roof, door, window, sun)."""

from __future__ import annotations

from PIL import Image, ImageDraw


def cartoon_house(size: int = 128) -> Image.Image:
    """A flat-coloured house on a size×size canvas; the same pixels every time."""
    image = Image.new("RGB", (size, size), (135, 206, 235))
    draw = ImageDraw.Draw(image)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[int]:
        return [round(v * size) for v in (x0, y0, x1, y1)]

    draw.rectangle(box(0, 0.75, 1, 1), fill=(76, 175, 80))
    draw.ellipse(box(0.74, 0.06, 0.94, 0.26), fill=(255, 213, 79))
    draw.rectangle(box(0.22, 0.45, 0.78, 0.78), fill=(239, 108, 0))
    draw.polygon(
        [
            (round(0.16 * size), round(0.46 * size)),
            (round(0.5 * size), round(0.2 * size)),
            (round(0.84 * size), round(0.46 * size)),
        ],
        fill=(183, 28, 28),
    )
    draw.rectangle(box(0.44, 0.6, 0.56, 0.78), fill=(93, 64, 55))
    draw.rectangle(box(0.28, 0.52, 0.38, 0.62), fill=(255, 255, 255))
    return image

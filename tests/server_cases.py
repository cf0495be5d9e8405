"""Images and helpers shared by the serving runtime tests."""

from __future__ import annotations

import base64
import random
from io import BytesIO
from typing import Any

from PIL import Image, ImageDraw

TEST_API_KEY = "md-test-key-7f3a9c1e5b"


def ui_image(width: int = 320, height: int = 200, seed: int = 0) -> Image.Image:
    """Return an RGB image with a few coloured rectangles, different for each seed."""
    generator = random.Random(seed)
    image = Image.new("RGB", (width, height), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        left = generator.randrange(0, width - 20)
        top = generator.randrange(0, height - 20)
        right = generator.randrange(left + 10, width)
        bottom = generator.randrange(top + 10, height)
        colour = tuple(generator.randrange(256) for _ in range(3))
        draw.rectangle((left, top, right, bottom), fill=colour)
    return image


def encode(image: Image.Image, image_format: str = "PNG", **options: Any) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def bare_base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{bare_base64(data)}"


def as_client_sends(image: Image.Image) -> Image.Image:
    """Return ``image`` after the JPEG (quality 95) round trip both official clients apply."""
    return Image.open(BytesIO(encode(image.convert("RGB"), "JPEG", quality=95))).convert("RGB")

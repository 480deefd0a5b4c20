"""Generation parameters read from where A1111 writes them: PNG text, or EXIF UserComment in JPEG and WebP."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.image_info import EXIF_IFD, USER_COMMENT, image_parameters, image_text_items

TEXT = "a cat, 猫\nNegative prompt: dog\nSteps: 20, Sampler: Euler, Seed: 1"


def reopened(image: Image.Image, fmt: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return Image.open(io.BytesIO(buffer.getvalue()))


def test_png_text():
    info = PngInfo()
    info.add_text("parameters", TEXT)
    info.add_text("Software", "test")
    image = reopened(Image.new("RGB", (8, 8)), "PNG", pnginfo=info)
    assert image_parameters(image) == TEXT and image_text_items(image) == {"Software": "test"}


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_exif_user_comment_as_a1111_writes_it(fmt, encoding):
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[USER_COMMENT] = b"UNICODE\0" + TEXT.encode(encoding)
    image = reopened(Image.new("RGB", (8, 8)), fmt, exif=exif.tobytes())
    assert image_parameters(image) == TEXT


def test_nothing_there():
    assert image_parameters(reopened(Image.new("RGB", (8, 8)), "JPEG")) is None
    assert image_parameters(reopened(Image.new("RGB", (8, 8)), "PNG")) is None

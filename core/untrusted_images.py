"""Images that come from outside (uploads, API base64): the size is read from the file's header and checked before
a single pixel is decoded, so a small file that unpacks to gigabytes (a decompression bomb) costs nothing."""

from __future__ import annotations

import io
from pathlib import Path
from typing import IO

from PIL import Image, UnidentifiedImageError

from core.errors import UserError

MAX_IMAGE_SIDE = 4096  # uploaded images (init image, mask): "Only masked" works at the upload's own size
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # one uploaded file; a 4096² PNG of noise is about 50 MB

ImageSource = str | Path | bytes | IO[bytes]


def limit_pillow() -> None:
    """Pillow itself refuses, at open time, any image over twice this area (its DecompressionBombError): the
    backstop for code that opens an image without check_header. Set when a process starts, never at import."""
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


def size_problem(what: str, width: int, height: int) -> str | None:
    """The message for an image over the limits, or None."""
    if max(width, height) <= MAX_IMAGE_SIDE and width * height <= MAX_IMAGE_PIXELS:
        return None
    return f"The {what} is {width}x{height}; {_LIMITS} Scale it down first."


_LIMITS = f"the largest accepted is {MAX_IMAGE_SIDE} px a side and {MAX_IMAGE_PIXELS / 1e6:.1f} megapixels."


def check_header(source: ImageSource, what: str = "image") -> tuple[int, int]:
    """The image's size from its header (nothing decoded); UserError when it is not an image or too large."""
    with _opened(source, what) as image:
        size = image.size
        image.close()
        return size


def open_image(source: ImageSource, what: str = "image") -> Image.Image:
    """The decoded image, after its header passed check_header."""
    with _opened(source, what) as image:
        try:
            image.load()
        except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data after a valid header
            raise UserError(f"The {what} could not be read: the file is damaged or truncated.") from exc
        return image


class _opened:
    """Image.open (lazy: reads the header) with every way it fails turned into a UserError."""

    def __init__(self, source: ImageSource, what: str):
        self.source = io.BytesIO(source) if isinstance(source, bytes) else source
        self.what = what

    def __enter__(self) -> Image.Image:
        try:
            self.image = Image.open(self.source)
        except Image.DecompressionBombError as exc:  # over twice the limit: Pillow stops before its size is used
            raise UserError(f"The {self.what} is too large: {_LIMITS} Scale it down first.") from exc
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise UserError(f"The {self.what} is not an image Pillow can read (PNG, JPEG, WebP…).") from exc
        problem = size_problem(self.what, *self.image.size)
        if problem:
            self.image.close()
            raise UserError(problem)
        return self.image

    def __exit__(self, *exc_info) -> None:
        if exc_info[0] is not None:
            self.image.close()

"""The generation parameters an image carries, where A1111 writes them: the PNG "parameters" text chunk, or for
JPEG and WebP the EXIF UserComment; and the image's other text chunks."""

from __future__ import annotations

from PIL import Image

EXIF_IFD, USER_COMMENT = 0x8769, 0x9286


def image_parameters(image: Image.Image) -> str | None:
    text = image.info.get("parameters")
    if isinstance(text, str) and text.strip():
        return text
    try:
        comment = image.getexif().get_ifd(EXIF_IFD).get(USER_COMMENT)
    except (AttributeError, ValueError, OSError):  # no EXIF, or EXIF Pillow cannot walk
        return None
    return _user_comment(comment) if comment else None


def _user_comment(data: bytes | str) -> str | None:
    """EXIF UserComment: an 8-byte character code, then the text (A1111 writes piexif's "UNICODE", UTF-16)."""
    if isinstance(data, str):
        return data.strip("\0") or None
    code, body = data[:8], data[8:]
    if code.startswith(b"UNICODE"):
        # piexif writes big-endian; some tools write little-endian: the wrong order gives mostly CJK/odd code points
        candidates = [body.decode(encoding, errors="replace") for encoding in ("utf-16-be", "utf-16-le")]
        text = min(candidates, key=lambda t: sum(ord(c) > 0x2FFF for c in t))
    else:
        text = body.decode("utf-8" if code.startswith(b"\0") else "ascii", errors="replace")
    return text.strip("\0").strip() or None


def image_text_items(image: Image.Image) -> dict[str, str | int | float]:
    """The image's other text fields (PNG tEXt/iTXt chunks and the like), for png-info's `items`."""
    return {k: v for k, v in image.info.items() if k != "parameters" and isinstance(v, str | int | float)}

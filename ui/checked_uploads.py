"""Image inputs whose uploads are size-checked from the file header before Gradio decodes a pixel: a small PNG
that unpacks to 20000×20000 is refused with a message instead of costing gigabytes.

Gradio's own Image and ImageEditor open and convert every upload in their preprocess; these subclasses check
first and then hand over to them. `is_template` keeps the page's widget the stock one (Gradio then renders the
parent component), so nothing changes in the browser."""

from __future__ import annotations

import base64
import binascii

import gradio as gr

from core.errors import UserError
from core.untrusted_images import MAX_UPLOAD_BYTES, check_header


class CheckedImage(gr.Image):
    is_template = True

    def preprocess(self, payload):
        _check_upload(payload, self.label)
        return super().preprocess(payload)


class CheckedImageEditor(gr.ImageEditor):
    is_template = True

    def preprocess(self, payload):
        if payload is not None:
            data = self.blob_storage.get(payload.id) if payload.id is not None else payload
            if data is not None:
                for part in (data.background, *(data.layers or ()), data.composite):
                    _check_upload(part, self.label)
        return super().preprocess(payload)


def _check_upload(file, label: str | None) -> None:
    """Raises gr.Error (shown in the page, sent to API clients) when the upload is not an image within limits."""
    what = f"image in '{label}'" if label else "uploaded image"
    try:
        if file is None:
            return
        if isinstance(file, bytes | bytearray | memoryview):
            check_header(bytes(file), what)
        elif getattr(file, "url", None) and file.url.startswith("data:"):
            check_header(_data_url_bytes(file.url, what), what)
        elif getattr(file, "path", None):
            check_header(file.path, what)
    except UserError as exc:
        raise gr.Error(str(exc), duration=None) from exc


def _data_url_bytes(url: str, what: str) -> bytes:
    """The bytes of a data: URL, refused before decoding when it holds more than an upload may."""
    _, _, encoded = url.partition(",")
    if len(encoded) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise UserError(f"The {what} is over {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        return base64.b64decode(encoded, validate=False)
    except (binascii.Error, ValueError) as exc:
        raise UserError(f"The {what} is not valid base64 data.") from exc

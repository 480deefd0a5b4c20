"""Requests and events as plain data (dicts of str, int, float, bool, bytes, lists), so they can cross a pipe to a
worker process or, later, a network hop to a remote replica. Images travel as PNG bytes (lossless: the pixels a
worker sees are the pixels the user sent); previews as JPEG bytes, encoded once in the worker.

Imports no torch: the web process uses it."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.events import Event, GeneratedImage, Notice, Progress, Result
from core.extras import ExtrasRequest
from core.request import ControlNetUnit, GenerationRequest
from core.untrusted_images import open_image

PREVIEW_QUALITY = 90


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast: it is read once, on this machine
    return buffer.getvalue()


def _plain_fields(item) -> dict[str, Any]:
    """A dataclass's fields, with images as PNG bytes (not dataclasses.asdict: that deep-copies every image)."""
    values = {}
    for field in dataclasses.fields(item):
        value = getattr(item, field.name)
        if isinstance(value, Image.Image):
            value = _png(value)
        elif field.name == "controlnet_units":
            value = [_plain_fields(unit) for unit in value]
        elif isinstance(value, tuple):
            value = list(value)
        values[field.name] = value
    return values


def request_to_wire(request: GenerationRequest) -> dict[str, Any]:
    return _plain_fields(request)


def request_from_wire(data: dict[str, Any]) -> GenerationRequest:
    values = {key: open_image(value, key) if isinstance(value, bytes) else value for key, value in data.items()}
    values["controlnet_units"] = tuple(unit_from_wire(unit) for unit in values.get("controlnet_units") or [])
    values["styles"] = tuple(values.get("styles") or ())
    return GenerationRequest(**values)


def unit_to_wire(unit: ControlNetUnit) -> dict[str, Any]:
    return _plain_fields(unit)


def unit_from_wire(data: dict[str, Any]) -> ControlNetUnit:
    image = data.get("image")
    return ControlNetUnit(**{**data, "image": image_from_wire(image, "control image") if image else None})


def image_to_wire(image: Image.Image) -> bytes:
    """Lossless (PNG): a control map or an input image arrives with the pixels it left with."""
    return _png(image)


def image_from_wire(data: bytes, label: str = "image") -> Image.Image:
    return open_image(data, label)


def event_to_wire(event: Event) -> dict[str, Any]:
    if isinstance(event, Progress):
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "preview"}
        preview = [_jpeg(image) for image in event.preview] if event.preview else None
        return {"kind": "progress", **fields, "preview": preview}
    if isinstance(event, Notice):
        return {"kind": "notice", "message": event.message}
    if isinstance(event, Result):
        images = [
            {"seed": image.seed, "infotext": image.infotext, "path": str(image.path) if image.path else None}
            for image in event.images
        ]
        return {"kind": "result", "images": images, "interrupted": event.interrupted, "notices": list(event.notices)}
    raise TypeError(f"not an event: {type(event).__name__}")


def event_from_wire(data: dict[str, Any]) -> Event:
    kind = data["kind"]
    if kind == "progress":
        values = {key: value for key, value in data.items() if key != "kind"}
        if values["preview"]:
            values["preview"] = [_decoded(preview) for preview in values["preview"]]
        return Progress(**values)
    if kind == "notice":
        return Notice(data["message"])
    if kind == "result":
        images = [
            GeneratedImage(None, image["seed"], image["infotext"], Path(image["path"]) if image["path"] else None)
            for image in data["images"]
        ]
        return Result(images, interrupted=data["interrupted"], notices=list(data["notices"]))
    raise ValueError(f"unknown event kind {kind!r}")


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return buffer.getvalue()


def _decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def extras_to_wire(request: ExtrasRequest) -> dict[str, Any]:
    values = {f.name: getattr(request, f.name) for f in dataclasses.fields(request) if f.name != "image"}
    return {**values, "image": image_to_wire(request.image)}


def extras_from_wire(data: dict[str, Any]) -> ExtrasRequest:
    values = {**data, "image": image_from_wire(data["image"], "image")}
    return ExtrasRequest(**values)


def png_with_text(image: Image.Image, texts: dict[str, str | None]) -> bytes:
    """A finished picture as PNG bytes with its text chunks (sent whole: the web process does not decode it)."""
    info = PngInfo()
    for key, text in texts.items():
        if text:
            info.add_text(key, text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()

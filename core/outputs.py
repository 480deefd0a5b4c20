"""Saves results as A1111 does: outputs/<mode>-images/DATE/NNNNN-SEED.png with the infotext in a PNG text chunk."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PARTIAL_SUFFIX = ".partial"  # an image being written; renamed (linked) to its .png name when complete


class OutputWriter:
    """Writes images under one outputs folder; never overwrites a file.

    `save_control_maps` is read at each job (a setting can change it): whether ControlNet's detected maps are
    saved beside the job's first image.
    """

    def __init__(self, outputs_dir: Path, save_control_maps: Callable[[], bool] = lambda: False):
        self.outputs_dir = Path(outputs_dir)
        self.save_control_maps = save_control_maps

    def folder(self, mode: str, when: dt.date | None = None) -> Path:
        return self.outputs_dir / f"{mode}-images" / (when or dt.date.today()).isoformat()

    def save(self, image: Image.Image, infotext: str, *, mode: str, seed: int) -> Path:
        folder = self.folder(mode)
        folder.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        info.add_text("parameters", infotext)
        return _publish(folder, lambda f: image.save(f, format="PNG", pnginfo=info), seed)

    def save_extras(self, image: Image.Image, parameters: str | None, postprocessing: str) -> Path:
        """An Extras result under extras-images/DATE/, with the source's own parameters kept and A1111's
        "postprocessing" text beside them."""
        folder = self.folder("extras")
        folder.mkdir(parents=True, exist_ok=True)
        info = PngInfo()
        if parameters:
            info.add_text("parameters", parameters)
        info.add_text("postprocessing", postprocessing)
        return _publish(folder, lambda f: image.save(f, format="PNG", pnginfo=info), None)

    def save_control_map(self, control_map: Image.Image, image_path: Path, unit: int) -> Path:
        """A unit's detected map beside the image it guided: 00012-1234-controlnet-0.png next to 00012-1234.png."""
        path = image_path.with_name(f"{image_path.stem}-controlnet-{unit}.png")
        with _partial(path.parent) as (f, partial):
            control_map.save(f, format="PNG")
            f.flush()
            os.link(partial, path)  # fails if the name exists: never overwrites
        return path


def _publish(folder: Path, write: Callable, seed: int | None) -> Path:
    """Writes to a hidden partial file, then gives it the next free NNNNN-SEED.png name in one step: a process
    killed mid-write leaves no half-written PNG under a name the gallery shows. A hard link (not a rename) so that
    a name taken meanwhile by another process or tab is never overwritten."""
    with _partial(folder) as (f, partial):
        write(f)
        f.flush()
        number = _next_number(folder)
        while True:
            path = folder / (f"{number:05}-{seed}.png" if seed is not None else f"{number:05}.png")  # extras: none
            try:
                os.link(partial, path)
                return path
            except FileExistsError:
                number += 1


@contextlib.contextmanager
def _partial(folder: Path):
    descriptor, name = tempfile.mkstemp(prefix=".", suffix=PARTIAL_SUFFIX, dir=folder)
    try:
        with os.fdopen(descriptor, "wb") as f:
            yield f, name
    finally:
        os.unlink(name)


def remove_partial_files(outputs_dir: Path) -> int:
    """Deletes what a killed writer left (hidden *.partial files); returns how many."""
    leftovers = list(Path(outputs_dir).rglob(f".*{PARTIAL_SUFFIX}")) if Path(outputs_dir).is_dir() else []
    for path in leftovers:
        path.unlink(missing_ok=True)
    return len(leftovers)


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"(\d+)-", p.name))]
    return max(numbers, default=-1) + 1


def read_infotext(path: Path) -> str | None:
    """The 'parameters' text of a PNG (ours or A1111's), or None."""
    with Image.open(path) as image:
        return image.info.get("parameters")

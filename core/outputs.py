"""Saves results as A1111 does: outputs/<mode>-images/DATE/NNNNN-SEED.png with the infotext in a PNG text chunk."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo


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
        number = _next_number(folder)
        while True:
            path = folder / f"{number:05}-{seed}.png"
            try:
                # "xb" fails if the name exists: a second process or tab can never overwrite our file.
                with open(path, "xb") as f:
                    image.save(f, format="PNG", pnginfo=info)
                return path
            except FileExistsError:
                number += 1

    def save_control_map(self, control_map: Image.Image, image_path: Path, unit: int) -> Path:
        """A unit's detected map beside the image it guided: 00012-1234-controlnet-0.png next to 00012-1234.png."""
        path = image_path.with_name(f"{image_path.stem}-controlnet-{unit}.png")
        with open(path, "xb") as f:
            control_map.save(f, format="PNG")
        return path


def _next_number(folder: Path) -> int:
    numbers = [int(m.group(1)) for p in folder.iterdir() if (m := re.match(r"(\d+)-", p.name))]
    return max(numbers, default=-1) + 1


def read_infotext(path: Path) -> str | None:
    """The 'parameters' text of a PNG (ours or A1111's), or None."""
    with Image.open(path) as image:
        return image.info.get("parameters")

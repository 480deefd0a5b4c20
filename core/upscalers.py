"""Model upscalers (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT…) from A1111's and ComfyUI's folders, loaded through
spandrel (architecture and scale read from the weights) and run in overlapping tiles, halving the tile when the
device runs out of memory. Weights are read weights-only, like every other model file here."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.checkpoint_files import load_state_dict
from core.devices import is_out_of_memory, release_memory
from core.errors import UserError
from core.upscaler_files import UPSCALER_FOLDERS, upscaler_files

log = logging.getLogger(__name__)

TILE, OVERLAP = 192, 8  # A1111's defaults (ESRGAN_tile, ESRGAN_tile_overlap)
MIN_TILE = 32


@dataclass
class LoadedUpscaler:
    name: str
    model: object  # spandrel's ImageModelDescriptor
    scale: int
    architecture: str


def load_upscaler(name: str, path: Path, device: torch.device, dtype: torch.dtype) -> LoadedUpscaler:
    from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError

    state = load_state_dict(path)
    try:
        descriptor = ModelLoader().load_from_state_dict(state)
    except UnsupportedModelError:
        keys = ", ".join(list(state)[:4])
        raise UserError(
            f"{path.name} is not an upscaler spandrel knows (ESRGAN, Real-ESRGAN, SwinIR, DAT, HAT…): its weights "
            f"start with {keys}."
        ) from None
    if not isinstance(descriptor, ImageModelDescriptor):
        raise UserError(f"{path.name} is a {descriptor.architecture.name} model, not an image upscaler.")
    half = dtype == torch.float16 and descriptor.supports_half
    descriptor.to(device).eval()
    if half:
        descriptor.half()
    return LoadedUpscaler(name, descriptor, descriptor.scale, descriptor.architecture.name)


class UpscalerCache:
    """The upscalers this worker has loaded, the most recent `capacity` kept."""

    def __init__(
        self,
        models_dir: Path,
        device: torch.device,
        dtype: torch.dtype,
        capacity: int = 2,
        tiles: Callable[[], tuple[int, int]] = lambda: (TILE, OVERLAP),
    ):
        self.models_dir, self.device, self.dtype, self.capacity = Path(models_dir), device, dtype, capacity
        self.tiles = tiles  # (tile, overlap) from the settings, read at each use
        self._loaded: OrderedDict[str, LoadedUpscaler] = OrderedDict()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(upscaler_files(self.models_dir))

    def get(self, name: str) -> LoadedUpscaler:
        with self._lock:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
            files = upscaler_files(self.models_dir)
            if name not in files:
                folders = ", ".join(f"models/{f}" for f in UPSCALER_FOLDERS)
                raise UserError(f"No upscaler named {name!r} in {folders}. Found: {', '.join(files) or 'none'}.")
            loaded = self._loaded[name] = load_upscaler(name, files[name], self.device, self.dtype)
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
            return loaded

    def upscale(self, upscaler: LoadedUpscaler, image: Image.Image) -> Image.Image:
        """`upscale` with the tile size and overlap of the settings."""
        tile, overlap = self.tiles()
        return upscale(upscaler, image, tile, overlap)


def upscale(upscaler: LoadedUpscaler, image: Image.Image, tile: int = TILE, overlap: int = OVERLAP) -> Image.Image:
    """The picture times the model's scale, in tiles of `tile` px overlapping by `overlap` (each tile's output
    keeps only its own part, so seams fall inside the overlap); out of memory → half the tile, down to 32 px."""
    while True:
        try:
            return _tiled(upscaler, image.convert("RGB"), tile, overlap)
        except Exception as exc:
            if not is_out_of_memory(exc) or tile <= MIN_TILE:
                raise
            release_memory(upscaler.model.device)
            tile //= 2
            log.warning("Upscaler out of memory; retrying with %d px tiles", tile)


@torch.inference_mode()
def _tiled(upscaler: LoadedUpscaler, image: Image.Image, tile: int, overlap: int) -> Image.Image:
    model, scale = upscaler.model, upscaler.scale
    pixels = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    _, _, height, width = pixels.shape
    out = torch.zeros((1, 3, height * scale, width * scale))
    dtype = next(model.model.parameters()).dtype
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            # The tile with its overlap on every side (clipped at the picture's edges)...
            y0, x0 = max(0, top - overlap), max(0, left - overlap)
            y1, x1 = min(height, top + tile + overlap), min(width, left + tile + overlap)
            result = model(pixels[:, :, y0:y1, x0:x1].to(model.device, dtype)).float().cpu()
            # ...of whose output only the tile's own part is kept.
            th, tw = min(tile, height - top), min(tile, width - left)
            oy, ox = (top - y0) * scale, (left - x0) * scale
            out[:, :, top * scale : (top + th) * scale, left * scale : (left + tw) * scale] = result[
                :, :, oy : oy + th * scale, ox : ox + tw * scale
            ]
    array = (out[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)

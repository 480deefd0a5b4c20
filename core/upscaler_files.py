"""Which model upscalers are in models/ (A1111's and ComfyUI's folders), by name. Torch-free: the web process lists
them; core.upscalers loads and runs them in the worker."""

from __future__ import annotations

from pathlib import Path

from core.checkpoint_files import WEIGHT_SUFFIXES

UPSCALER_FOLDERS = ("ESRGAN", "RealESRGAN", "SwinIR", "DAT", "upscale_models")  # A1111's, then ComfyUI's


def upscaler_files(models_dir: Path) -> dict[str, Path]:
    """Name (the file's stem, as A1111 lists it) → file, over the upscaler folders; the first of a name wins."""
    found: dict[str, Path] = {}
    for folder in UPSCALER_FOLDERS:
        root = Path(models_dir) / folder
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix.lower() in WEIGHT_SUFFIXES and not path.name.startswith("."):
                    found.setdefault(path.stem, path)
    return found

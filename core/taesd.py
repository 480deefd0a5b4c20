"""TAESD, the tiny VAE decoder for live previews (madebyollin/taesd), from A1111's models/VAE-approx folder:
`taesd_decoder.pth` for SD1.x/SD2.x and `taesdxl_decoder.pth` for SDXL (or the .safetensors of the same names, or a
diffusers AutoencoderTiny file). A preview costs a few milliseconds at the full size, where a VAE decode costs as
much as a step or more.

diffusers' AutoencoderTiny runs it; only the keys are converted here, as diffusers' own
scripts/convert_tiny_autoencoder_to_diffusers.py does (taesd's decoder is an nn.Sequential whose first entry, a
parameterless clamp, diffusers runs in forward: entry N is diffusers' decoder.layers.N-1). The file is read with
the weights-only loader, as every other model file."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from diffusers import AutoencoderTiny

from core.checkpoint_files import StateDict, load_state_dict
from core.errors import UserError
from core.families import SDXL, Family

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


def taesd_file(folder: Path, family: Family) -> Path | None:
    """The family's decoder in the folder: taesdxl* for SDXL, taesd* (not taesdxl, taesd3, …) for SD1.x/SD2.x."""
    if not folder.is_dir():
        return None
    wanted = "taesdxl" if family is SDXL else "taesd"
    for path in sorted(folder.iterdir()):
        stem = path.stem.lower()
        name = stem.split("_")[0].split("-")[0].split(".")[0]
        if path.suffix.lower() in WEIGHT_SUFFIXES and name == wanted and "encoder" not in stem:
            return path
    return None


def load_taesd(path: Path, device: torch.device, dtype: torch.dtype) -> AutoencoderTiny:
    """The decoder as an AutoencoderTiny (its encoder unused). UserError when the file is not a TAESD decoder."""
    state_dict = load_state_dict(path)
    model = AutoencoderTiny()
    try:
        model.decoder.load_state_dict(decoder_weights(state_dict))
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UserError(f"{path.name} is not a TAESD decoder ({first}).") from exc
    return model.to(device, dtype).eval()


def decoder_weights(state_dict: StateDict) -> StateDict:
    """The decoder's weights under diffusers' DecoderTiny names, from taesd's or diffusers' layout (ValueError for
    a key neither has)."""
    if any(key.startswith("decoder.layers.") for key in state_dict):
        return {key.removeprefix("decoder."): v for key, v in state_dict.items() if key.startswith("decoder.")}
    converted = {}
    for key, value in state_dict.items():
        index, _, rest = key.partition(".")
        if not index.isdigit() or not rest:
            raise ValueError(f"unexpected weight {key!r}")
        converted[f"layers.{int(index) - 1}.{rest}"] = value
    return converted


class TaesdDecoders:
    """The loaded decoders, one per file (they are a few MB each); a file that fails is reported once."""

    def __init__(self, folder: Path, device: torch.device, dtype: torch.dtype):
        self.folder, self.device, self.dtype = folder, device, dtype
        self._loaded: dict[Path, AutoencoderTiny] = {}
        self._failed: dict[Path, str] = {}

    def for_family(self, family: Family) -> tuple[AutoencoderTiny | None, str]:
        """(decoder, "") or (None, why not) — the job then previews with the approximation."""
        path = taesd_file(self.folder, family)
        if path is None:
            name = "taesdxl_decoder.pth" if family is SDXL else "taesd_decoder.pth"
            return None, f"TAESD previews need models/VAE-approx/{name}; showing approximate previews."
        if path in self._failed:
            return None, self._failed[path]
        if path not in self._loaded:
            try:
                self._loaded[path] = load_taesd(path, self.device, self.dtype)
            except UserError as exc:
                self._failed[path] = f"{exc} Showing approximate previews."
                return None, self._failed[path]
        return self._loaded[path], ""

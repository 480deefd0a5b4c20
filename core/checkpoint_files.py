"""Reads weight files safely: safetensors, or pickles through torch's weights-only loader, with user-facing errors.

torch is imported only to load tensors or read a pickle: the web process reads safetensors headers here (the
registry's family detection) without it."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from core.errors import UserError

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIXES = {".safetensors"}
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES | PICKLE_SUFFIXES

StateDict = dict[str, "torch.Tensor"]


def read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Key → shape, reading only the header where the format allows (safetensors), for cheap detection."""
    path = Path(path)
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        try:
            with safe_open(str(path), framework="numpy") as f:  # the header only; no torch needed
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        except (SafetensorError, OSError, ValueError) as exc:
            raise _corrupt(path, exc) from exc
    return {k: tuple(v.shape) for k, v in load_state_dict(path).items()}


def load_state_dict(path: Path) -> StateDict:
    """All tensors of a weight file on the CPU. Pickled files never run code: torch's weights_only loader."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise UserError(f"Model file not found: {path}")
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise _corrupt(path, exc) from exc
    if suffix in PICKLE_SUFFIXES:
        return _load_pickle(path)
    raise UserError(f"{path.name}: unsupported file type {suffix!r}; use .safetensors (or .ckpt/.pt/.pth/.bin).")


def load_pickle_object(path: Path) -> object:
    """What a pickled weight file holds (nested dicts of tensors, as textual-inversion .pt files are), read with
    torch's weights-only loader: a pickle that would run code is refused with a UserError."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise UserError(f"Model file not found: {path}")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:
        # torch names the offending callable on a line like "Unsupported global: GLOBAL posix.system".
        lines = str(exc).splitlines()
        detail = next((line.strip() for line in lines if "GLOBAL" in line), _first_line(exc))
        raise UserError(
            f"{path.name} was refused: it is a pickle that would run code or load objects other than weights "
            f"when opened, so it was not loaded. Use a .safetensors version of this model. (Detail: {detail})"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise _corrupt(path, exc) from exc


def _load_pickle(path: Path) -> StateDict:
    import torch

    data = load_pickle_object(path)
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data:
        raise UserError(f"{path.name} holds no weights (found {type(data).__name__}); it is not a model file.")
    tensors = {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path.name} holds no tensors; it is not a model file.")
    return tensors


def _is_zip(path: Path) -> bool:
    # mmap needs torch's zip format; legacy (pre-1.6) pickles must be read whole.
    return zipfile.is_zipfile(path)


def _corrupt(path: Path, exc: BaseException) -> UserError:
    return UserError(
        f"{path.name} could not be read: the file is corrupt, truncated or not a model file ({_first_line(exc)})."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__

"""What the web server may hand out: the images it wrote under the output folder, and nothing else. The output
folder is fixed when the server starts; a path that comes from a browser is accepted only when it names a file the
server produced there."""

from __future__ import annotations

from pathlib import Path

from core.errors import UserError
from core.settings import Settings, resolve_folder

PRODUCED_SUFFIXES = (".png",)  # OutputWriter writes PNG files only


def never_served(settings: Settings, base_dir: Path, *files: Path) -> list[Path]:
    """What an output folder must never hold, since it would be served with the images: the program's folder, the
    models and cache folders (the login file is in the cache), and the given files (settings, styles)."""
    folders = [resolve_folder(folder, base_dir) for folder in (settings.models_dir, settings.cache_dir)]
    return [Path(base_dir), *folders, *files]


def output_folder_problem(outputs_dir: Path, protected: list[Path]) -> str | None:
    """Why this folder must not be the output folder (whose every file the server serves), or None.

    Refused: the file system root, the home folder, and any folder that holds one of `protected` (the program,
    the models, the cache with the login file, the settings file): serving it would serve them."""
    folder = Path(outputs_dir).expanduser().resolve()
    if folder == Path(folder.anchor) or folder == Path.home().resolve():
        return f"The output folder {folder} is too wide: all it holds would be served. Choose a folder of its own."
    for path in protected:
        inside = Path(path).expanduser().resolve()
        if inside == folder or inside.is_relative_to(folder):
            return (
                f"The output folder {folder} holds {inside}, which must never be served. "
                "Choose a folder of its own (the default is ./outputs)."
            )
    return None


def checked_output_folder(outputs_dir: Path, protected: list[Path]) -> Path:
    problem = output_folder_problem(outputs_dir, protected)
    if problem:
        raise UserError(problem)
    return Path(outputs_dir).expanduser().resolve()


def produced_file(path: str | Path | None, outputs_dir: Path) -> Path:
    """The image file `path` names, when it is one this server saved under outputs_dir; else UserError.

    Resolved first (symlinks and '..' followed), so neither a link nor a relative step leads out of the folder."""
    if not path:
        raise UserError("Generate an image first (or click one in the gallery).")
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError) as exc:  # NUL bytes, loops of links
        raise UserError("That is not an image this server made.") from exc
    root = Path(outputs_dir).resolve()
    if not resolved.is_relative_to(root) or resolved.suffix.lower() not in PRODUCED_SUFFIXES:
        raise UserError("That is not an image this server made.")
    if not resolved.is_file():
        raise UserError("That image is no longer on disk; generate it again.")
    return resolved

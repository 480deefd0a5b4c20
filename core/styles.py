"""Saved prompt styles in A1111's styles.csv (name, prompt, negative_prompt; "{prompt}" marks where the prompt goes)."""

from __future__ import annotations

import csv
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import UserError
from core.infotext import parse_infotext, request_fields
from core.request import MAX_NAME_LENGTH, MAX_PROMPT_LENGTH, GenerationRequest

log = logging.getLogger(__name__)

COLUMNS = ("name", "prompt", "negative_prompt")
MAX_STYLES = 10_000  # styles.csv is read whole at every change; visitors of a shared page can save styles too
PLACEHOLDER = "{prompt}"


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str = ""
    negative_prompt: str = ""


def merge_prompt(style_text: str, prompt: str) -> str:
    """A style's text put around the prompt as A1111 does: at "{prompt}" if it has one, else after ", "."""
    if PLACEHOLDER in style_text:
        return style_text.replace(PLACEHOLDER, prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


def unmerge_prompt(style_text: str, prompt: str) -> str | None:
    """The prompt before merge_prompt(style_text, …), or None when the style is not in it (A1111's extraction)."""
    prompt, style_text = prompt.strip(), style_text.strip()
    if PLACEHOLDER in style_text:
        left, _, right = style_text.partition(PLACEHOLDER)
        if len(prompt) >= len(left) + len(right) and prompt.startswith(left) and prompt.endswith(right):
            return prompt[len(left) : len(prompt) - len(right)]
        return None
    if not prompt.endswith(style_text):
        return None
    rest = prompt[: len(prompt) - len(style_text)]
    return rest[:-2] if rest.endswith(", ") else rest


class StyleLibrary:
    """styles.csv, read again whenever the file changes (users edit it by hand, as in A1111)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._styles: dict[str, Style] = {}

    def styles(self) -> dict[str, Style]:
        with self._lock:
            self._reload_if_changed()
            return dict(self._styles)

    def names(self) -> list[str]:
        return list(self.styles())

    def apply(self, prompt: str, negative_prompt: str, names: tuple[str, ...] | list[str]) -> tuple[str, str]:
        """The prompts with each named style applied in order; an unknown name is a UserError."""
        styles = self.styles()
        missing = [name for name in names if name not in styles]
        if missing:
            raise UserError(f"No style named {', '.join(map(repr, missing))} in {self.path.name}.")
        for name in names:
            prompt = merge_prompt(styles[name].prompt, prompt)
            negative_prompt = merge_prompt(styles[name].negative_prompt, negative_prompt)
        return prompt, negative_prompt

    def extract(self, prompt: str, negative_prompt: str, names: list[str]) -> tuple[str, str, list[str]]:
        """Undo apply() for the named styles found in both prompts (last applied first): the prompts as typed and
        the styles that were taken out. A style whose text is no longer in the prompts is left in them."""
        styles = self.styles()
        found: list[str] = []
        for name in reversed(names):
            style = styles.get(name)
            if style is None:
                continue
            positive = unmerge_prompt(style.prompt, prompt) if style.prompt else prompt
            negative = (
                unmerge_prompt(style.negative_prompt, negative_prompt) if style.negative_prompt else negative_prompt
            )
            if positive is not None and negative is not None:
                prompt, negative_prompt = positive, negative
                found.insert(0, name)
        return prompt, negative_prompt, found

    def save(self, style: Style) -> None:
        """Add or replace a style and write the file (through a temporary file, so a crash cannot truncate it)."""
        name = style.name.strip()
        if not name:
            raise UserError("Give the style a name.")
        if not (style.prompt.strip() or style.negative_prompt.strip()):
            raise UserError("The prompt and negative prompt are empty: there is nothing to save as a style.")
        if len(name) > MAX_NAME_LENGTH or max(len(style.prompt), len(style.negative_prompt)) > MAX_PROMPT_LENGTH:
            raise UserError(
                f"A style name is at most {MAX_NAME_LENGTH:,} characters and its prompts {MAX_PROMPT_LENGTH:,} each."
            )
        with self._lock:
            self._reload_if_changed()
            if name not in self._styles and len(self._styles) >= MAX_STYLES:
                raise UserError(f"styles.csv already holds {MAX_STYLES:,} styles; remove some first.")
            self._styles[name] = Style(name, style.prompt, style.negative_prompt)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8-sig", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                for saved in self._styles.values():
                    writer.writerow(
                        {"name": saved.name, "prompt": saved.prompt, "negative_prompt": saved.negative_prompt}
                    )
            tmp.replace(self.path)
            self._stamp = _stamp(self.path)

    def _reload_if_changed(self) -> None:
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        self._styles = _read(self.path) if stamp else {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _read(path: Path) -> dict[str, Style]:
    """A1111's reader: rows keyed by name (blank names skipped); its old files have a "text" column for prompt."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            rows = list(csv.DictReader(f, skipinitialspace=True))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        log.warning("Cannot read styles from %s: %s", path, exc)
        return {}
    styles = {}
    for row in rows:
        name = (row.get("name") or "").strip()
        if name:
            prompt = row.get("prompt") if "prompt" in row else row.get("text")
            styles[name] = Style(name, prompt or "", row.get("negative_prompt") or "")
    return styles


def with_styles(request: GenerationRequest, styles: StyleLibrary | None) -> GenerationRequest:
    """The request's prompts with its styles applied, as A1111 writes them in the infotext (which also names the
    styles, so "paste" can take them out again)."""
    if not request.styles:
        return request
    if styles is None:
        raise UserError("Styles are not available here (no styles.csv).")
    prompt, negative_prompt = styles.apply(request.prompt, request.negative_prompt, request.styles)
    return request.with_changes(prompt=prompt, negative_prompt=negative_prompt)


def split_style_names(text: str, known: list[str]) -> list[str]:
    """The names in an infotext's "Styles: a, b" value; known names may themselves contain ", "."""
    names, rest = [], text.strip()
    while rest:
        match = next(
            (name for name in sorted(known, key=len, reverse=True) if rest == name or rest.startswith(name + ", ")),
            None,
        )
        name = match or rest.split(", ", 1)[0]
        names.append(name)
        rest = rest[len(name) :].removeprefix(", ").strip()
    return names


def pasted_fields(infotext: str, styles: StyleLibrary | None) -> dict[str, Any]:
    """Request fields read from an infotext; styles it names are taken back out of its prompts (the infotext's
    prompts have them applied) so that generating again applies them once, as A1111's paste does."""
    parsed = request_fields(infotext)
    _, _, params = parse_infotext(infotext)
    if "Styles" in params and styles is not None:
        names = split_style_names(params["Styles"], styles.names())
        prompt, negative, found = styles.extract(parsed["prompt"], parsed["negative_prompt"], names)
        parsed.update(prompt=prompt, negative_prompt=negative, styles=found)
    return parsed

"""Remembers each tab's slider values and dropdown choices in the browser, so a page reload keeps them (A1111's
ui-config, but per browser): Gradio's BrowserState stores them in localStorage."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr


@dataclass(frozen=True)
class Remembered:
    """One remembered widget: its default (read when the page loads, so Settings changes apply on reload) and,
    for dropdowns whose choices change (checkpoints), a function giving the current choices."""

    component: gr.components.Component
    default: Callable[[], Any]
    choices: Callable[[], list] | None = None


def storage_key(tab: str) -> str:
    return f"sd-studio-{tab}-values"


def load_or_create_secret(path: Path) -> str:
    """The key BrowserState encrypts with. Kept on disk so remembered values survive a server restart
    (Gradio's default is a new random key each launch, which would forget them)."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_hex(32)
        path.write_text(secret, encoding="utf-8")
        return secret


def remember_values(page: gr.Blocks, tab: str, fields: dict[str, Remembered], secret: str) -> None:
    """Save the fields' values on every change; restore them (or their defaults) when the page loads."""
    names = list(fields)
    components = [fields[name].component for name in names]
    state = gr.BrowserState({}, storage_key=storage_key(tab), secret=secret)

    def save(*values):
        return dict(zip(names, values, strict=True))

    def restore(saved: dict | None):
        saved = saved if isinstance(saved, dict) else {}
        return [_restored(fields[name], saved.get(name)) for name in names]

    gr.on(
        [component.change for component in components],
        save,
        inputs=components,
        outputs=state,
        queue=False,
        show_progress="hidden",
        api_visibility="private",
    )
    page.load(
        restore, inputs=state, outputs=components, queue=False, show_progress="hidden", api_visibility="private"
    ).then(None, js=f"() => {{ document.body.dataset.restored_{tab} = 'yes'; }}")  # a mark scripts and tests wait for


def _restored(field: Remembered, saved: Any):
    """The saved value when it is still valid (a deleted checkpoint or an out-of-range number is not), else the
    default; dropdowns with changing choices get their current list too."""
    component = field.component
    choices = field.choices() if field.choices else getattr(component, "choices", None)
    value = saved if _valid(component, saved, choices) else field.default()
    if field.choices:
        return gr.update(choices=choices, value=value)
    return value


def _valid(component: gr.components.Component, value: Any, choices: list | None) -> bool:
    if value is None:
        return False
    if isinstance(component, gr.Dropdown):
        values = [c[1] if isinstance(c, tuple | list) else c for c in choices or []]
        if component.multiselect:  # every chosen item must still exist (a style deleted from styles.csv)
            return isinstance(value, list) and all(item in values for item in value)
        return value in values
    if isinstance(component, gr.Slider):
        return isinstance(value, int | float) and component.minimum <= value <= component.maximum
    if isinstance(component, gr.Number):
        return isinstance(value, int | float)
    return isinstance(value, str)

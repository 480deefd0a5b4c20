"""What sits around the prompt boxes: A1111's token counters ("37/75") and the styles picker with "save as style"."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.errors import UserError
from core.prompt_chunks import count_tokens
from core.request import MAX_NAME_LENGTH, MAX_PROMPT_LENGTH
from core.styles import Style, StyleLibrary
from core.tokenizers import clip_tokenizer
from ui.symbols import REFRESH


def token_counter(box: gr.Textbox, elem_id: str) -> gr.HTML:
    """A counter under `box` that follows what is typed (tokens in use / the chunk limit, as A1111 shows it)."""
    counter = gr.HTML(_counter_html(""), elem_id=elem_id, elem_classes="token-counter", padding=False)
    box.change(
        _counter_html,
        inputs=box,
        outputs=counter,
        queue=False,
        show_progress="hidden",
        trigger_mode="always_last",  # typing fast sends one request for the last value, not one per key
        api_name=False,
    )
    return counter


def _counter_html(text: str) -> str:
    # The CLIP tokenizer is the same for every SD1/SD2/SDXL checkpoint, so no model needs to be loaded to count.
    if len(text or "") > MAX_PROMPT_LENGTH:  # never tokenize what Generate would refuse anyway
        return f'<span class="token-count">over {MAX_PROMPT_LENGTH:,} characters</span>'
    used, limit = count_tokens(text or "", clip_tokenizer())
    return f'<span class="token-count">{used}/{limit}</span>'


@dataclass(frozen=True)
class StylePicker:
    dropdown: gr.Dropdown
    refresh: gr.Button
    name: gr.Textbox
    save: gr.Button
    message: gr.Markdown


def build_style_picker(mode: str, styles: StyleLibrary | None) -> StylePicker:
    """A1111's Styles dropdown (several at once, applied in the order chosen) and "save the prompts as a style"."""
    names = styles.names() if styles else []
    with gr.Row(equal_height=True):
        dropdown = gr.Dropdown(
            names, value=[], multiselect=True, label="Styles", scale=4, elem_id=f"{mode}_styles", min_width=120
        )
        refresh = gr.Button(
            REFRESH, scale=0, min_width=40, elem_id=f"{mode}_styles_refresh", elem_classes="tool-button"
        )
    with gr.Accordion("Save prompts as a style", open=False, elem_id=f"{mode}_style_save_box"):
        name = gr.Textbox(label="Style name", max_length=MAX_NAME_LENGTH, elem_id=f"{mode}_style_name")
        save = gr.Button("Save style", size="sm", elem_id=f"{mode}_style_save")
        message = gr.Markdown(elem_id=f"{mode}_style_message")
    return StylePicker(dropdown, refresh, name, save, message)


def connect_style_picker(picker: StylePicker, styles: StyleLibrary | None, prompt: gr.Textbox, negative: gr.Textbox):
    def refresh(chosen: list[str] | None):
        names = styles.names() if styles else []
        return gr.update(choices=names, value=[name for name in chosen or [] if name in names])

    def save(name: str, prompt_text: str, negative_text: str, chosen: list[str] | None):
        if styles is None:
            raise gr.Error("Styles are not available here.")
        try:
            styles.save(Style(name.strip(), prompt_text, negative_text))
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        except OSError as exc:
            raise gr.Error(f"Cannot write {styles.path}: {exc.strerror or exc}.") from exc
        names = styles.names()
        return gr.update(choices=names, value=chosen or []), f"Saved style “{name.strip()}” in {styles.path.name}."

    picker.refresh.click(refresh, inputs=picker.dropdown, outputs=picker.dropdown, queue=False, api_name=False)
    picker.save.click(
        save,
        inputs=[picker.name, prompt, negative, picker.dropdown],
        outputs=[picker.dropdown, picker.message],
        queue=False,
        api_name=False,
    )

"""A1111's "Send to img2img" / "Send to inpaint": the chosen result image goes to the other tab with the prompt
and settings read back from its infotext, and that tab opens."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from core.errors import UserError
from core.outputs import read_infotext
from core.request import GenerationRequest
from core.served_files import produced_file
from core.services import Services
from core.styles import pasted_fields
from ui.generation_panel import GenerationTab

# What A1111 pastes from an image's infotext into the receiving tab.
SENT_FIELDS = (
    "prompt",
    "negative_prompt",
    "sampler_name",
    "scheduler",
    "steps",
    "cfg_scale",
    "seed",
    "width",
    "height",
    "clip_skip",
    "styles",
)


def connect_send_to(
    source: GenerationTab, target: GenerationTab, button: gr.Button, tabs: gr.Tabs, services: Services
) -> None:
    styles, outputs_dir = services.styles, services.outputs_dir
    names = [name for name in SENT_FIELDS if name in target.fields]
    outputs = [target.image_input, *(target.fields[name] for name in names), tabs]

    def send(path: str | None):
        try:  # the path is the server's own (a State), checked again: only a file this server saved is opened
            path = produced_file(path, outputs_dir)
            with Image.open(path) as opened:
                image = opened.convert("RGB")
            parsed = pasted_fields(read_infotext(path) or "", styles)
        except UserError as exc:
            raise gr.Error(str(exc)) from exc
        except OSError as exc:
            raise gr.Error("That image is no longer on disk; generate it again.") from exc
        values = pasted_values(parsed, names)
        return [image_for(target, image), *values, gr.Tabs(selected=target.mode)]

    button.click(send, inputs=source.results.selected, outputs=outputs, api_name=False)


def pasted_values(parsed: dict, names: list[str]) -> list:
    """Widget values of the named request fields an infotext gave (gr.skip() for the others: they keep theirs)."""
    typed = GenerationRequest.from_dict(parsed)  # the infotext's text values as numbers where numbers belong
    return [_widget_value(getattr(typed, name)) if name in parsed else gr.skip() for name in names]


def image_for(target: GenerationTab, image: Image.Image):
    """The picture as the target tab's image input takes it (the inpaint editor has layers)."""
    return {"background": image, "layers": [], "composite": image} if target.mode == "inpaint" else image


def _widget_value(value):
    return list(value) if isinstance(value, tuple) else value  # a multiselect dropdown takes a list

"""A tab's width and height follow the checkpoint: choosing one moves them to its family's size (SD1.x 512, SD2.x
768, SDXL 1024, the shapes model its own) unless they were changed on this page; a size far from the checkpoint's
own gets a hint under them."""

from __future__ import annotations

import gradio as gr

from core.native_size import native_size, size_hint
from core.services import Services


def follow_checkpoint(services: Services, checkpoint: gr.Dropdown, width: gr.Slider, height: gr.Slider) -> None:
    hint = gr.Markdown(elem_id=f"{width.elem_id.rsplit('_', 1)[0]}_size_hint")
    # The size the page was last moved to (or started at): a size still equal to it was not changed by the user.
    moved_to = gr.State((services.settings.default_width, services.settings.default_height))

    def on_checkpoint(name, w, h, last):
        native = native_size(services.registry, name, services.settings)
        if native is None or (int(w), int(h)) != tuple(last):
            return gr.skip(), gr.skip(), last, size_hint(native, int(w), int(h))
        side = native[1]
        return side, side, (side, side), ""

    def on_size(name, w, h):
        return size_hint(native_size(services.registry, name, services.settings), int(w), int(h))

    events = dict(queue=False, api_visibility="private", show_progress="hidden")
    checkpoint.change(on_checkpoint, inputs=[checkpoint, width, height, moved_to],
                      outputs=[width, height, moved_to, hint], **events)  # fmt: skip
    for slider in (width, height):
        slider.change(on_size, inputs=[checkpoint, width, height], outputs=hint, **events)

"""Checkpoint and VAE dropdowns with refresh buttons, shared by every tab."""

from __future__ import annotations

import gradio as gr

from core.registry import ModelRegistry

REFRESH = "🔄"


def checkpoint_choices(registry: ModelRegistry) -> list[tuple[str, str]]:
    """(label, value) pairs: the label shows A1111's "name [hash]" title and the detected family."""
    return [(f"{registry.title(e)} · {registry.family_label(e)}", e.name) for e in registry.list("checkpoint")]


def vae_choices(registry: ModelRegistry) -> list[str]:
    return ["Automatic", "None", *(e.name for e in registry.list("vae"))]


def empty_models_message(registry: ModelRegistry) -> str:
    if registry.list("checkpoint"):
        return ""
    return (
        f"**No checkpoint found.** Put a Stable Diffusion model (`.safetensors`, or a diffusers folder) in "
        f"`{registry.folder('checkpoint').resolve()}` and press {REFRESH}."
    )


def build_model_pickers(registry: ModelRegistry, default_checkpoint: str = "") -> tuple[gr.Dropdown, gr.Dropdown]:
    choices = checkpoint_choices(registry)
    values = [value for _, value in choices]
    initial = default_checkpoint if default_checkpoint in values else (values[0] if values else None)
    with gr.Row(equal_height=True):
        checkpoint = gr.Dropdown(choices, value=initial, label="Stable Diffusion checkpoint", scale=4)
        refresh_checkpoints = gr.Button(REFRESH, scale=0, min_width=40, elem_classes="tool-button")
        vae = gr.Dropdown(vae_choices(registry), value="Automatic", label="SD VAE", scale=2)
        refresh_vaes = gr.Button(REFRESH, scale=0, min_width=40, elem_classes="tool-button")
    notice = gr.Markdown(empty_models_message(registry), visible=not values)

    def refresh(current: str | None):
        new_choices = checkpoint_choices(registry)
        names = [value for _, value in new_choices]
        value = current if current in names else (names[0] if names else None)
        message = empty_models_message(registry)
        return gr.update(choices=new_choices, value=value), gr.update(value=message, visible=bool(message))

    refresh_checkpoints.click(refresh, inputs=checkpoint, outputs=[checkpoint, notice], queue=False)
    refresh_vaes.click(lambda: gr.update(choices=vae_choices(registry)), outputs=vae, queue=False)
    return checkpoint, vae

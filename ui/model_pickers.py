"""Checkpoint and VAE dropdowns with refresh buttons, shared by every tab."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from core.registry import ModelRegistry
from core.settings import Settings
from core.starter import default_checkpoint
from ui.remembered import Remembered
from ui.symbols import REFRESH


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


@dataclass(frozen=True)
class ModelPickers:
    """The page-wide checkpoint and VAE choice (above the tabs, as in A1111), read by every tab's jobs."""

    checkpoint: gr.Dropdown
    vae: gr.Dropdown

    def remembered(self, registry: ModelRegistry, settings: Settings) -> dict[str, Remembered]:
        return {
            "checkpoint": Remembered(
                self.checkpoint,
                lambda: default_checkpoint(registry, settings.default_checkpoint),
                lambda: checkpoint_choices(registry),
            ),
            "vae": Remembered(self.vae, lambda: "Automatic", lambda: vae_choices(registry)),
        }


def build_model_pickers(registry: ModelRegistry, preferred_checkpoint: str = "") -> ModelPickers:
    choices = checkpoint_choices(registry)
    values = [value for _, value in choices]
    initial = default_checkpoint(registry, preferred_checkpoint)
    with gr.Row(equal_height=True):
        checkpoint = gr.Dropdown(
            choices, value=initial, label="Stable Diffusion checkpoint", scale=4, elem_id="checkpoint"
        )
        refresh_checkpoints = gr.Button(
            REFRESH, scale=0, min_width=40, elem_classes="tool-button", elem_id="refresh_checkpoints"
        )
        vae = gr.Dropdown(vae_choices(registry), value="Automatic", label="SD VAE", scale=2, elem_id="vae")
        refresh_vaes = gr.Button(REFRESH, scale=0, min_width=40, elem_classes="tool-button", elem_id="refresh_vaes")
    notice = gr.Markdown(empty_models_message(registry), visible=not values)

    def refresh(current: str | None):
        new_choices = checkpoint_choices(registry)
        names = [value for _, value in new_choices]
        value = current if current in names else default_checkpoint(registry)
        message = empty_models_message(registry)
        return gr.update(choices=new_choices, value=value), gr.update(value=message, visible=bool(message))

    refresh_checkpoints.click(
        refresh, inputs=checkpoint, outputs=[checkpoint, notice], queue=False, api_visibility="private"
    )
    refresh_vaes.click(
        lambda: gr.update(choices=vae_choices(registry)), outputs=vae, queue=False, api_visibility="private"
    )
    return ModelPickers(checkpoint, vae)

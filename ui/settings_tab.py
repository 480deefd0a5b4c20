"""The Settings tab: the user's Settings as a form, saved to the settings file and applied at once."""

from __future__ import annotations

from dataclasses import asdict

import gradio as gr

from core.errors import UserError
from core.request import MAX_CONTROLNET_UNITS, MAX_STEPS, PREVIEW_METHODS
from core.samplers import SAMPLERS, SCHEDULE_TYPES
from core.services import Services
from core.settings import MAX_MODEL_CACHE_SIZE, SD2_PREDICTION_TYPES, Settings
from core.step_cache import STEP_CACHE_PRESETS
from ui.model_pickers import checkpoint_choices
from ui.remembered import storage_key
from ui.request_origin import from_api_client, from_this_machine

# Folders name what the server reads and serves: they are the machine owner's to change, never a visitor's.
FOLDER_SETTINGS = {
    "outputs_dir": "The output folder",
    "models_dir": "The models folder",
    "cache_dir": "The cache folder",
}

# Forgets what this browser remembered for each tab, then reloads so the defaults show.
FORGET_JS = """
(tabs) => {
  for (const tab of %s) localStorage.removeItem(tab);
  window.location.reload();
}
"""


def build_settings_tab(page: gr.Blocks, services: Services, remembered_tabs: list[str]) -> None:
    with gr.Row():
        save = gr.Button("Apply settings", variant="primary", elem_id="settings_apply", scale=0, min_width=180)
        reload = gr.Button("Reload from file", elem_id="settings_reload", scale=0, min_width=200)
        forget = gr.Button("Forget this browser's tab values", elem_id="settings_forget", scale=0, min_width=340)
    status = gr.Markdown(elem_id="settings_status")
    widgets = _settings_widgets(services)
    names = list(widgets)
    components = [widgets[name] for name in names]

    def current_values(request: gr.Request):
        settings, local = services.settings, from_this_machine(request)
        return [
            gr.update(value=getattr(settings, name), interactive=local)
            if name in FOLDER_SETTINGS
            else getattr(settings, name)
            for name in names
        ]

    def apply(request: gr.Request, *values):
        proposed = dict(zip(names, values, strict=True))
        try:
            _check_allowed(request, proposed, services)
            changed = Settings.from_values({**asdict(services.settings), **proposed})
            later = services.apply_settings(changed)
        except UserError as exc:
            raise gr.Error(str(exc), duration=None) from exc
        return " ".join([f"Saved to `{services.settings_path}`.", *later])

    def reload_file(request: gr.Request):
        loaded = Settings.load(services.settings_path)
        try:
            services.apply_settings(loaded)
        except UserError as exc:
            raise gr.Error(f"The settings file has a problem: {exc}", duration=None) from exc
        return [*current_values(request), f"Reloaded `{services.settings_path}`."]

    # Queued (not queue=False) so that a refused value shows as an error message in the page.
    # Not part of the API (and refused from API clients whatever they call): settings are the owner's.
    save.click(apply, inputs=components, outputs=status, api_visibility="private")
    reload.click(reload_file, outputs=[*components, status], api_visibility="private")
    forget.click(None, js=FORGET_JS % [storage_key(tab) for tab in remembered_tabs], api_visibility="private")
    # Another browser may have changed them since the page was built.
    page.load(current_values, outputs=components, queue=False, show_progress="hidden", api_visibility="private")


def _check_allowed(request: gr.Request, proposed: dict, services: Services) -> None:
    """Programs may not change settings at all; folders change only from a browser on this machine."""
    if from_api_client(request):
        raise UserError("Settings are changed in the Settings tab of the page, not through the API.")
    if from_this_machine(request):
        return
    changed = [
        label
        for name, label in FOLDER_SETTINGS.items()
        if proposed.get(name, getattr(services.settings, name)) != getattr(services.settings, name)
    ]
    if changed:
        raise UserError(
            f"{' and '.join(changed)} can be changed only on the server's own machine (a browser at localhost), "
            "in config.json or by a flag; nothing was saved."
        )


def _settings_widgets(services: Services) -> dict[str, gr.components.Component]:
    """One widget per Settings field the user changes here, grouped as A1111's settings page groups them."""
    s = services.settings
    checkpoints = [value for _, value in checkpoint_choices(services.registry)]
    widgets: dict[str, gr.components.Component] = {}
    with gr.Row(equal_height=False):
        with gr.Column():
            _section("Saving images")
            widgets["outputs_dir"] = gr.Textbox(
                s.outputs_dir,
                label="Output folder (relative to the program's folder, or absolute; after a restart)",
                elem_id="settings_outputs_dir",
            )
            _section("Live previews")
            widgets["preview_method"] = gr.Radio(
                list(PREVIEW_METHODS), value=s.preview_method, label="Preview method", elem_id="settings_preview_method"
            )
            widgets["preview_every_n_steps"] = gr.Slider(
                1, 20, value=s.preview_every_n_steps, step=1, label="Preview every N steps", elem_id="settings_preview"
            )
            _section("Optimisations")
            widgets["step_cache"] = gr.Radio(
                list(STEP_CACHE_PRESETS),
                value=s.step_cache,
                label="Step cache (reuse the UNet's deep features between steps: Fast ≈ 2 steps, Faster ≈ 3 per full "
                "one; slightly less faithful, written in the infotext)",
                elem_id="settings_step_cache",
            )
            for name, label in SPEED_LABELS.items():
                widgets[name] = gr.Checkbox(getattr(s, name), label=label, elem_id=f"settings_{name}")
            _section("Models")
            widgets["model_cache_size"] = gr.Slider(
                1,
                MAX_MODEL_CACHE_SIZE,
                value=s.model_cache_size,
                step=1,
                label="Checkpoints kept loaded (switching back to one is instant; each takes memory)",
                elem_id="settings_model_cache_size",
            )
            widgets["sd2_prediction_type"] = gr.Radio(
                list(SD2_PREDICTION_TYPES),
                value=s.sd2_prediction_type,
                label="SD2.x checkpoints without a .yaml: prediction type",
                elem_id="settings_sd2_prediction_type",
            )
            _section("ControlNet")
            widgets["controlnet_unit_count"] = gr.Slider(
                1,
                MAX_CONTROLNET_UNITS,
                value=s.controlnet_unit_count,
                step=1,
                label="ControlNet units in each tab (after a restart)",
                elem_id="settings_controlnet_units",
            )
            widgets["save_control_maps"] = gr.Checkbox(
                s.save_control_maps, label="Save detected maps next to the images", elem_id="settings_save_maps"
            )
            _section("Upscaling")
            with gr.Row():
                widgets["upscaler_tile"] = gr.Slider(
                    32, 2048, value=s.upscaler_tile, step=16, label="Tile size for model upscalers (px; halved on "
                    "out of memory)", elem_id="settings_upscaler_tile",
                )  # fmt: skip
                widgets["upscaler_tile_overlap"] = gr.Slider(
                    0, 128, value=s.upscaler_tile_overlap, step=1, label="Tile overlap (px)",
                    elem_id="settings_upscaler_tile_overlap",
                )  # fmt: skip
            widgets["models_dir"] = gr.Textbox(
                s.models_dir, label="Models folder (A1111 layout; after a restart)", elem_id="settings_models_dir"
            )
        with gr.Column():
            _section("Defaults of new pages (a browser's own remembered values come first)")
            widgets["default_checkpoint"] = gr.Dropdown(
                [("(the first usable one)", ""), *((name, name) for name in checkpoints)],
                value=s.default_checkpoint if s.default_checkpoint in checkpoints else "",
                label="Checkpoint",
                elem_id="settings_default_checkpoint",
            )
            widgets["default_sampler"] = gr.Dropdown(
                list(SAMPLERS), value=s.default_sampler, label="Sampling method", elem_id="settings_default_sampler"
            )
            widgets["default_schedule_type"] = gr.Dropdown(
                SCHEDULE_TYPES, value=s.default_schedule_type, label="Schedule type", elem_id="settings_schedule"
            )
            widgets["default_steps"] = gr.Slider(
                1, MAX_STEPS, value=s.default_steps, step=1, label="Sampling steps", elem_id="settings_default_steps"
            )
            widgets["default_cfg_scale"] = gr.Slider(
                1, 30, value=s.default_cfg_scale, step=0.5, label="CFG Scale", elem_id="settings_default_cfg_scale"
            )
            with gr.Row():
                widgets["default_width"] = gr.Slider(
                    64, 2048, value=s.default_width, step=8, label="Width", elem_id="settings_default_width"
                )
                widgets["default_height"] = gr.Slider(
                    64, 2048, value=s.default_height, step=8, label="Height", elem_id="settings_default_height"
                )
            _section("The size a checkpoint switch moves to, per family (unless you changed the size)")
            with gr.Row():
                for name, label in (("native_size_sd1", "SD1.x"), ("native_size_sd2", "SD2.x"),
                                    ("native_size_sdxl", "SDXL")):  # fmt: skip
                    widgets[name] = gr.Slider(
                        64, 2048, value=getattr(s, name), step=8, label=label, elem_id=f"settings_{name}"
                    )
    return widgets


SPEED_LABELS = {  # core.speed's options; the flags in brackets force them on
    "channels_last": "channels_last memory order for the UNet and VAE (--opt-channelslast)",
    "fused_qkv": "Fused attention projections: one matmul for query, key and value (--fuse-qkv; not while a LoRA "
    "is used)",
    "compile_unet": "torch.compile the UNet and VAE (--compile; the first job at each size compiles for a minute or "
    "more, later ones are faster)",
    "fp8_unet": "Store the UNet's weights in fp8 (--fp8-unet; half the UNet's memory, slightly different pixels; "
    "reloads the checkpoint)",
}


def _section(title: str) -> None:
    gr.Markdown(f"**{title}**", elem_classes="settings-section")

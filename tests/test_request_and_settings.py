"""GenerationRequest validation and parsing; Settings saved and loaded."""

from __future__ import annotations

import pytest

from core.errors import UserError
from core.request import GenerationRequest
from core.settings import Settings


def test_from_dict_coerces_ui_values_and_ignores_unknown_keys():
    request = GenerationRequest.from_dict({"steps": 20.0, "cfg_scale": "7.5", "seed": 3.0, "junk": 1, "width": None})
    assert request.steps == 20 and request.cfg_scale == 7.5 and request.seed == 3 and request.width == 512


def test_from_dict_rejects_non_numbers():
    with pytest.raises(UserError, match="steps must be a number"):
        GenerationRequest.from_dict({"steps": "many"})


def test_validation_lists_every_problem():
    with pytest.raises(UserError) as info:
        GenerationRequest(checkpoint="x", width=100, steps=0, batch_size=0).validated()
    message = str(info.value)
    assert "Width 100 is not a multiple of 8" in message
    assert "Sampling steps" in message and "Batch size" in message


def test_empty_checkpoint_is_refused():
    with pytest.raises(UserError, match="No checkpoint"):
        GenerationRequest().validated()


def test_settings_round_trip(tmp_path):
    path = tmp_path / "config.json"
    assert Settings.load(path) == Settings()
    settings = Settings(preview_method="Full VAE", preview_every_n_steps=5, default_cfg_scale=6.5)
    settings.save(path)
    assert Settings.load(path) == settings


def test_settings_file_with_bad_values_falls_back_to_defaults(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"default_steps": "lots", "preview_every_n_steps": 4, "unknown": 1}')
    loaded = Settings.load(path)
    assert loaded.default_steps == Settings().default_steps and loaded.preview_every_n_steps == 4
    path.write_text("{not json")
    assert Settings.load(path) == Settings()


def test_settings_validation_lists_each_problem():
    with pytest.raises(UserError) as info:
        Settings(preview_method="Sometimes", default_steps=0, controlnet_unit_count=9, outputs_dir=" ").validated()
    message = str(info.value)
    assert "Unknown preview method 'Sometimes'" in message and "Sampling steps must be 1–150" in message
    assert "ControlNet units must be 1–3" in message and "output folder must not be empty" in message
    assert Settings().validated() == Settings()


def test_settings_from_form_values_coerces_whole_floats_and_keeps_defaults_for_the_rest():
    settings = Settings.from_values({"default_steps": 30.0, "default_cfg_scale": 5, "save_control_maps": True})
    assert settings.default_steps == 30 and isinstance(settings.default_steps, int)
    assert settings.default_cfg_scale == 5.0 and settings.save_control_maps is True
    assert Settings.from_values({"default_steps": 7.5, "model_cache_size": True}) == Settings()


def test_native_sizes_and_the_hint(models_dir, tmp_path):
    from core.native_size import native_size, size_hint
    from core.registry import HashCache, ModelRegistry
    from core.settings import Settings

    registry = ModelRegistry(models_dir, HashCache(tmp_path / "models.json"))
    settings = Settings(native_size_sdxl=896)
    assert native_size(registry, "sd15/tiny-sd1.safetensors", settings) == ("SD1.x", 512)
    assert native_size(registry, "tiny-sdxl.safetensors", settings) == ("SDXL", 896)
    assert native_size(registry, "missing", settings) is None
    assert size_hint(("SDXL", 1024), 512, 512) == (
        "SDXL draws best near 1024×1024; 512×512 is far from it (nothing is refused)."
    )
    assert size_hint(("SDXL", 1024), 1024, 768) == "" and size_hint(None, 64, 64) == ""
    with pytest.raises(UserError, match="SDXL size must be a multiple of 8"):
        Settings(native_size_sdxl=1001).validated()

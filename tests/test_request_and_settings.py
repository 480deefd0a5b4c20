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

"""TAESD live previews from models/VAE-approx (A1111's folder and file names): the file is converted to diffusers'
AutoencoderTiny exactly (the same output as taesd's own decoder), previews come at the image's size without
changing the image, and a missing or wrong file falls back to the approximation with a message."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from core.events import Notice, Progress, Result
from core.families import SD1, SDXL
from core.taesd import load_taesd, taesd_file
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_taesd import taesd_decoder, write_taesd


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_a_taesd_file_decodes_as_taesd_itself_does(tmp_path, fmt):
    original = taesd_decoder(seed=3)
    path = write_taesd(tmp_path / f"taesd_decoder.{fmt}", original, fmt)
    ours = load_taesd(path, torch.device("cpu"), torch.float32)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = original(latents) * 2 - 1  # taesd decodes to [0, 1]; diffusers' convention is [-1, 1]
        assert torch.allclose(ours.decode(latents).sample, expected, atol=1e-5)


def test_the_family_picks_its_file(tmp_path):
    for name in ("taesd_decoder.pth", "taesdxl_decoder.pth", "taesd_encoder.pth", "taesd3_decoder.pth", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert taesd_file(tmp_path, SD1).name == "taesd_decoder.pth"
    assert taesd_file(tmp_path, SDXL).name == "taesdxl_decoder.pth"
    assert taesd_file(tmp_path / "missing", SD1) is None


@pytest.fixture
def taesd_models(models_dir, tmp_path):
    """A copy of the test models with a VAE-approx folder (the shared folder stays without one)."""
    root = tmp_path / "models"
    shutil.copytree(models_dir, root, ignore=shutil.ignore_patterns("Lora", "embeddings"))
    write_taesd(root / "VAE-approx" / "taesd_decoder.pth", taesd_decoder(seed=1))
    return root


def run(engine, **changes):
    events = list(engine.run(tiny_request(steps=6, preview_every_n_steps=1, **changes)))
    previews = [e.preview[0] for e in events if isinstance(e, Progress) and e.preview]
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert isinstance(events[-1], Result)
    return previews, notices, np.asarray(events[-1].images[0].image)


def test_taesd_previews_come_at_full_size_and_leave_the_image_alone(taesd_models, tmp_path):
    engine = make_engine(taesd_models, tmp_path / "outputs", tmp_path / "cache")
    previews, notices, image = run(engine, preview_method="TAESD")
    _, _, plain = run(engine, preview_method="None")
    assert previews and previews[0].size == (64, 64) and not any("TAESD" in n for n in notices)
    assert np.array_equal(image, plain)


def test_without_a_taesd_file_the_previews_are_approximate_and_it_says_where_to_put_one(models_dir, tmp_path):
    engine = make_engine(models_dir, tmp_path / "outputs", tmp_path / "cache")
    previews, notices, _ = run(engine, preview_method="TAESD")
    assert previews and previews[0].size == (8, 8)
    assert any("models/VAE-approx/taesd_decoder.pth" in n for n in notices)


def test_a_file_that_is_not_taesd_is_named_and_the_job_still_runs(taesd_models, tmp_path):
    torch.save({"weight": torch.zeros(3)}, taesd_models / "VAE-approx" / "taesd_decoder.pth")
    engine = make_engine(taesd_models, tmp_path / "outputs", tmp_path / "cache")
    previews, notices, _ = run(engine, preview_method="TAESD")
    assert previews and previews[0].size == (8, 8)
    assert any("taesd_decoder.pth" in n and "TAESD decoder" in n for n in notices), notices

"""app.py as a real server process, driven through the txt2img tab's named API endpoint with gradio_client."""

from __future__ import annotations

import pytest
from gradio_client import Client

from core.outputs import read_infotext
from tests.app_server import running_app


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    with running_app(models_dir, tmp_path_factory.mktemp("server")) as app:
        yield app.url, app.work


def txt2img_args(**changes) -> dict:
    """The endpoint's parameters by name (every other one, the ControlNet units' and Hires fix's among them, keeps
    its widget's default): a parameter added later moves none of these."""
    values = dict(
        prompt="a photo of a cat",
        negative_prompt="",
        checkpoint="sd15/tiny-sd1.safetensors",
        vae="Automatic",
        sampler_name="Euler a",
        scheduler="Automatic",
        steps=3,
        width=64,
        height=64,
        n_iter=1,
        batch_size=1,
        cfg_scale=7,
        seed=1234,
        clip_skip=1,
        styles=[],
    )
    values.update(changes)
    return values


def test_generate_through_the_named_api_endpoint(server):
    url, work = server
    client = Client(url, verbose=False)
    preview, progress, gallery, infotext = client.predict(**txt2img_args(), api_name="/txt2img")
    assert len(gallery) == 1
    assert infotext.startswith(
        "a photo of a cat\nSteps: 3, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 64x64"
    )
    saved = list((work / "outputs" / "txt2img-images").rglob("*.png"))
    assert len(saved) == 1 and read_infotext(saved[0]) == infotext


def test_bad_input_gives_a_message_and_the_server_keeps_running(server):
    url, _ = server
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="not a multiple of 8"):
        client.predict(**txt2img_args(width=70), api_name="/txt2img")
    *_, infotext = client.predict(**txt2img_args(seed=5), api_name="/txt2img")
    assert "Seed: 5," in infotext

"""A decompression bomb (a few hundred KB of PNG that unpacks to 20000×20000 pixels) uploaded to every tab that
takes an image gets a clear message, and the server's memory does not jump: sizes are read from the header before
a pixel is decoded. A1111-style base64 images are bounded the same way."""

from __future__ import annotations

import base64
import time

import pytest
from gradio_client import Client
from PIL import Image

from core.errors import UserError
from core.request import to_image
from core.untrusted_images import MAX_IMAGE_SIDE, check_header, limit_pillow
from tests.app_server import running_app
from tests.security.endpoints import arguments, bomb_png, named_endpoints, peak_resident_mb, reset_peak_memory

MAX_GROWTH_MB = 200


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    path = bomb_png(tmp_path_factory.mktemp("bomb") / "bomb.png")
    assert path.stat().st_size < 1_000_000
    return path


@pytest.mark.parametrize("api_name", ["/img2img", "/inpaint", "/outpaint", "/controlnet"])
def test_a_bomb_upload_is_refused_with_a_message_and_no_memory_spike(models_dir, tmp_path, bomb, api_name, request):
    server = request.getfixturevalue("upload_server")
    client = Client(server.url, verbose=False)
    params = named_endpoints(client)[api_name]
    values = arguments(params, bomb)  # the bomb in every image input of the tab
    if api_name == "/controlnet":
        values[[p.get("label") for p in params].index("Enable")] = True

    reset_peak_memory(server.process.pid)
    before = peak_resident_mb(server.process.pid)
    with pytest.raises(Exception) as refused:  # noqa: B017 - gradio_client's AppError carries the server's message
        client.predict(*values, api_name=api_name)
    growth = peak_resident_mb(server.process.pid) - before
    print(f"{api_name}: the server's peak resident memory grew by {growth:.1f} MB")  # shown with pytest -s

    assert f"{MAX_IMAGE_SIDE} px" in str(refused.value) and "Scale it down" in str(refused.value), refused.value
    assert growth < MAX_GROWTH_MB, f"{api_name}: resident memory grew by {growth:.0f} MB"
    assert server.process.poll() is None


@pytest.fixture(scope="module")
def upload_server(models_dir, tmp_path_factory):
    with running_app(models_dir, tmp_path_factory.mktemp("uploads")) as app:
        yield app


def test_base64_bombs_from_the_api_are_refused_before_decoding(bomb):
    text = base64.b64encode(bomb.read_bytes()).decode()
    for value in (text, "data:image/png;base64," + text):
        started = time.perf_counter()
        with pytest.raises(UserError, match="Scale it down"):
            to_image(value, "init_images")
        assert time.perf_counter() - started < 5  # decoding 400 MB of pixels would take longer than reading a header


def test_a_header_just_over_the_side_limit_is_named_with_its_size(tmp_path):
    wide = tmp_path / "wide.png"
    Image.new("L", (MAX_IMAGE_SIDE + 1, 8)).save(wide)
    with pytest.raises(UserError, match=f"{MAX_IMAGE_SIDE + 1}x8"):
        check_header(wide, "init image")
    assert check_header(_saved(tmp_path / "ok.png", (64, 32)), "init image") == (64, 32)


def test_pillow_itself_refuses_bombs_once_the_process_set_its_limit(bomb):
    saved = Image.MAX_IMAGE_PIXELS
    try:
        limit_pillow()
        with pytest.raises(Image.DecompressionBombError):
            Image.open(bomb)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _saved(path, size):
    Image.new("RGB", size).save(path)
    return path

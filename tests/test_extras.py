"""Extras: scale by / scale to with crop, upscaler 2 blended at its visibility, saved under extras-images with the
source's parameters and A1111's "postprocessing" text, through the engine and through a worker."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from core.errors import UserError
from core.extras import ExtrasRequest
from tests.conftest import make_engine
from tests.fixtures.tiny_upscalers import esrgan_state, write_upscaler


@pytest.fixture(scope="module")
def extras_engine(models_dir, tmp_path_factory):
    import shutil

    root = tmp_path_factory.mktemp("extras-models")
    shutil.copytree(models_dir, root, dirs_exist_ok=True)
    write_upscaler(root / "ESRGAN" / "4x-tiny.pth", esrgan_state(4))
    work = tmp_path_factory.mktemp("extras")
    return make_engine(root, work / "out", work / "cache")


def picture(text: str | None = None) -> Image.Image:
    rng = np.random.default_rng(5)
    image = Image.fromarray((rng.random((24, 40, 3)) * 255).astype(np.uint8))
    if text is None:
        return image
    info = PngInfo()
    info.add_text("parameters", text)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return Image.open(io.BytesIO(buffer.getvalue()))


def result_image(result) -> Image.Image:
    return Image.open(io.BytesIO(result.png))


def test_scale_by_with_a_model_keeps_the_source_parameters(extras_engine):
    request = ExtrasRequest(upscaling_resize=3, upscaler_1="4x-tiny").with_image(picture("a cat\nSteps: 20, Seed: 1"))
    result = extras_engine.run_extras(request, save=True)
    saved = Image.open(result.path)
    assert saved.size == (120, 72) and result.path.parent.parent.name == "extras-images"
    assert saved.info["parameters"] == "a cat\nSteps: 20, Seed: 1"
    assert saved.info["postprocessing"] == "Postprocess upscale by: 3, Postprocess upscaler: 4x-tiny"
    assert result_image(result).info == saved.info
    assert not extras_engine.run_extras(request, save=False).path  # the API's way: nothing written


def test_scale_to_crops_to_fit_and_blends_upscaler_2(extras_engine):
    to = ExtrasRequest(resize_mode=1, upscaling_resize_w=64, upscaling_resize_h=64, upscaler_1="Lanczos")
    assert result_image(extras_engine.run_extras(to.with_image(picture()), save=False)).size == (64, 64)
    uncropped = ExtrasRequest(resize_mode=1, upscaling_resize_w=64, upscaling_resize_h=64, upscaling_crop=False)
    assert result_image(extras_engine.run_extras(uncropped.with_image(picture()), save=False)).size == (106, 64)

    def pixels(**changes) -> np.ndarray:
        request = ExtrasRequest(**{"upscaler_1": "Nearest", **changes}).with_image(picture())
        return np.asarray(result_image(extras_engine.run_extras(request, save=False)), dtype=float)

    nearest, model = pixels(), pixels(upscaler_1="4x-tiny")
    half = pixels(upscaler_2="4x-tiny", extras_upscaler_2_visibility=0.5)
    assert np.abs(half - (nearest + model) / 2).max() <= 1  # Image.blend at the visibility


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(upscaler_1="missing"), "No upscaler named 'missing'"),
        (dict(upscaling_resize=50), "Resize must be over 0 and at most 8"),
        (dict(resize_mode=1, upscaling_resize_w=100000), "Width must be 1–8192"),
    ],
)
def test_bad_extras_are_refused_by_name(extras_engine, changes, message):
    with pytest.raises(UserError, match=message):
        extras_engine.run_extras(ExtrasRequest(**changes).with_image(picture()), save=False)


def test_through_a_worker_the_result_is_the_same(extras_engine, worker_models_for_extras):
    from core.worker import WorkerConfig
    from core.worker_pool import WorkerPool

    root, work = worker_models_for_extras
    pool = WorkerPool([WorkerConfig(str(root), str(work / "out"), str(work / "cache"), "cpu", "fp32", 1, None)])
    try:
        request = ExtrasRequest(upscaling_resize=2, upscaler_1="4x-tiny").with_image(picture("kept"))
        through_worker = pool.run_extras(request, save=True)
        here = extras_engine.run_extras(request, save=False)
        assert np.array_equal(np.asarray(result_image(through_worker)), np.asarray(result_image(here)))
        assert Image.open(through_worker.path).info["parameters"] == "kept"
    finally:
        pool.close()


@pytest.fixture(scope="module")
def worker_models_for_extras(extras_engine, tmp_path_factory):
    return extras_engine.models.registry.models_dir, tmp_path_factory.mktemp("extras-worker")

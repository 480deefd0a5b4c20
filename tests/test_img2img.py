"""img2img through the engine with tiny models, and A1111's resize modes on synthetic images."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.events import Progress, Result
from core.image_inputs import resize_image
from core.request import RESIZE_MODES, GenerationRequest
from tests.conftest import tiny_request


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def picture(width: int = 96, height: int = 80, seed: int = 0) -> Image.Image:
    """Smooth colours with some detail, so resizes and the VAE both have something to show."""
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    rgb = np.stack([x * 255 // width, y * 255 // height, (x + y) % 64 * 4], axis=-1)
    rgb = rgb + rng.integers(-8, 8, rgb.shape)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def img2img(**changes) -> GenerationRequest:
    return tiny_request(**{"init_image": picture(), **changes})


# --- resize modes (pure functions) ---------------------------------------------------------------------------


def test_just_resize_stretches():
    image = picture(96, 32)
    assert np.array_equal(pixels(resize_image(0, image, 64, 64)), pixels(image.resize((64, 64), Image.LANCZOS)))


def test_crop_and_resize_covers_and_crops_the_centre():
    image = picture(96, 32)  # 3:1 into 1:1: scaled to 192x64, the middle 64 columns kept
    expected = image.resize((192, 64), Image.LANCZOS).crop((64, 0, 128, 64))
    assert np.array_equal(pixels(resize_image(1, image, 64, 64)), pixels(expected))


def test_resize_and_fill_fits_and_stretches_the_edge_rows():
    image = picture(96, 32)  # 3:1 into 1:1: scaled to 64x21, centred at y=22, the bands above/below stretched
    result = pixels(resize_image(2, image, 64, 64))
    fitted = pixels(image.resize((64, 21), Image.LANCZOS))
    assert np.array_equal(result[22:43], fitted)
    assert (result[:22] == result[0]).all() and (result[43:] == result[63]).all()  # bands: one row, repeated
    assert np.abs(result[0] - fitted[0]).mean() < 4 and np.abs(result[63] - fitted[-1]).mean() < 4  # edge rows


def test_resize_and_fill_pads_columns_for_tall_images():
    result = resize_image(2, picture(32, 96), 64, 64)
    assert result.size == (64, 64)
    columns = pixels(result)
    assert (columns[:, :22] == columns[:, :1]).all()


def test_latent_upscale_mode_resizes_pixels_like_just_resize():
    image = picture(96, 32)
    assert np.array_equal(pixels(resize_image(3, image, 64, 64)), pixels(resize_image(0, image, 64, 64)))
    assert RESIZE_MODES[3] == "Just resize (latent upscale)"


# --- engine -------------------------------------------------------------------------------------------------


def test_strength_0_returns_the_resized_input_without_running_the_model(engine):
    events = list(engine.run(img2img(denoising_strength=0, resize_mode=1)))
    assert not [e for e in events if isinstance(e, Progress)]
    result = events[-1]
    expected = resize_image(1, picture(), 64, 64)
    assert np.array_equal(pixels(result.images[0].image), pixels(expected))


def test_strength_1_changes_the_image_and_is_deterministic(engine):
    first = engine.generate(img2img(denoising_strength=1.0))
    second = engine.generate(img2img(denoising_strength=1.0))
    source = pixels(resize_image(0, picture(), 64, 64))
    assert np.array_equal(pixels(first.images[0].image), pixels(second.images[0].image))
    assert np.abs(pixels(first.images[0].image) - source).mean() > 5


def test_img2img_keeps_something_of_the_image_at_low_strength(engine):
    low = engine.generate(img2img(denoising_strength=0.25, steps=4)).images[0].image
    high = engine.generate(img2img(denoising_strength=1.0, steps=4)).images[0].image
    source = pixels(resize_image(0, picture(), 64, 64))
    assert np.abs(pixels(low) - source).mean() < np.abs(pixels(high) - source).mean()


@pytest.mark.parametrize("steps, strength, expected", [(8, 0.5, 4), (4, 0.75, 3), (4, 0.1, 1), (3, 1.0, 3)])
def test_steps_run_are_steps_times_strength(engine, steps, strength, expected):
    events = list(engine.run(img2img(steps=steps, denoising_strength=strength)))
    progress = [e for e in events if isinstance(e, Progress)]
    assert {p.total_steps for p in progress} == {expected}
    assert progress[-1].step == expected and progress[-1].fraction == pytest.approx(1.0)


def test_infotext_and_outputs_folder(engine):
    result = engine.generate(img2img())
    image = result.images[0]
    assert image.path.parent.parent.name == "img2img-images"
    assert image.infotext.endswith(", Model: tiny-sd1, Denoising strength: 0.75")
    txt2img = engine.generate(tiny_request()).images[0]
    assert txt2img.path.parent.parent.name == "txt2img-images"
    assert "Denoising strength" not in txt2img.infotext


def test_img2img_mode_without_an_image_is_refused(engine):
    with pytest.raises(UserError, match="No image: upload"):
        list(engine.run(tiny_request(), mode="img2img"))


def test_batches_seeds_samplers_and_previews_work_as_in_txt2img(engine):
    request = img2img(batch_size=2, n_iter=2, seed=50, sampler_name="Euler a", preview_method="Approximate")
    events = list(engine.run(request.with_changes(preview_every_n_steps=1)))
    result = events[-1]
    assert isinstance(result, Result) and [img.seed for img in result.images] == [50, 51, 52, 53]
    assert any(isinstance(e, Progress) and e.preview for e in events)
    alone = engine.generate(img2img(seed=53, sampler_name="Euler a"))
    assert np.abs(pixels(result.images[3].image) - pixels(alone.images[0].image)).max() <= 1


def test_latent_upscale_starts_from_the_image_at_its_own_size(engine):
    def run(**changes):
        request = img2img(**{"init_image": picture(128, 96), "resize_mode": 3, "width": 64, "height": 64, **changes})
        return pixels(engine.generate(request).images[0].image)

    latent = run()
    assert latent.shape == (64, 64, 3)
    assert np.array_equal(latent, run())  # same seed, same pixels
    assert not np.array_equal(latent, run(resize_mode=0))  # not a pixel resize before encoding
    assert not np.array_equal(latent, run(init_image=picture(128, 96, seed=1)))  # the upload is what it starts from


def test_sdxl_img2img_starts_from_the_image(engine):
    def run(**changes):
        request = img2img(**{"checkpoint": "tiny-sdxl.safetensors", "width": 64, "height": 96, **changes})
        return pixels(engine.generate(request).images[0].image)

    first = run()
    assert first.shape == (96, 64, 3)
    assert np.array_equal(first, run())
    assert not np.array_equal(first, run(init_image=picture(seed=1)))
    assert np.abs(first - run(denoising_strength=1.0)).mean() > 1  # the strength decides how much is kept


def test_inpainting_checkpoint_does_img2img_as_the_whole_image_masked(engine):
    """A1111's plain img2img on a 9-channel checkpoint: exactly an inpaint of the whole picture from the original."""
    checkpoint = "tiny-sd1-inpainting.safetensors"
    plain = engine.generate(img2img(checkpoint=checkpoint)).images[0]
    whole = Image.new("L", picture().size, 255)
    masked = engine.generate(img2img(checkpoint=checkpoint, mask=whole, inpainting_fill=1)).images[0]
    assert "Masked content" not in plain.infotext
    assert np.abs(pixels(plain.image) - pixels(masked.image)).max() <= 1
    assert not np.array_equal(
        pixels(plain.image),
        pixels(engine.generate(img2img(checkpoint=checkpoint, init_image=picture(seed=1))).images[0].image),
    )


def test_derived_pipeline_is_built_once_and_shares_the_modules(engine):
    engine.generate(img2img(steps=1))
    loaded = engine.models.activate("sd15/tiny-sd1.safetensors").loaded
    derived = loaded.derived["img2img"]
    engine.generate(img2img(steps=1))
    assert loaded.derived["img2img"] is derived and derived.unet is loaded.pipeline.unet


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(denoising_strength=1.5), "Denoising strength must be 0–1"),
        (dict(resize_mode=7), "Resize mode must be one of"),
        (dict(init_image=Image.new("RGB", (5000, 100))), "The image is 5000x100; the largest accepted is 4096"),
        (dict(init_image=Image.new("RGB", (4000, 4400))), "The image is 4000x4400"),
    ],
)
def test_bad_img2img_requests_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        img2img(**changes).validated()


def test_from_dict_takes_api_and_ui_values():
    buffer = io.BytesIO()
    picture(16, 8).save(buffer, format="PNG")
    encoded = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    request = GenerationRequest.from_dict(
        {"init_images": [encoded], "resize_mode": "Resize and fill", "inpaint_full_res": 1, "mask": None}
    )
    assert request.init_image.size == (16, 8) and request.resize_mode == 2 and request.inpaint_full_res is True
    assert GenerationRequest.from_dict({"init_image": np.zeros((8, 8, 3), np.uint8)}).init_image.size == (8, 8)
    assert GenerationRequest.from_dict({"inpaint_full_res": "Whole picture"}).inpaint_full_res is False
    with pytest.raises(UserError, match="init_image is not an image"):
        GenerationRequest.from_dict({"init_image": "bm90IGFuIGltYWdl"})
    assert request.to_dict()["init_image"].size == (16, 8)

"""Inpainting and outpainting: A1111's mask handling, exact pixels outside the mask, crops, infotext, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.events import Notice
from core.image_inputs import blur_mask, crop_region, prepare_image, threshold
from core.infotext import build_infotext, request_fields
from core.request import MASKED_CONTENT, GenerationRequest
from tests.conftest import tiny_request
from tests.test_img2img import picture, pixels


def square_mask(size=(64, 64), box=(24, 24, 40, 40), value=255) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(value, box)
    return mask


def inpaint(**changes) -> GenerationRequest:
    values = {"init_image": picture(64, 64), "mask": square_mask(), "denoising_strength": 1.0, "steps": 3}
    return tiny_request(**{**values, **changes})


def untouched(prepared) -> np.ndarray:
    """Where the result must equal the base exactly: the overlay (blurred mask) is 0."""
    return np.asarray(prepared.overlay) == 0


def test_whole_picture_keeps_every_pixel_outside_the_blurred_mask(engine):
    request = inpaint(init_image=picture(96, 80))  # resized to 64x64 first: the composite is against that
    prepared = prepare_image(request)
    result = engine.generate(request).images[0].image
    keep = untouched(prepared)
    assert keep[:8].all() and keep[:, :8].all() and not keep[28:36, 28:36].any()  # far away / inside the mask
    out, base = pixels(result), pixels(prepared.base)
    assert np.array_equal(out[keep], base[keep])
    assert np.abs(out[28:36, 28:36] - base[28:36, 28:36]).mean() > 5  # and the masked part was repainted


def test_only_masked_pastes_the_crop_back_at_the_uploads_size(engine):
    image = picture(96, 80)
    mask = square_mask((96, 80), (40, 30, 56, 46))
    request = inpaint(init_image=image, mask=mask, inpaint_full_res=True, inpaint_full_res_padding=8)
    prepared = prepare_image(request)
    # Bounding box of the blurred mask (blur 4 reaches int(2.5*4+0.5)=10 px), plus 8 px padding; already square.
    assert prepared.crop == (22, 12, 74, 64) and prepared.size == (64, 64)
    result = engine.generate(request).images[0].image
    assert result.size == (96, 80)
    changed = np.argwhere((pixels(result) != pixels(image)).any(axis=-1))
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    assert left >= 22 and top >= 12 and right < 74 and bottom < 64  # only inside the crop region
    keep = untouched(prepared)
    assert np.array_equal(pixels(result)[keep], pixels(image)[keep])


def test_crop_region_grows_to_the_processing_aspect_and_stays_inside_the_image():
    mask = square_mask((200, 100), (180, 40, 196, 50))
    x1, y1, x2, y2 = crop_region(mask, 64, 64, 4)
    assert (x2 - x1) == (y2 - y1) and min(x1, y1) >= 0 and x2 <= 200 and y2 <= 100
    assert x1 <= 176 and x2 >= 196  # the mask and its padding are inside


def test_inpainting_checkpoint_inpaints_and_keeps_the_rest(engine):
    request = inpaint(checkpoint="tiny-sd1-inpainting.safetensors")
    result = engine.generate(request).images[0].image
    prepared = prepare_image(request)
    keep = untouched(prepared)
    assert np.array_equal(pixels(result)[keep], pixels(prepared.base)[keep])


def test_sdxl_inpaints_with_its_regular_checkpoint(engine):
    request = inpaint(checkpoint="tiny-sdxl.safetensors", denoising_strength=0.75)
    result = engine.generate(request).images[0].image
    keep = untouched(prepare_image(request))
    assert result.size == (64, 64) and np.array_equal(pixels(result)[keep], pixels(picture(64, 64))[keep])


@pytest.mark.parametrize(
    "checkpoint", ["sd15/tiny-sd1.safetensors", "tiny-sd1-inpainting.safetensors", "tiny-sdxl.safetensors"]
)
def test_every_masked_content_runs_and_they_differ(engine, checkpoint):
    results = {}
    for fill, label in enumerate(MASKED_CONTENT):
        request = inpaint(checkpoint=checkpoint, inpainting_fill=fill, denoising_strength=0.5, steps=2)
        image = engine.generate(request).images[0]
        assert f"Masked content: {label}" in image.infotext
        results[fill] = pixels(image.image)
    inside = (slice(28, 36), slice(28, 36))
    for fill in (0, 2, 3):
        assert not np.array_equal(results[fill][inside], results[1][inside])
    keep = untouched(prepare_image(inpaint()))
    for result in results.values():
        assert np.array_equal(result[keep], pixels(picture(64, 64))[keep])


def test_fill_paints_the_mask_with_surrounding_colours():
    image = Image.new("RGB", (64, 64), (200, 30, 30))
    image.paste((0, 0, 255), (24, 24, 40, 40))  # a blue square, masked: fill must not keep any blue
    prepared = prepare_image(inpaint(init_image=image, inpainting_fill=0, mask_blur=0))
    centre = pixels(prepared.image)[30:34, 30:34]
    assert np.abs(centre - (200, 30, 30)).max() < 8


def test_outpainting_extends_the_canvas_and_keeps_the_centre(engine):
    request = inpaint(mask=None, outpaint_left=32, outpaint_top=13)  # 13 rounds up to 16
    result = engine.generate(request).images[0]
    assert result.image.size == (96, 80)
    # Right and bottom were not extended; away from the seam (blur 4 overlap + its 10 px reach) all is original.
    out = pixels(result.image)[16 + 14 :, 32 + 14 :]
    assert np.array_equal(out, pixels(picture(64, 64))[14:, 14:])
    assert np.abs(pixels(result.image)[:16].astype(float) - 127).mean() < 127  # the new border was painted
    assert 'Outpaint: "left 32, top 16"' in result.infotext and "Masked content: original" in result.infotext
    assert result.path.parent.parent.name == "img2img-images"


def test_outpainting_keeps_the_users_mask(engine):
    request = inpaint(outpaint_right=16, mask_blur=0)
    prepared = prepare_image(request)
    assert prepared.size == (80, 64)
    assert np.asarray(prepared.mask)[32, 32] == 255 and np.asarray(prepared.mask)[32, 4] == 0


def test_mask_of_another_size_is_stretched_with_a_notice(engine):
    events = list(engine.run(inpaint(mask=square_mask((128, 128), (48, 48, 80, 80)), steps=1)))
    notices = [e.message for e in events if isinstance(e, Notice)]
    assert "The mask is 128x128 but the image is 64x64: the mask was stretched to the image's size." in notices
    assert events[-1].images[0].image.size == (64, 64)


def test_grey_mask_is_thresholded_at_128():
    mask = square_mask(value=128)
    mask.paste(129, (0, 0, 8, 8))
    prepared = prepare_image(inpaint(mask=mask, mask_blur=0))
    assert np.asarray(prepared.mask)[30, 30] == 0 and np.asarray(prepared.mask)[4, 4] == 255
    assert set(np.unique(np.asarray(threshold(Image.new("L", (4, 4), 200))))) == {255}


def test_transparent_drawing_uses_its_alpha_as_the_mask():
    drawing = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    drawing.paste((255, 0, 0, 255), (24, 24, 40, 40))
    prepared = prepare_image(inpaint(mask=drawing, mask_blur=0))
    assert np.asarray(prepared.mask)[30, 30] == 255 and np.asarray(prepared.mask)[4, 4] == 0


def test_inpaint_not_masked_inverts_the_mask():
    prepared = prepare_image(inpaint(inpainting_mask_invert=1, mask_blur=0))
    assert np.asarray(prepared.mask)[30, 30] == 0 and np.asarray(prepared.mask)[4, 4] == 255


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(mask=square_mask(value=0)), "The mask is empty: nothing would change. Draw over the part to repaint."),
        (dict(mask=Image.new("L", (64, 64), 255), inpainting_mask_invert=1), "Inpaint not masked"),
    ],
)
def test_masks_that_change_nothing_are_refused(engine, changes, message):
    with pytest.raises(UserError, match=message):
        engine.generate(inpaint(**changes))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(init_image=None), "No image: upload the picture to inpaint"),
        (dict(init_image=None, mask=None, outpaint_left=64), "No image: upload the picture to outpaint"),
        (dict(mask=Image.new("L", (8000, 100))), "The mask is 8000x100"),
        (dict(inpainting_fill=4, inpainting_mask_invert=2), "Masked content must be one of: fill, original"),
        (dict(outpaint_left=-8), "each side must be 0 or more"),
        (dict(outpaint_left=4096), "Outpainting makes the canvas 4160x64"),
    ],
)
def test_bad_inpainting_requests_are_refused(changes, message):
    with pytest.raises(UserError, match=message):
        inpaint(**changes).validated()


def test_mask_blur_matches_a1111s_opencv_blur():
    cv2 = pytest.importorskip("cv2")
    mask = np.asarray(square_mask((64, 48), (10, 12, 30, 20)))
    for radius in (1, 4, 11):
        size = 2 * int(2.5 * radius + 0.5) + 1
        expected = cv2.GaussianBlur(cv2.GaussianBlur(mask, (size, 1), radius), (1, size), radius)
        ours = np.asarray(blur_mask(Image.fromarray(mask), radius))
        assert np.abs(ours.astype(int) - expected).max() <= 1


def test_infotext_fields_in_a1111s_order_and_back():
    request = inpaint(
        inpainting_mask_invert=1, inpaint_full_res=True, inpaint_full_res_padding=16, inpainting_fill=2, seed=5
    )
    text = build_infotext(request, seed=5, model_name="m", model_hash=None)
    assert text.endswith(
        "Model: m, Denoising strength: 1, Mask mode: Inpaint not masked, Mask blur: 4, Inpaint area: Only masked, "
        "Masked area padding: 16, Masked content: latent noise"
    )
    fields = request_fields(text)
    back = GenerationRequest.from_dict(fields)
    expected = request.with_changes(init_image=None, mask=None, checkpoint="", preview_method=back.preview_method)
    assert back == expected
    plain = build_infotext(inpaint(mask_blur=0), seed=5, model_name="m", model_hash=None)
    assert plain.endswith("Denoising strength: 1, Inpaint area: Whole picture, Masked content: original")
    assert GenerationRequest.from_dict(request_fields(plain)).mask_blur == 0


def test_outpaint_infotext_reads_back():
    text = build_infotext(
        inpaint(mask=None, outpaint_left=64, outpaint_bottom=8), seed=1, model_name="m", model_hash=None
    )
    back = GenerationRequest.from_dict(request_fields(text))
    assert (back.outpaint_left, back.outpaint_right, back.outpaint_top, back.outpaint_bottom) == (64, 0, 0, 8)

"""Hires fix: the second pass's size, steps, upscalers, infotext (exactly as A1111 writes it, and read back),
interrupt in either pass, prompt schedules over hires steps, SD1 and SDXL."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import UserError
from core.events import JobControl, Progress, Result
from core.hires import HIRES_UPSCALERS, hires_size
from core.infotext import request_fields
from core.request import GenerationRequest
from tests.conftest import tiny_request


def hires(**changes) -> GenerationRequest:
    values = dict(enable_hr=True, denoising_strength=0.5, hr_second_pass_steps=4)
    return tiny_request(**{**values, **changes})


def pixels(result: Result) -> np.ndarray:
    return np.asarray(result.images[0].image, dtype=np.float64)


def test_the_second_pass_size_follows_a1111():
    assert hires_size(hires(width=512, height=768, hr_scale=1.5)).__dict__ == dict(width=768, height=1152, crop=None)
    assert hires_size(hires(width=512, height=768, hr_resize_x=1024)).__dict__ == dict(width=1024, height=1536,
                                                                                       crop=None)  # fmt: skip
    assert hires_size(hires(width=512, height=768, hr_resize_y=1024)).__dict__ == dict(width=680, height=1024,
                                                                                       crop=None)  # fmt: skip
    both = hires_size(hires(width=512, height=512, hr_resize_x=1024, hr_resize_y=768))  # cover, then crop
    assert both.__dict__ == dict(width=1024, height=1024, crop=(1024, 768))
    assert hires_size(hires(width=520, height=520, hr_scale=1.3)).width % 8 == 0


def test_output_size_and_the_steps_the_second_pass_runs(engine):
    events = list(engine.run(hires(hr_second_pass_steps=6, denoising_strength=0.5)))
    result = events[-1]
    assert result.images[0].image.size == (128, 128)
    # (A slow consumer gets the latest progress only, so not every step shows: their totals and order do.)
    steps = [(e.pass_index, e.step, e.total_steps) for e in events if isinstance(e, Progress)]
    assert steps == sorted(steps) and {s[0] for s in steps} == {0, 1}
    assert all(total == 4 for p, _, total in steps if p == 0)
    assert all(total == 3 for p, _, total in steps if p == 1)  # int(6 x 0.5) steps run, as A1111
    fractions = [e.fraction for e in events if isinstance(e, Progress)]
    first_pass = [f for f, (p, _, _) in zip(fractions, steps, strict=True) if p == 0]
    assert fractions == sorted(fractions) and all(f <= 0.5 for f in first_pass)
    cropped = engine.generate(hires(hr_resize_x=96, hr_resize_y=64))
    assert cropped.images[0].image.size == (96, 64)


def test_the_infotext_is_a1111s_and_reads_back(engine):
    request = hires(hr_sampler_name="DPM++ 2M", hr_prompt="a dog", hr_scale=1.5, hr_upscaler="Latent (bicubic)")
    (image,) = engine.generate(request).images
    params = image.infotext.splitlines()[-1]
    assert params.endswith(
        "Model: tiny-sd1, Denoising strength: 0.5, Hires sampler: DPM++ 2M, Hires prompt: a dog, "
        "Hires schedule type: Karras, Hires upscale: 1.5, Hires steps: 4, Hires upscaler: Latent (bicubic)"
    )
    back = GenerationRequest.from_dict(request_fields(image.infotext) | {"checkpoint": request.checkpoint})
    for name in ("enable_hr", "hr_scale", "hr_second_pass_steps", "hr_upscaler", "hr_sampler_name", "hr_prompt",
                 "denoising_strength"):  # fmt: skip
        assert getattr(back, name) == getattr(request, name), name
    assert back.hr_scheduler == "Karras"
    resized = engine.generate(hires(hr_resize_x=128, hr_resize_y=96, hr_second_pass_steps=0)).images[0]
    assert resized.infotext.endswith("Denoising strength: 0.5, Hires resize: 128x96, Hires upscaler: Latent")
    plain = engine.generate(tiny_request()).images[0].infotext
    assert "Hires" not in plain and "Denoising" not in plain


def test_latent_and_pixel_upscalers_differ_and_each_is_reproducible(engine):
    latent = pixels(engine.generate(hires(hr_upscaler="Latent")))
    again = pixels(engine.generate(hires(hr_upscaler="Latent")))
    lanczos = pixels(engine.generate(hires(hr_upscaler="Lanczos")))
    nearest = pixels(engine.generate(hires(hr_upscaler="Latent (nearest)")))
    assert np.array_equal(latent, again)
    assert np.abs(latent - lanczos).mean() > 1 and np.abs(latent - nearest).mean() > 0.5


def test_interrupt_in_either_pass_returns_what_exists(engine):
    for stop_in in (0, 1):
        control = JobControl()
        events = []
        for event in engine.run(hires(steps=10, hr_second_pass_steps=10, denoising_strength=1.0), control):
            events.append(event)
            if isinstance(event, Progress) and event.pass_index == stop_in and event.step == 2:
                control.interrupt()
        result = events[-1]
        assert result.interrupted and len(result.images) == 1
        assert result.images[0].image.size == ((64, 64) if stop_in == 0 else (128, 128))
        # The job runs on while the event reaches this thread: it stops within a step or two, not at the end.
        assert max(e.step for e in events if isinstance(e, Progress) and e.pass_index == stop_in) < 10
        assert not any(isinstance(e, Progress) and e.pass_index > stop_in for e in events)


def test_skip_in_the_first_pass_skips_its_second_pass_only(engine):
    control = JobControl()
    events = []
    for event in engine.run(hires(n_iter=2), control):
        events.append(event)
        if isinstance(event, Progress) and event.batch_index == 0 and event.step == 2 and event.pass_index == 0:
            control.skip()
    result = events[-1]
    assert [image.image.size for image in result.images] == [(64, 64), (128, 128)]


def test_a_prompt_schedule_counts_hires_steps(engine):
    """[a cat:a dog:6] switches at step 6 of the 8 hires steps; counted in the first pass's 4 steps it never
    would, and the picture would be the plain "a cat" one."""

    def second_pass(prompt: str) -> np.ndarray:
        return pixels(engine.generate(hires(hr_prompt=prompt, denoising_strength=1.0, hr_second_pass_steps=8)))

    scheduled, cat, dog = second_pass("[a cat:a dog:6]"), second_pass("a cat"), second_pass("a dog")
    assert not np.array_equal(scheduled, cat) and not np.array_equal(scheduled, dog)


def test_sdxl_hires(engine):
    result = engine.generate(hires(checkpoint="tiny-sdxl.safetensors", hr_scale=1.5))
    assert result.images[0].image.size == (96, 96) and "Hires upscale: 1.5" in result.images[0].infotext


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(hr_upscaler=" "), "Choose a hires upscaler: Latent"),
        (dict(hr_scale=8), "Hires upscale by must be 1–4"),
        (dict(width=2048, height=2048, hr_scale=2), "Hires fix makes 4096x4096"),
        (dict(hr_sampler_name="Nope"), "Unknown hires sampler 'Nope'"),
        (dict(hr_second_pass_steps=500), "Hires steps must be"),
    ],
)
def test_bad_hires_values_are_refused_by_name(changes, message):
    with pytest.raises(UserError, match=message):
        hires(**changes).validated()


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_an_inpainting_checkpoint_runs_both_passes(engine, upscaler):
    assert len(HIRES_UPSCALERS) == 9
    result = engine.generate(hires(checkpoint="tiny-sd1-inpainting.safetensors", hr_upscaler=upscaler))
    assert result.images[0].image.size == (128, 128) and "Hires upscaler: " + upscaler in result.images[0].infotext


def test_img2img_ignores_the_hires_fields(engine):
    from PIL import Image

    request = tiny_request(init_image=Image.new("RGB", (64, 64)), enable_hr=True, denoising_strength=0.5)
    (image,) = engine.generate(request).images
    assert image.image.size == (64, 64) and "Hires" not in image.infotext


def test_a_controlnet_job_with_hires_fix_runs_both_passes(engine):
    """Both passes go through the ControlNet pipelines (the unit's map resized to the second pass's size), and the
    unit changes the final picture."""
    from tests.test_controlnet import unit

    with_unit = hires(controlnet_units=(unit(),), denoising_strength=1.0)
    result = engine.generate(with_unit)
    assert result.images[0].image.size == (128, 128) and "ControlNet 0" in result.images[0].infotext
    first_pass_only = engine.generate(with_unit.with_changes(enable_hr=False)).images[0].image
    assert first_pass_only.size == (64, 64)
    plain_second = engine.generate(with_unit.with_changes(controlnet_units=()))
    assert not np.array_equal(pixels(result), pixels(plain_second))


def test_a_hires_checkpoint_runs_the_second_pass_and_is_named_as_a1111(engine):
    request = hires(hr_checkpoint_name="tiny-sd1-diffusers", hr_upscaler="Latent")
    (image,) = engine.generate(request).images
    assert image.image.size == (128, 128)
    assert "Denoising strength: 0.5, Hires checkpoint: tiny-sd1-diffusers, Hires upscale: 2" in image.infotext
    same = engine.generate(request.with_changes(hr_checkpoint_name="Use same checkpoint")).images[0]
    assert "Hires checkpoint" not in same.infotext
    assert not np.array_equal(np.asarray(image.image), np.asarray(same.image))
    back = GenerationRequest.from_dict(request_fields(image.infotext) | {"checkpoint": request.checkpoint})
    assert back.hr_checkpoint_name == "tiny-sd1-diffusers"
    sdxl = engine.generate(hires(hr_checkpoint_name="tiny-sdxl.safetensors")).images[0]  # another family: pixels
    assert sdxl.image.size == (128, 128) and "Hires checkpoint: tiny-sdxl [" in sdxl.infotext

"""End to end through the engine with tiny models: determinism, seeds, previews, interrupt, skip, outputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from core.errors import UserError
from core.events import JobControl, Notice, Progress, Result
from core.outputs import read_infotext
from tests.conftest import make_engine, tiny_request


@pytest.fixture(scope="module", params=["fp32", pytest.param("bf16", marks=pytest.mark.bf16)])
def engine(request, models_dir, tmp_path_factory):
    """Every test of this module in fp32 and again in bf16 on the CPU: a half-precision model meets the same code
    paths a GPU's fp16/bf16 does (LoRA deltas, the VAE, embeddings), so dtype mismatches show up here."""
    work = tmp_path_factory.mktemp(f"engine-{request.param}")
    return make_engine(models_dir, work / "outputs", work / "cache", precision=request.param)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_same_request_and_seed_give_same_pixels(engine):
    first = engine.generate(tiny_request())
    second = engine.generate(tiny_request())
    other = engine.generate(tiny_request(seed=1235))
    assert np.array_equal(pixels(first.images[0].image), pixels(second.images[0].image))
    assert not np.array_equal(pixels(first.images[0].image), pixels(other.images[0].image))


def test_batch_image_i_uses_seed_plus_i(engine):
    result = engine.generate(tiny_request(batch_size=2, n_iter=2, seed=100))
    assert [img.seed for img in result.images] == [100, 101, 102, 103]
    alone = engine.generate(tiny_request(seed=103))
    # The same seed gives the same picture whether it was the 4th image of a batch or generated alone.
    diff = np.abs(pixels(result.images[3].image) - pixels(alone.images[0].image)).max()
    assert diff <= 1


def test_random_seed_is_recorded(engine):
    result = engine.generate(tiny_request(seed=-1))
    seed = result.images[0].seed
    assert 0 <= seed < 2**32
    assert f"Seed: {seed}," in result.images[0].infotext


@pytest.mark.parametrize("method", ["Approximate", "Full VAE"])
def test_previews_arrive_and_never_change_the_image(engine, method):
    plain = engine.generate(tiny_request(steps=6))
    events = list(engine.run(tiny_request(steps=6, preview_method=method, preview_every_n_steps=1)))
    previews = [e for e in events if isinstance(e, Progress) and e.preview]
    result = events[-1]
    assert isinstance(result, Result)
    assert previews, "no preview reached the consumer"
    # Full VAE: the image's size; Approximate: the latent's (1/8; the page scales it up).
    assert previews[0].preview[0].size == ((64, 64) if method == "Full VAE" else (8, 8))
    assert np.array_equal(pixels(plain.images[0].image), pixels(result.images[0].image))


def test_preview_shows_predicted_clean_image_not_noise(engine):
    """With the x0 prediction, the last preview is close to the final image; raw noisy latents would not be."""
    events = list(engine.run(tiny_request(steps=8, preview_method="Full VAE", preview_every_n_steps=1)))
    last_preview = [e for e in events if isinstance(e, Progress) and e.preview][-1].preview[0]
    final = events[-1].images[0].image
    assert np.abs(pixels(last_preview) - pixels(final)).mean() < 12


def test_progress_reports_steps_and_time(engine):
    events = list(engine.run(tiny_request(steps=5, n_iter=2)))
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].step == 5 and progress[-1].batch_index == 1
    assert progress[-1].fraction == pytest.approx(1.0)
    assert all(p.elapsed >= 0 for p in progress)
    assert any(isinstance(e, Notice) and "CPU" in e.message for e in events)


def test_interrupt_stops_within_a_step_and_returns_the_image(engine):
    control = JobControl()
    seen = []
    for event in engine.run(tiny_request(steps=40, n_iter=3), control):
        if isinstance(event, Progress):
            seen.append(event.step)
            if event.step >= 2:
                control.interrupt()
        result = event
    assert isinstance(result, Result) and result.interrupted
    assert len(result.images) == 1  # the partial image of the batch that was running
    assert max(seen) <= 4  # stopped within a step (events may coalesce, never run on)


def test_skip_ends_only_the_current_batch(engine):
    control = JobControl()
    skipped = threading.Event()
    batches = set()
    for event in engine.run(tiny_request(steps=30, n_iter=2), control):
        if isinstance(event, Progress):
            batches.add(event.batch_index)
            if event.batch_index == 0 and not skipped.is_set():
                control.skip()
                skipped.set()
        result = event
    assert not result.interrupted
    assert len(result.images) == 2 and batches == {0, 1}


def test_png_carries_infotext_and_names_never_collide(engine):
    result = engine.generate(tiny_request(batch_size=2))
    paths = [img.path for img in result.images]
    assert len(set(paths)) == 2
    for img in result.images:
        assert img.path.parent.parent.name == "txt2img-images"
        assert read_infotext(img.path) == img.infotext
    again = engine.generate(tiny_request(batch_size=2))
    assert not set(paths) & {img.path for img in again.images}
    text = result.images[0].infotext
    assert text.startswith("a photo of a cat\nNegative prompt: blurry\nSteps: 4, Sampler: Euler, Schedule type: ")
    assert ", Seed: 1234, Size: 64x64, Model hash: " in text
    assert text.endswith(", Model: tiny-sd1")


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(width=65), "multiple of 8"),
        (dict(height=100000), "64–4096"),
        (dict(steps=0), "Sampling steps"),
        (dict(checkpoint="missing.safetensors"), "No checkpoint named"),
        (dict(checkpoint="../../etc/passwd"), "No checkpoint named"),
        (dict(sampler_name="Nope"), "Unknown sampler"),
    ],
)
def test_bad_requests_get_a_clear_message(engine, changes, message):
    with pytest.raises(UserError, match=message):
        engine.generate(tiny_request(**changes))
    assert engine.generate(tiny_request(steps=1)).images  # and the engine still works


@pytest.mark.parametrize(
    "sampler", ["Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "Heun", "DPM2 a", "LMS", "DDIM", "UniPC", "LCM"]
)
def test_samplers_are_deterministic(engine, sampler):
    a = engine.generate(tiny_request(sampler_name=sampler, steps=3))
    b = engine.generate(tiny_request(sampler_name=sampler, steps=3))
    assert np.array_equal(pixels(a.images[0].image), pixels(b.images[0].image))
    assert f"Sampler: {sampler}," in a.images[0].infotext


def test_clip_skip_changes_the_image_and_is_recorded(engine):
    base = engine.generate(tiny_request())
    skipped = engine.generate(tiny_request(clip_skip=2))
    assert not np.array_equal(pixels(base.images[0].image), pixels(skipped.images[0].image))
    assert "Clip skip: 2" in skipped.images[0].infotext


@pytest.mark.parametrize("checkpoint", ["tiny-sdxl.safetensors", "tiny-sd1-inpainting.safetensors"])
def test_sdxl_and_inpainting_checkpoints_run_txt2img_by_seed_and_prompt(engine, checkpoint):
    def image(**changes):
        request = tiny_request(**{"checkpoint": checkpoint, "width": 64, "height": 96, **changes})
        return pixels(engine.generate(request).images[0].image)

    first = image()
    assert first.shape == (96, 64, 3)
    assert np.array_equal(first, image())
    assert not np.array_equal(first, image(seed=99))
    assert not np.array_equal(first, image(prompt="a red bicycle"))


def test_single_file_and_diffusers_folder_give_the_same_image(engine):
    single = engine.generate(tiny_request())
    folder = engine.generate(tiny_request(checkpoint="tiny-sd1-diffusers"))
    assert np.abs(pixels(single.images[0].image) - pixels(folder.images[0].image)).max() <= 1


def test_clip_skip_works_for_diffusers_folders(engine):
    own = engine.generate(tiny_request(checkpoint="tiny-sd1-diffusers"))
    folder = engine.generate(tiny_request(checkpoint="tiny-sd1-diffusers", clip_skip=2))
    single = engine.generate(tiny_request(clip_skip=2))  # the same weights as one file
    assert "Clip skip: 2" in folder.images[0].infotext
    assert np.abs(pixels(own.images[0].image) - pixels(folder.images[0].image)).mean() > 1
    assert np.abs(pixels(single.images[0].image) - pixels(folder.images[0].image)).max() <= 1


def test_vae_choice_for_diffusers_folders(tmp_path):
    """A VAE file, a diffusers-format VAE folder and A1111's "Automatic" (a VAE named like the checkpoint) all
    apply to a diffusers-folder checkpoint; "None" gives its own VAE back."""
    from safetensors.torch import save_file

    from core.families import SD1
    from core.loader import load_vae
    from tests.conftest import make_engine
    from tests.fixtures.tiny_models import ldm_state_dict, write_checkpoint, write_diffusers_folder

    models = tmp_path / "models"
    write_diffusers_folder(models / "Stable-diffusion" / "folder", "SD1")
    write_checkpoint(models / "Stable-diffusion" / "single.safetensors", "SD1")
    vae_file = models / "VAE" / "other.vae.safetensors"
    vae_file.parent.mkdir(parents=True)
    state = ldm_state_dict("SD1", seed=7)
    save_file(
        {
            k.removeprefix("first_stage_model."): v.contiguous()
            for k, v in state.items()
            if k.startswith("first_stage_model.")
        },
        vae_file,
    )
    load_vae(vae_file, SD1).save_pretrained(models / "VAE" / "other-diffusers")
    engine = make_engine(models, tmp_path / "outputs", tmp_path / "cache")

    def image(**changes):
        return pixels(engine.generate(tiny_request(checkpoint="folder", **changes)).images[0].image)

    own = image()
    with_file = image(vae="other.vae.safetensors")
    assert np.abs(own - with_file).mean() > 1
    assert np.abs(with_file - image(vae="other-diffusers")).max() <= 1  # same weights, other layout
    single = pixels(
        engine.generate(tiny_request(checkpoint="single.safetensors", vae="other.vae.safetensors")).images[0].image
    )
    assert np.abs(with_file - single).max() <= 1
    assert np.array_equal(image(vae="None"), own)

    (models / "VAE" / "folder.vae.safetensors").write_bytes(vae_file.read_bytes())  # named like the checkpoint
    assert np.array_equal(image(vae="Automatic"), with_file)


def test_second_order_sampler_progress_ends_at_its_own_total(engine):
    events = list(engine.run(tiny_request(sampler_name="Heun", steps=4)))
    last = [e for e in events if isinstance(e, Progress)][-1]
    assert last.step == last.total_steps and last.fraction == pytest.approx(1.0)


def test_unsupported_schedule_type_for_a_sampler_is_refused_before_loading(engine):
    with pytest.raises(UserError, match="LCM"):
        engine.generate(tiny_request(sampler_name="LCM", scheduler="Karras"))


def test_vae_override_and_automatic_vae(engine, models_dir):
    from safetensors.torch import save_file

    from tests.fixtures.tiny_models import ldm_state_dict

    vae = {
        k.removeprefix("first_stage_model."): v
        for k, v in ldm_state_dict("SD1", seed=7).items()
        if k.startswith("first_stage_model.")
    }
    save_file({k: v.contiguous() for k, v in vae.items()}, models_dir / "VAE" / "other.vae.safetensors")
    own = engine.generate(tiny_request())
    swapped = engine.generate(tiny_request(vae="other.vae.safetensors"))
    assert not np.array_equal(pixels(own.images[0].image), pixels(swapped.images[0].image))
    assert "VAE: other.vae.safetensors" in swapped.images[0].infotext and "VAE hash: " in swapped.images[0].infotext
    back = engine.generate(tiny_request(vae="None"))  # the checkpoint's own VAE is restored
    assert np.array_equal(pixels(own.images[0].image), pixels(back.images[0].image))
    assert "VAE:" not in back.images[0].infotext


def test_model_cache_evicts_and_switches_back(models_dir, tmp_path):
    from tests.conftest import make_engine

    engine = make_engine(models_dir, tmp_path / "out", tmp_path / "cache", capacity=1)
    first = engine.generate(tiny_request())
    engine.generate(tiny_request(checkpoint="tiny-sdxl.safetensors"))
    assert engine.models.loaded_names() == ["tiny-sdxl.safetensors"]
    again = engine.generate(tiny_request())
    assert np.array_equal(pixels(first.images[0].image), pixels(again.images[0].image))
    # Named as requests name them (a subfolder included): the worker pool matches jobs to workers by these names.
    assert engine.models.loaded_names() == [tiny_request().checkpoint] == ["sd15/tiny-sd1.safetensors"]

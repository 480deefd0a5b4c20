"""txt2img in a real browser: typing, sliders, dropdowns, Generate, previews, seeds, Interrupt, errors."""

from __future__ import annotations

import re
import time

import numpy as np
from playwright.sync_api import expect

from tests.browser.studio_page import StudioPage, pixels


def quick_settings(studio: StudioPage, *, steps: int = 4, size: int = 64, sampler: str = "Euler") -> None:
    studio.set_slider("txt2img_steps", steps)
    studio.set_slider("txt2img_width", size)
    studio.set_slider("txt2img_height", size)
    studio.choose("txt2img_sampler", sampler)


def seed_of(infotext: str) -> int:
    return int(re.search(r"Seed: (\d+)", infotext).group(1))


def test_page_loads_without_console_errors(open_page):
    studio = open_page()
    expect(studio.page.get_by_role("tab", name="txt2img")).to_be_visible()
    expect(studio.page.get_by_role("tab", name="Settings")).to_be_visible()
    assert studio.chosen("checkpoint").startswith("tiny-sd1.safetensors")
    assert studio.console_errors() == []


def test_generate_shows_previews_progress_and_the_chosen_values(open_page):
    studio = open_page()
    studio.fill("txt2img_prompt", "a lighthouse at dusk")
    studio.fill("txt2img_neg_prompt", "fog")
    quick_settings(studio, steps=16, size=512)
    studio.set_slider("txt2img_cfg_scale", 4.5)
    studio.watch_job()

    infotext = studio.generate()

    trace = studio.job_trace()
    assert len(trace["previews"]) >= 2, "the live preview should change while the job runs"
    assert any(0 < value < 100 for value in trace["progress"]), trace["progress"]
    assert infotext.startswith("a lighthouse at dusk\nNegative prompt: fog\nSteps: 16, Sampler: Euler, ")
    assert "CFG scale: 4.5," in infotext and "Size: 512x512," in infotext and infotext.endswith("Model: tiny-sd1")
    [image] = studio.gallery_images()
    assert image.size == (512, 512)
    assert image.info["parameters"] == infotext  # the downloaded file carries A1111's infotext
    expect(studio.page.locator("#txt2img_preview")).to_be_hidden()  # the preview makes way for the gallery
    assert studio.console_errors() == []


def test_ctrl_enter_in_the_prompt_generates(open_page):
    studio = open_page()
    quick_settings(studio)
    studio.fill("txt2img_prompt", "keyboard person")
    infotext = studio.generate(keyboard=True)
    assert infotext.startswith("keyboard person\n")


def test_interrupt_stops_a_long_run_and_the_ui_is_usable_at_once(open_page):
    studio = open_page()
    quick_settings(studio, steps=150, size=512)
    studio.fill("txt2img_prompt", "a long job")
    studio.watch_job()
    before = studio.job_marker()
    studio.click("txt2img_generate")
    studio.page.wait_for_function("window.__trace.progress.length > 0", timeout=60_000)

    clicked = time.monotonic()
    studio.click("txt2img_interrupt")
    studio.wait_for_job(before)
    assert time.monotonic() - clicked < 10
    expect(studio.page.locator("#txt2img_progress")).to_contain_text("Interrupted")
    assert max(studio.job_trace()["progress"]) < 100

    quick_settings(studio)
    studio.fill("txt2img_prompt", "right after")
    started = time.monotonic()
    assert studio.generate().startswith("right after\nSteps: 4,")
    assert time.monotonic() - started < 30


def test_seed_buttons_and_the_same_seed_giving_the_same_image(open_page):
    studio = open_page()
    quick_settings(studio)
    studio.fill("txt2img_prompt", "seeded")
    studio.fill("txt2img_seed", "77")
    studio.click("txt2img_random_seed")
    expect(studio.page.locator("#txt2img_seed input")).to_have_value("-1")

    first_info = studio.generate()
    [first] = studio.gallery_images()
    studio.click("txt2img_reuse_seed")
    expect(studio.page.locator("#txt2img_seed input")).to_have_value(str(seed_of(first_info)))

    second_info = studio.generate()
    [second] = studio.gallery_images()
    assert seed_of(second_info) == seed_of(first_info)
    assert np.array_equal(pixels(first), pixels(second))


def test_two_browsers_generating_at_once_each_get_their_own_result(open_page):
    alice, bob = open_page(), open_page()
    for studio, prompt, seed in ((alice, "alice's cat", 11), (bob, "bob's dog", 22)):
        quick_settings(studio, steps=8, size=256)
        studio.fill("txt2img_prompt", prompt)
        studio.fill("txt2img_seed", str(seed))
    befores = [alice.job_marker(), bob.job_marker()]
    alice.click("txt2img_generate")
    bob.click("txt2img_generate")
    alice_info = alice.wait_for_job(befores[0])
    bob_info = bob.wait_for_job(befores[1])

    assert alice_info.startswith("alice's cat\n") and "Seed: 11," in alice_info
    assert bob_info.startswith("bob's dog\n") and "Seed: 22," in bob_info
    [alice_image], [bob_image] = alice.gallery_images(), bob.gallery_images()
    assert alice_image.info["parameters"] == alice_info and bob_image.info["parameters"] == bob_info
    assert not np.array_equal(pixels(alice_image), pixels(bob_image))


def test_a_broken_model_gives_a_readable_error_and_the_next_job_works(open_page):
    studio = open_page()
    quick_settings(studio)
    studio.fill("txt2img_prompt", "after the error")
    studio.choose("checkpoint", "broken.safetensors")
    studio.click("txt2img_generate")
    toast = studio.page.locator(".toast-body").first
    expect(toast).to_contain_text("broken.safetensors", timeout=60_000)
    expect(toast).to_contain_text(re.compile("corrupt|not a model", re.I))

    studio.choose("checkpoint", "tiny-sd1.safetensors")
    assert studio.generate().startswith("after the error\n")

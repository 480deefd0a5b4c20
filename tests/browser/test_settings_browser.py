"""The Settings tab and the values each browser remembers, across page reloads and server restarts."""

from __future__ import annotations

import json

from playwright.sync_api import expect

from tests.app_server import running_app


def test_settings_and_remembered_values_survive_a_restart(open_url, browser_models, tmp_path):
    work = tmp_path / "app"
    work.mkdir()
    (work / "config.json").write_text(json.dumps({"cache_dir": str(work / "cache"), "outputs_dir": str(work / "out")}))
    elsewhere = work / "elsewhere"

    with running_app(browser_models, work, outputs_flag=False) as app:
        mine = open_url(app.url)
        mine.page.get_by_role("tab", name="Settings").click()
        mine.set_slider("settings_default_steps", 33)
        mine.page.locator("#settings_preview_method").get_by_label("Full VAE").check()
        mine.fill("settings_outputs_dir", str(elsewhere))
        mine.click("settings_apply")
        expect(mine.page.locator("#settings_status")).to_contain_text("Output folder: takes effect after a restart")
        saved = json.loads(app.config.read_text())
        assert saved["default_steps"] == 33 and saved["preview_method"] == "Full VAE"
        assert saved["outputs_dir"] == str(elsewhere)

        mine.page.get_by_role("tab", name="txt2img").click()
        mine.set_slider("txt2img_steps", 5)
        mine.set_slider("txt2img_width", 64)
        mine.set_slider("txt2img_height", 64)
        mine.generate()
        [image] = mine.gallery_images()
        # What the server serves is fixed at its start, so a new output folder waits for a restart.
        assert len(list((work / "out").rglob("*.png"))) == 1 and "Steps: 5," in image.info["parameters"]
        assert not elsewhere.exists()

    # The same port: a browser keeps localStorage per origin.
    with running_app(browser_models, work, outputs_flag=False, port=app.port) as app:
        mine.reload()  # the same browser, after the restart: its own values
        assert mine.slider("txt2img_steps") == 5 and mine.slider("txt2img_width") == 64
        theirs = open_url(app.url)  # another browser: the saved defaults
        assert theirs.slider("txt2img_steps") == 33 and theirs.slider("txt2img_width") == 512
        theirs.page.get_by_role("tab", name="Settings").click()
        expect(theirs.page.locator("#settings_preview_method").get_by_label("Full VAE")).to_be_checked()
        expect(theirs.page.locator("#settings_outputs_dir textarea, #settings_outputs_dir input")).to_have_value(
            str(elsewhere)
        )
        mine.page.get_by_role("tab", name="txt2img").click()
        mine.generate()
        [image] = mine.gallery_images()  # saved in, and served from, the new folder
        assert len(list(elsewhere.rglob("*.png"))) == 1 and "Steps: 5," in image.info["parameters"]


def test_tab_values_are_remembered_per_browser(open_page):
    mine = open_page()
    mine.fill("txt2img_prompt", "remember me")
    mine.choose("txt2img_sampler", "Euler a")
    mine.set_slider("txt2img_steps", 9)
    mine.set_slider("txt2img_cfg_scale", 3.5)
    storage = mine.local_storage()
    mine.set_slider("txt2img_width", 320)
    mine.wait_until_remembered(storage)
    mine.reload()
    assert mine.text("txt2img_prompt") == "remember me"
    assert mine.chosen("txt2img_sampler") == "Euler a"
    assert (mine.slider("txt2img_steps"), mine.slider("txt2img_cfg_scale"), mine.slider("txt2img_width")) == (
        9,
        3.5,
        320,
    )

    theirs = open_page()
    assert theirs.text("txt2img_prompt") == "" and theirs.chosen("txt2img_sampler") == "DPM++ 2M"
    assert theirs.slider("txt2img_steps") == 20

    mine.page.get_by_role("tab", name="Settings").click()
    mine.click("settings_forget")
    mine.wait_until_loaded()
    assert mine.slider("txt2img_steps") == 20 and mine.text("txt2img_prompt") == ""


def test_bad_settings_are_refused_with_a_message(open_page, app):
    studio = open_page()
    before = app.config.read_text() if app.config.exists() else None
    studio.page.get_by_role("tab", name="Settings").click()
    studio.fill("settings_outputs_dir", "")
    studio.click("settings_apply")
    expect(studio.page.locator(".toast-body").first).to_contain_text("output folder must not be empty")
    assert (app.config.read_text() if app.config.exists() else None) == before

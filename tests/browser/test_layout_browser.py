"""The page on a laptop screen (1366×768) in light and dark mode: no horizontal scrolling, dark follows the browser.
Screenshots are kept in test-artifacts/browser/ for a person to look at."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

TABS = ("txt2img", "img2img", "Inpaint", "ControlNet", "Settings")


def luminance(css_color: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css_color)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_laptop_layout_without_horizontal_scrolling(open_page, artifacts, scheme):
    studio = open_page(color_scheme=scheme)
    page = studio.page
    studio.set_slider("txt2img_steps", 4)
    studio.set_slider("txt2img_width", 128)
    studio.set_slider("txt2img_height", 128)
    studio.fill("txt2img_prompt", "a screenshot")
    studio.generate()
    for tab in TABS:
        page.get_by_role("tab", name=tab, exact=True).click()
        page.screenshot(path=str(artifacts / f"{scheme}-{tab}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{tab} scrolls sideways by {overflow} px at 1366x768"
    assert studio.console_errors() == []


def test_dark_mode_follows_the_browser(open_page):
    dark, light = open_page(color_scheme="dark"), open_page(color_scheme="light")
    expect(dark.page.locator("body")).to_have_class(re.compile(r"\bdark\b"))
    expect(light.page.locator("body")).not_to_have_class(re.compile(r"\bdark\b"))
    for studio, is_dark in ((dark, True), (light, False)):
        background = studio.page.evaluate("getComputedStyle(document.body).backgroundColor")
        label = studio.page.evaluate(
            "getComputedStyle(document.querySelector('#txt2img_prompt [data-testid=block-info]')).color"
        )
        assert (luminance(background) < 60) == is_dark, background
        assert (luminance(label) > 150) == is_dark, label  # text stays readable on the background

"""styles.csv: A1111's columns and merging rules, saving, the infotext's record of applied styles and paste."""

from __future__ import annotations

import csv
import os

import pytest

from core.errors import UserError
from core.infotext import parse_infotext
from core.styles import Style, StyleLibrary, merge_prompt, pasted_fields, split_style_names, unmerge_prompt
from tests.conftest import make_engine, tiny_request


def write_styles(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "prompt", "negative_prompt"])
        writer.writerows(rows)


@pytest.fixture
def library(tmp_path) -> StyleLibrary:
    path = tmp_path / "styles.csv"
    write_styles(
        path,
        [
            ["cinematic", "cinematic still of {prompt}, film grain", "cartoon"],
            ["sharp", "sharp focus, 8k", ""],
            ["", "a row without a name is ignored", ""],
        ],
    )
    return StyleLibrary(path)


def test_merge_follows_a1111():
    assert merge_prompt("cinematic still of {prompt}, grain", "a cat") == "cinematic still of a cat, grain"
    assert merge_prompt("sharp focus", "a cat ") == "a cat, sharp focus"
    assert merge_prompt("sharp focus", "") == "sharp focus"
    assert merge_prompt("", "a cat") == "a cat"


def test_unmerge_undoes_merge_and_refuses_other_text():
    for style in ("cinematic still of {prompt}, grain", "sharp focus"):
        assert unmerge_prompt(style, merge_prompt(style, "a cat")) == "a cat"
    assert unmerge_prompt("sharp focus", "a cat, blurry") is None
    assert unmerge_prompt("still of {prompt}, grain", "a cat") is None


def test_library_reads_names_and_applies_in_order(library):
    assert library.names() == ["cinematic", "sharp"]
    prompt, negative = library.apply("a cat", "blurry", ["cinematic", "sharp"])
    assert prompt == "cinematic still of a cat, film grain, sharp focus, 8k"
    assert negative == "blurry, cartoon"
    prompt, _ = library.apply("a cat", "", ["sharp", "cinematic"])
    assert prompt == "cinematic still of a cat, sharp focus, 8k, film grain"


def test_unknown_style_is_a_clear_error(library):
    with pytest.raises(UserError, match="No style named 'gone'"):
        library.apply("a cat", "", ["gone"])


def test_extract_takes_applied_styles_back_out(library):
    styled = library.apply("a cat", "blurry", ["cinematic", "sharp"])
    assert library.extract(*styled, ["cinematic", "sharp"]) == ("a cat", "blurry", ["cinematic", "sharp"])
    # A style whose text was edited away is left in the prompt and not reported.
    assert library.extract("a cat, 8k", "", ["sharp"]) == ("a cat, 8k", "", [])


def test_save_writes_a1111_columns_and_replaces_by_name(library):
    library.save(Style("mine", "oil painting of {prompt}", "photo"))
    library.save(Style("sharp", "very sharp", ""))
    with open(library.path, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["name", "prompt", "negative_prompt"]
    assert {row["name"]: row["prompt"] for row in rows} == {
        "cinematic": "cinematic still of {prompt}, film grain",
        "sharp": "very sharp",
        "mine": "oil painting of {prompt}",
    }
    assert StyleLibrary(library.path).apply("a cat", "", ["mine"]) == ("oil painting of a cat", "photo")


def test_save_refuses_empty_name_or_empty_prompts(library):
    with pytest.raises(UserError, match="name"):
        library.save(Style(" ", "x", ""))
    with pytest.raises(UserError, match="nothing to save"):
        library.save(Style("empty", " ", ""))


def test_file_edited_by_hand_is_read_again(library):
    assert "new" not in library.names()
    write_styles(library.path, [["new", "{prompt} at night", ""]])
    os.utime(library.path, ns=(1, 10**18))  # a different mtime even on coarse file systems
    assert library.names() == ["new"]


def test_missing_file_means_no_styles(tmp_path):
    assert StyleLibrary(tmp_path / "none.csv").names() == []


def test_style_names_with_commas_split_by_known_names():
    known = ["a, b", "c"]
    assert split_style_names("a, b, c", known) == ["a, b", "c"]
    assert split_style_names("c, unknown", known) == ["c", "unknown"]


def test_engine_applies_styles_and_infotext_names_them(library, models_dir, tmp_path):
    engine = make_engine(models_dir, tmp_path / "out", tmp_path / "cache")
    engine.styles = library
    request = tiny_request(prompt="a cat", negative_prompt="blurry", styles=("cinematic",), seed=5)
    styled = engine.generate(request).images[0]
    prompt, negative, params = parse_infotext(styled.infotext)
    assert (prompt, negative) == ("cinematic still of a cat, film grain", "blurry, cartoon")
    assert params["Styles"] == "cinematic"
    # The same prompts typed out give the same pixels: the style is nothing but text.
    typed = engine.generate(tiny_request(prompt=prompt, negative_prompt=negative, seed=5)).images[0]
    assert typed.image.tobytes() == styled.image.tobytes()
    # Paste: the prompts as typed and the style chosen again.
    pasted = pasted_fields(styled.infotext, library)
    assert (pasted["prompt"], pasted["negative_prompt"], pasted["styles"]) == ("a cat", "blurry", ["cinematic"])


def test_request_takes_styles_from_api_lists_and_text():
    from core.request import GenerationRequest

    assert GenerationRequest.from_dict({"styles": ["a", "b"]}).styles == ("a", "b")
    assert GenerationRequest.from_dict({"styles": "a"}).styles == ("a",)

"""Infotext is written and read exactly as A1111 writes and reads it."""

from __future__ import annotations

import pytest

from core.infotext import (
    build_infotext,
    generation_params,
    parse_infotext,
    quote,
    render_infotext,
    request_fields,
    unquote,
)
from core.request import GenerationRequest

TYPICAL = GenerationRequest(
    prompt="a cat, best quality",
    negative_prompt="blurry",
    sampler_name="Euler a",
    scheduler="Automatic",
    steps=20,
    cfg_scale=7.0,
    width=512,
    height=512,
    seed=1234,
)
PARAMS = "Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1234, Size: 512x512"


def build(request: GenerationRequest = TYPICAL, **kwargs) -> str:
    kwargs = {"seed": 1234, "model_name": "name", "model_hash": "0123456789", **kwargs}
    return build_infotext(request, **kwargs)


def test_typical_request_renders_like_a1111():
    assert build() == (
        "a cat, best quality\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, Schedule type: Automatic, "
        "CFG scale: 7, Seed: 1234, Size: 512x512, Model hash: 0123456789, Model: name"
    )


def test_no_negative_prompt_means_no_negative_line():
    text = build(TYPICAL.with_changes(negative_prompt=""))
    assert text == f"a cat, best quality\n{PARAMS}, Model hash: 0123456789, Model: name"


def test_empty_prompts_leave_only_the_parameters():
    text = build(TYPICAL.with_changes(prompt="", negative_prompt=""))
    assert text == f"{PARAMS}, Model hash: 0123456789, Model: name"


def test_model_name_with_a_comma_is_json_quoted():
    assert build(model_name="my model, v2").endswith('Model: "my model, v2"')


def test_missing_hash_is_left_out():
    assert build(model_hash=None).endswith("Size: 512x512, Model: name")


def test_vae_fields_follow_the_model_fields():
    text = build(vae_name="vae-ft-mse.safetensors", vae_hash="735e4c3a44")
    assert text.endswith("Model: name, VAE hash: 735e4c3a44, VAE: vae-ft-mse.safetensors")


def test_clip_skip_appears_after_the_model_fields_only_when_above_one():
    assert build(TYPICAL.with_changes(clip_skip=2)).endswith("Model hash: 0123456789, Model: name, Clip skip: 2")
    assert "Clip skip" not in build(TYPICAL.with_changes(clip_skip=1))


def test_fractional_cfg_scale_stays_fractional():
    assert "CFG scale: 7.5, " in build(TYPICAL.with_changes(cfg_scale=7.5))
    assert "CFG scale: 7, " in build(TYPICAL.with_changes(cfg_scale=7.0))


def test_schedule_type_names_the_samplers_default_as_a1111_does():
    assert "Sampler: DPM++ 2M, Schedule type: Karras, " in build(TYPICAL.with_changes(sampler_name="DPM++ 2M"))
    assert "Schedule type: Uniform, " in build(TYPICAL.with_changes(sampler_name="Euler", scheduler="Uniform"))


def test_extra_fields_go_last_in_order_and_fixed_ones_keep_their_place():
    params = generation_params(
        TYPICAL.with_changes(clip_skip=2),
        seed=5,
        model_name="name",
        model_hash=None,
        extra={"Lora hashes": "a: 1, b: 2", "Denoising strength": 0.75, "Hires upscale": 2.0},
    )
    assert list(params) == [
        "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model",
        "Denoising strength", "Clip skip", "Lora hashes", "Hires upscale",
    ]  # fmt: skip
    text = render_infotext("p", "", params)
    assert text.endswith('Denoising strength: 0.75, Clip skip: 2, Lora hashes: "a: 1, b: 2", Hires upscale: 2')


def test_denoising_strength_is_written_for_img2img_requests_only():
    from PIL import Image

    img2img = TYPICAL.with_changes(init_image=Image.new("RGB", (8, 8)), denoising_strength=0.5)
    assert build(img2img).endswith("Model: name, Denoising strength: 0.5")
    assert "Denoising strength" not in build(TYPICAL.with_changes(denoising_strength=0.5))


@pytest.mark.parametrize(
    "value, expected",
    [
        ("plain text", "plain text"),
        ("a, b", '"a, b"'),
        ("key: value", '"key: value"'),
        ("two\nlines", '"two\\nlines"'),
        ('say "hi", ok', '"say \\"hi\\", ok"'),
        ("café, naïve", '"café, naïve"'),  # ensure_ascii=False, as A1111
        (7.0, "7"),
        (7.5, "7.5"),
        (20, "20"),
        (True, "True"),
    ],
)
def test_quote_follows_a1111(value, expected):
    assert quote(value) == expected


def test_unquote_leaves_non_json_alone():
    assert unquote('"a, b"') == "a, b"
    assert unquote('"broken') == '"broken'
    assert unquote('"not \\x json"') == '"not \\x json"'
    assert unquote("") == ""


def test_render_writes_a_bare_key_when_value_equals_key():
    assert render_infotext("p", "", {"Steps": 1, "Sampler": "Euler", "Tiling": "Tiling", "X": None}) == (
        "p\nSteps: 1, Sampler: Euler, Tiling"
    )


def test_parse_a1111_text():
    text = (
        "girl with an artist's beret, determined, blue eyes\n"
        "Negative prompt: ugly, fat, (((deformed)))\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b"
    )
    prompt, negative, params = parse_infotext(text)
    assert prompt == "girl with an artist's beret, determined, blue eyes"
    assert negative == "ugly, fat, (((deformed)))"
    assert params == {
        "Steps": "20",
        "Sampler": "Euler a",
        "CFG scale": "7",
        "Seed": "965400086",
        "Size": "512x512",
        "Model hash": "45dee52b",
    }


def test_round_trip_with_quoted_values_and_multiline_prompts():
    prompt = "a cat, best quality\n(masterpiece:1.2), sitting on a mat"
    negative = "blurry, lowres\nbad hands"
    params = {
        "Steps": 30,
        "Sampler": "DPM++ 2M",
        "Schedule type": "Karras",
        "CFG scale": 7.5,
        "Seed": 4294967295,
        "Size": "512x768",
        "Model": 'my model, "v2": final',
        "Lora hashes": "detail: 0123abcd, style: 4567ef01",
        "Note": "two\nlines",
        "Clip skip": 2,
    }
    text = render_infotext(prompt, negative, params)
    assert 'Model: "my model, \\"v2\\": final"' in text and 'Note: "two\\nlines"' in text
    expected = {k: str(v) for k, v in params.items()}
    assert parse_infotext(text) == (prompt, negative, expected)


def test_round_trip_without_negative_prompt_and_with_empty_prompt():
    params = {"Steps": 20, "Sampler": "Euler", "CFG scale": 7.0}
    expected = {"Steps": "20", "Sampler": "Euler", "CFG scale": "7"}
    assert parse_infotext(render_infotext("a\nb", "", params)) == ("a\nb", "", expected)
    assert parse_infotext(render_infotext("", "neg", params))[:2] == ("", "neg")


def test_last_line_with_fewer_than_three_params_belongs_to_the_prompt():
    assert parse_infotext("a photo\nstyle: oil, mood: calm") == ("a photo\nstyle: oil, mood: calm", "", {})


def test_request_fields_round_trip_through_an_infotext():
    request = TYPICAL.with_changes(clip_skip=2, cfg_scale=6.5, width=640, height=384)
    fields = request_fields(build(request))
    assert GenerationRequest.from_dict(fields) == request.with_changes(checkpoint="")


def test_request_fields_read_pre_1_9_sampler_names_and_defaults():
    fields = request_fields("cat\nSteps: 25, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1, Size: 512x768")
    assert fields["sampler_name"] == "DPM++ 2M" and fields["scheduler"] == "Karras"
    assert fields["clip_skip"] == 1 and (fields["width"], fields["height"]) == (512, 768)
    request = GenerationRequest.from_dict(fields)
    assert (request.steps, request.cfg_scale, request.seed) == (25, 7.0, 1)

"""ControlNet: loading original-layout files, units in requests, the engine's ControlNet pipelines, infotext."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from core.controlnet import unit_image
from core.detect import detect_controlnet
from core.devices import choose_policy
from core.errors import UserError
from core.families import SD1, SDXL
from core.image_inputs import prepare_image
from core.infotext import parse_infotext, request_fields
from core.loader import load_controlnet
from core.outputs import read_infotext
from core.registry import HashCache, ModelRegistry
from core.request import MAX_CONTROLNET_UNITS, ControlNetUnit, GenerationRequest
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_models import tiny_components, tiny_controlnet, write_controlnet
from tests.test_img2img import picture, pixels
from training.ldm_export import controlnet_to_ldm

CPU = choose_policy("cpu", "fp32")


def edges(width: int = 64, height: int = 64) -> Image.Image:
    """A control picture with strong edges: a white square and a disc on black."""
    y, x = np.mgrid[0:height, 0:width]
    shape = ((x > width // 4) & (x < width // 2) & (y > height // 4)) | ((x - 44) ** 2 + (y - 40) ** 2 < 90)
    return Image.fromarray(np.where(shape, 255, 0).astype(np.uint8)).convert("RGB")


def unit(**changes) -> ControlNetUnit:
    values = dict(image=edges(), module="canny", model="tiny-sd1-canny", processor_res=64)
    return ControlNetUnit(**{**values, **changes})


def generate(engine, **changes) -> np.ndarray:
    return pixels(engine.generate(tiny_request(**changes)).images[0].image)


@pytest.fixture(scope="module")
def plain(engine) -> np.ndarray:
    return generate(engine)


# --- files ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family, fmt", [("SD1", "safetensors"), ("SD1", "pth"), ("SDXL", "safetensors")])
def test_single_file_loads_with_exactly_the_original_weights(tmp_path, family, fmt):
    path = write_controlnet(tmp_path / f"cn.{fmt}", family, fmt=fmt)
    unet_config = dict(tiny_components(family)["unet"].config)
    loaded = load_controlnet(path, CPU, unet_config).state_dict()
    original = tiny_controlnet(family).state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def test_family_and_dimensions_come_from_the_tensors():
    for family, expected in (("SD1", SD1), ("SDXL", SDXL)):
        original = tiny_controlnet(family).config
        ldm = controlnet_to_ldm(tiny_controlnet(family))
        spec = detect_controlnet({k: tuple(v.shape) for k, v in ldm.items()})
        assert spec.family is expected and spec.layout == "ldm" and spec.prefix == "control_model."
        for key in ("block_out_channels", "down_block_types", "cross_attention_dim", "conditioning_channels"):
            assert list(np.atleast_1d(spec.config[key])) == list(np.atleast_1d(original[key])), key
        assert spec.config["conditioning_embedding_out_channels"] == [16, 32, 96, 256]


def test_bare_keys_diffusers_layout_files_and_folders_load_too(tmp_path):
    ldm = controlnet_to_ldm(tiny_controlnet("SD1"))
    save_file({k.removeprefix("control_model."): v for k, v in ldm.items()}, str(tmp_path / "bare.safetensors"))
    diffusers_layout = {k: v.contiguous() for k, v in tiny_controlnet("SDXL").state_dict().items()}
    save_file(diffusers_layout, str(tmp_path / "xl.safetensors"))
    tiny_controlnet("SD1").save_pretrained(str(tmp_path / "folder"))  # a diffusers folder: config.json + weights
    for name, family in (("bare.safetensors", "SD1"), ("xl.safetensors", "SDXL"), ("folder", "SD1")):
        unet_config = dict(tiny_components(family)["unet"].config)
        loaded = load_controlnet(tmp_path / name, CPU, unet_config).state_dict()
        original = tiny_controlnet(family).state_dict()
        assert all(torch.equal(loaded[k], original[k]) for k in original), name


def test_registry_lists_controlnet_files_and_folders(tmp_path):
    tiny_controlnet("SD1").save_pretrained(str(tmp_path / "ControlNet" / "cn-diffusers"))
    write_controlnet(tmp_path / "ControlNet" / "sub" / "a.safetensors", "SD1")
    registry = ModelRegistry(tmp_path, HashCache(tmp_path / "cache.json"))
    assert [e.name for e in registry.list("controlnet")] == ["cn-diffusers", "sub/a.safetensors"]
    assert registry.find("controlnet", "a").path.name == "a.safetensors"


def test_a_file_that_is_not_a_controlnet_is_named():
    with pytest.raises(UserError, match="x.safetensors is not a ControlNet of a supported kind"):
        detect_controlnet({"model.diffusion_model.input_blocks.0.0.weight": (32, 4, 3, 3)}, "x.safetensors")


def test_registry_lists_controlnets_with_their_family(engine):
    registry = engine.models.registry
    labels = {e.name: registry.family_label(e) for e in registry.list("controlnet")}
    assert labels["tiny-sd1-canny.safetensors"] == "SD1.x" and labels["tiny-sdxl-canny.safetensors"] == "SDXL"
    assert labels["tiny-sd1-depth.pth"] == "?"  # a pickle is only read when loaded, as checkpoints


# --- requests -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(image=None), "ControlNet Unit 1 is enabled but has no control image"),
        (dict(module="cany"), "ControlNet Unit 1: unknown preprocessor 'cany'"),
        (dict(weight=2.5), "ControlNet Unit 1: Control Weight must be 0–2"),
        (dict(guidance_start=0.6, guidance_end=0.4), "Starting and Ending Control Step"),
        (dict(model="None"), "ControlNet Unit 1: choose a ControlNet model"),
        (dict(control_mode=3), "Control Mode must be one of: Balanced"),
    ],
)
def test_bad_units_are_refused_naming_the_unit(changes, message):
    units = (ControlNetUnit(enabled=False), unit(**changes))
    with pytest.raises(UserError, match=message):
        tiny_request(controlnet_units=units).validated()


def test_unit_limits_and_the_input_image():
    with pytest.raises(UserError, match=f"At most {MAX_CONTROLNET_UNITS} ControlNet units"):
        tiny_request(controlnet_units=(unit(),) * (MAX_CONTROLNET_UNITS + 1)).validated()
    with pytest.raises(UserError, match="uses the input image, but there is none"):
        tiny_request(controlnet_units=(unit(use_input_image=True),)).validated()
    tiny_request(init_image=picture(), controlnet_units=(unit(image=None),)).validated()  # img2img: its image
    tiny_request(controlnet_units=(unit(image=None, enabled=False),)).validated()  # disabled units are not checked


def test_from_dict_takes_sd_webui_controlnet_api_units():
    payload = {
        "alwayson_scripts": {
            "controlnet": {
                "args": [
                    {"input_image": np.zeros((8, 8, 3), np.uint8), "module": "canny", "model": "tiny-sd1-canny",
                     "resize_mode": "Resize and Fill", "control_mode": "ControlNet is more important",
                     "weight": "0.5", "pixel_perfect": "true", "lowvram": False},
                    {"enabled": False},
                ]
            }
        }
    }  # fmt: skip
    first, second = GenerationRequest.from_dict(payload).controlnet_units
    assert first.image.size == (8, 8) and first.resize_mode == 2 and first.control_mode == 2
    assert first.weight == 0.5 and first.pixel_perfect is True and second.enabled is False
    same = GenerationRequest.from_dict({"controlnet_units": [first, {"enabled": False}]}).controlnet_units
    assert same[0] is first


# --- engine ---------------------------------------------------------------------------------------------------


def test_weight_changes_the_image(engine, plain):
    stronger = generate(engine, controlnet_units=(unit(weight=2.0),))
    controlled = generate(engine, controlnet_units=(unit(),))
    assert np.abs(controlled - plain).mean() > 2
    assert np.abs(stronger - plain).mean() > np.abs(controlled - plain).mean()


@pytest.mark.parametrize(
    "changes",
    [dict(weight=0.0), dict(guidance_start=1.0), dict(guidance_start=0.9), dict(guidance_start=0.5, guidance_end=0.5)],
)
def test_a_unit_that_acts_on_no_step_gives_exactly_the_plain_pixels(engine, plain, changes):
    # 4 steps: a window from 0.9 holds no step; diffusers then runs the ControlNet at scale 0.
    assert np.array_equal(generate(engine, controlnet_units=(unit(**changes),)), plain)


def test_guidance_window_is_honoured(engine, plain):
    full = generate(engine, controlnet_units=(unit(),))
    late = generate(engine, controlnet_units=(unit(guidance_start=0.5),))
    assert not np.array_equal(late, plain) and not np.array_equal(late, full)


def test_two_units_at_once(engine):
    first = generate(engine, controlnet_units=(unit(),))
    second = generate(engine, controlnet_units=(unit(module="invert", model="tiny-sd1-depth"),))
    both = generate(engine, controlnet_units=(unit(), unit(module="invert", model="tiny-sd1-depth")))
    assert not np.array_equal(both, first) and not np.array_equal(both, second)
    disabled = (unit(), unit(enabled=False, image=None))
    assert np.array_equal(generate(engine, controlnet_units=disabled), first)


def test_control_modes_change_the_result(engine):
    results = [generate(engine, controlnet_units=(unit(control_mode=mode),)) for mode in range(3)]
    assert not np.array_equal(results[0], results[1]) and not np.array_equal(results[1], results[2])
    # Without classifier-free guidance there is no unconditional half: "ControlNet is more important" is soft only.
    soft = generate(engine, cfg_scale=1.0, controlnet_units=(unit(control_mode=1),))
    assert np.array_equal(soft, generate(engine, cfg_scale=1.0, controlnet_units=(unit(control_mode=2),)))


def test_a_controlnet_of_another_family_is_refused(engine):
    message = (
        "ControlNet 'tiny-sdxl-canny.safetensors' is for SDXL but the checkpoint 'sd15/tiny-sd1.safetensors' is SD1.x"
    )
    with pytest.raises(UserError, match=message):
        engine.generate(tiny_request(controlnet_units=(unit(model="tiny-sdxl-canny"),)))


def test_sdxl_controlnet(engine):
    request = tiny_request(checkpoint="tiny-sdxl.safetensors", controlnet_units=(unit(model="tiny-sdxl-canny"),))
    plain = generate(engine, checkpoint="tiny-sdxl.safetensors")
    assert np.abs(pixels(engine.generate(request).images[0].image) - plain).mean() > 1


def test_img2img_with_the_input_image(engine):
    request = tiny_request(init_image=picture(), controlnet_units=(unit(image=None),))
    result = engine.generate(request).images[0]
    assert result.image.size == (64, 64) and result.path.parent.parent.name == "img2img-images"
    assert not np.array_equal(pixels(result.image), generate(engine, init_image=picture()))


@pytest.mark.parametrize("checkpoint", ["sd15/tiny-sd1.safetensors", "tiny-sd1-inpainting.safetensors"])
@pytest.mark.parametrize("fill", [1, 2])  # original; latent noise (run as fill, with a notice)
def test_inpainting_with_controlnet_keeps_the_unmasked_pixels(engine, checkpoint, fill):
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (30, 20, 70, 60))
    request = tiny_request(
        checkpoint=checkpoint, init_image=picture(), mask=mask, mask_blur=0, inpainting_fill=fill, width=96, height=80,
        controlnet_units=(unit(image=edges(96, 80)),),
    )  # fmt: skip
    events = list(engine.run(request))
    image = pixels(events[-1].images[0].image)
    assert np.array_equal(image[:, :20], pixels(picture())[:, :20])
    assert np.abs(image[25:55, 35:65] - pixels(picture())[25:55, 35:65]).mean() > 5
    notices = [e.message for e in events if hasattr(e, "message")]
    assert any("run as “fill”" in n for n in notices) == (fill == 2)


def test_infotext_line_parses_back(engine):
    units = (unit(weight=0.8, guidance_end=0.9, control_mode=1), unit(enabled=False), unit(module="invert"))
    result = engine.generate(tiny_request(controlnet_units=units)).images[0]
    cn_hash = engine.models.registry.short_hash(engine.models.registry.find("controlnet", "tiny-sd1-canny"))
    _, _, params = parse_infotext(read_infotext(result.path))
    assert params["ControlNet 0"] == (
        f"Module: canny, Model: tiny-sd1-canny [{cn_hash}], Weight: 0.8, Resize Mode: Crop and Resize, "
        "Processor Res: 64, Threshold A: 100, Threshold B: 200, Guidance Start: 0.0, Guidance End: 0.9, "
        "Pixel Perfect: False, Control Mode: My prompt is more important"
    )
    assert "ControlNet 1" not in params and params["ControlNet 2"].startswith("Module: invert, Model: tiny-sd1-canny")
    assert "Processor Res" not in params["ControlNet 2"] and "Threshold" not in params["ControlNet 2"]
    parsed = GenerationRequest.from_dict(request_fields(result.infotext)).controlnet_units
    assert [u.enabled for u in parsed] == [True, False, True]
    expected = units[0].__class__(**{**units[0].__dict__, "image": None, "threshold_a": 100, "threshold_b": 200})
    assert parsed[0] == expected and parsed[2].module == "invert"


def test_models_are_cached_and_released_from_the_pipeline(engine):
    engine.generate(tiny_request(steps=1, controlnet_units=(unit(),)))
    active = engine.models.activate("sd15/tiny-sd1.safetensors")
    model = engine.models.controlnet("tiny-sd1-canny", active)
    engine.generate(tiny_request(steps=1, controlnet_units=(unit(),)))
    assert engine.models.controlnet("tiny-sd1-canny", active) is model
    pipe = active.loaded.derived["controlnet:StableDiffusionControlNetPipeline"]
    assert pipe.unet is active.loaded.pipeline.unet and pipe.controlnet is None


def test_detected_maps_are_saved_beside_the_image_when_asked(models_dir, tmp_path):
    engine = make_engine(models_dir, tmp_path / "out", tmp_path / "cache")
    request = tiny_request(steps=1, controlnet_units=(ControlNetUnit(enabled=False), unit()))
    assert not list(engine.generate(request).images[0].path.parent.glob("*controlnet*"))
    engine.outputs.save_control_maps = lambda: True
    path = engine.generate(request).images[0].path
    saved = path.with_name(f"{path.stem}-controlnet-1.png")
    assert saved.is_file() and Image.open(saved).size == (64, 64)


def test_the_input_image_follows_only_masked_crops_and_outpainting(engine):
    mask = Image.new("L", (96, 80), 0)
    mask.paste(255, (40, 30, 50, 40))
    request = tiny_request(init_image=picture(), mask=mask, inpaint_full_res=True, controlnet_units=(unit(image=None),))
    prepared = prepare_image(request)
    cropped = unit_image(request, request.controlnet_units[0], prepared)
    assert np.array_equal(pixels(cropped), pixels(picture().crop(prepared.crop)))
    outpaint = tiny_request(init_image=picture(64, 64), outpaint_left=16, controlnet_units=(unit(image=None),))
    assert unit_image(outpaint, outpaint.controlnet_units[0], prepare_image(outpaint)).size == (80, 64)
    assert engine.generate(outpaint.with_changes(steps=1)).images[0].image.size == (80, 64)

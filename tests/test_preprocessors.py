"""ControlNet preprocessors: sd-webui-controlnet's names and defaults, maps as OpenCV makes them, local weights only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from core.controlnet import run_preprocessor
from core.errors import UserError
from core.preprocessors import PREPROCESSORS, Annotators, pixel_perfect_resolution
from core.request import ControlNetUnit
from tests.conftest import tiny_request
from tests.test_img2img import picture, pixels


def canny_unit(**changes) -> ControlNetUnit:
    return ControlNetUnit(**{"module": "canny", "model": "x", "processor_res": 64, "resize_mode": 0, **changes})


@pytest.fixture
def annotators(tmp_path) -> Annotators:
    return Annotators(tmp_path / "annotators")


@pytest.fixture
def pidinet_annotators(tmp_path) -> Annotators:
    """models/annotators holding table5_pidinet.pth as lllyasviel/Annotators has it (random weights)."""
    from controlnet_aux.pidi.model import pidinet

    folder = tmp_path / "annotators"
    folder.mkdir()
    torch.manual_seed(0)
    state = {"module." + k: v for k, v in pidinet().state_dict().items()}
    torch.save({"state_dict": state}, folder / "table5_pidinet.pth")
    return Annotators(folder)


def test_sd_webui_controlnet_names_are_offered():
    names = "none canny depth_midas openpose lineart_realistic lineart_anime softedge_hed softedge_pidinet mlsd"
    for name in (*names.split(), "normal_bae", "scribble_hed", "shuffle", "tile_resample", "invert"):
        assert name in PREPROCESSORS
    assert PREPROCESSORS["canny"].thresholds(-1, -1) == (100, 200)
    assert PREPROCESSORS["canny"].thresholds(50, 150) == (50, 150)
    assert PREPROCESSORS["depth_midas"].thresholds(-1, -1) == (None, None)
    assert PREPROCESSORS["mlsd"].threshold_b.label == "MLSD Distance Threshold"


@pytest.mark.parametrize("low, high", [(100, 200), (30, 90)])
def test_canny_map_is_opencvs_canny(annotators, low, high):
    image = picture(64, 64)
    result = run_preprocessor(canny_unit(threshold_a=low, threshold_b=high), image, 64, 64, annotators)
    expected = cv2.Canny(np.asarray(image), low, high)
    assert np.array_equal(pixels(result), np.stack([expected] * 3, axis=-1))


def test_pixel_perfect_resolution_follows_the_output_size(annotators):
    assert pixel_perfect_resolution(Image.new("RGB", (128, 96)), 64, 64, resize_mode=1) == 64  # cover: 96 x 2/3
    assert pixel_perfect_resolution(Image.new("RGB", (128, 96)), 64, 64, resize_mode=2) == 48  # fit: 96 x 1/2
    assert pixel_perfect_resolution(Image.new("RGB", (100, 100)), 768, 512, resize_mode=0) == 768
    image = picture(128, 128)
    result = run_preprocessor(canny_unit(pixel_perfect=True, processor_res=512), image, 64, 64, annotators)
    small = cv2.resize(np.asarray(image), (64, 64), interpolation=cv2.INTER_AREA)  # controlnet-aux's downscale
    assert np.array_equal(pixels(result)[..., 0], cv2.Canny(small, 100, 200))


def test_maps_are_resized_to_the_output_by_the_resize_mode(annotators):
    image = picture(96, 32)
    for mode in range(3):
        result = run_preprocessor(ControlNetUnit(module="none", resize_mode=mode), image, 64, 64, annotators)
        assert result.size == (64, 64)
    cropped = run_preprocessor(ControlNetUnit(module="none", resize_mode=1), image, 64, 64, annotators)
    assert np.array_equal(pixels(cropped), pixels(image.resize((192, 64), Image.LANCZOS).crop((64, 0, 128, 64))))


def test_weightless_preprocessors(annotators):
    image = picture(64, 64)
    inverted = run_preprocessor(ControlNetUnit(module="invert"), image, 64, 64, annotators)
    assert np.array_equal(pixels(inverted), 255 - pixels(image))
    shuffled = [run_preprocessor(ControlNetUnit(module="shuffle", processor_res=64), image, 64, 64, annotators)]
    shuffled.append(run_preprocessor(ControlNetUnit(module="shuffle", processor_res=64), image, 64, 64, annotators))
    assert np.array_equal(pixels(shuffled[0]), pixels(shuffled[1])) and not np.array_equal(
        pixels(shuffled[0]), pixels(image)
    )
    tile = run_preprocessor(ControlNetUnit(module="tile_resample", threshold_a=4), image, 64, 64, annotators)
    assert tile.size == (64, 64) and np.abs(pixels(tile) - pixels(image)).mean() > 1  # blurred by 4x down, up


def test_missing_annotator_names_the_file_and_where_to_get_it(annotators):
    expected = str(annotators.folder / "body_pose_model.pth")
    with pytest.raises(UserError, match=f"'openpose' needs {expected}.*lllyasviel/Annotators"):
        run_preprocessor(ControlNetUnit(module="openpose"), picture(64, 64), 64, 64, annotators)
    with pytest.raises(UserError, match="unknown preprocessor|Unknown preprocessor 'nope'"):
        run_preprocessor(ControlNetUnit(module="nope"), picture(64, 64), 64, 64, annotators)


def test_annotator_weights_load_through_controlnet_aux_with_every_way_to_the_hub_refused(
    pidinet_annotators, monkeypatch
):
    """controlnet-aux's loader is really run (the weights are there), with its hub download and every socket
    replaced by a recorder: the map is made and nothing was attempted."""
    import socket

    import controlnet_aux.pidi

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(controlnet_aux.pidi, "hf_hub_download", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(AssertionError, match="network access attempted"):  # the recorder is where the loader looks
        controlnet_aux.pidi.PidiNetDetector.from_pretrained("lllyasviel/Annotators")
    attempts.clear()

    made = run_preprocessor(
        ControlNetUnit(module="softedge_pidinet", processor_res=64), picture(64, 64), 64, 64, pidinet_annotators
    )
    assert made.size == (64, 64) and pixels(made).std() > 0
    assert attempts == []


def test_annotator_weights_come_from_the_folder_and_load_once(pidinet_annotators):
    unit = ControlNetUnit(module="softedge_pidinet", processor_res=64)
    first = run_preprocessor(unit, picture(64, 64), 64, 64, pidinet_annotators)
    detector = pidinet_annotators.detector(PREPROCESSORS["scribble_pidinet"])  # same file: the same detector
    second = run_preprocessor(unit, picture(64, 64), 64, 64, pidinet_annotators)
    assert first.size == (64, 64) and np.array_equal(pixels(first), pixels(second))
    assert detector is pidinet_annotators.detector(PREPROCESSORS["softedge_pidinet"])
    assert len(pidinet_annotators._detectors) == 1


def test_engine_preview_and_a_missing_annotator_in_a_job(engine):
    preview = engine.run_preprocessor(canny_unit(), picture(64, 64), 64, 64)
    assert preview.size == (64, 64)
    broken = ControlNetUnit(image=picture(64, 64), module="depth_midas", model="tiny-sd1-canny")
    with pytest.raises(UserError, match="dpt_hybrid-midas-501f0c75.pt, which is missing"):
        engine.generate(tiny_request(controlnet_units=(broken,)))
    working = canny_unit(image=picture(64, 64), model="tiny-sd1-canny")
    assert engine.generate(tiny_request(steps=1, controlnet_units=(working,))).images  # the engine goes on
    assert (engine.models.registry.models_dir / "annotators") == engine.models.annotators.folder

"""Model upscalers through spandrel: both ESRGAN key layouts detected and run, ×2 and ×4 sizes, tiles equal to the
untiled result, a file spandrel does not know named, and a model upscaler as Hires fix's upscaler."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import UserError
from core.upscaler_files import upscaler_files
from core.upscalers import UpscalerCache, upscale
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_upscalers import esrgan_state, real_esrgan_layout, write_upscaler


@pytest.fixture(scope="module")
def upscaler_models(models_dir, tmp_path_factory):
    """The session's models plus upscalers in A1111's and ComfyUI's folders (a copy: the others stay as they are)."""
    import shutil

    root = tmp_path_factory.mktemp("upscaler-models")
    shutil.copytree(models_dir, root, dirs_exist_ok=True)
    write_upscaler(root / "ESRGAN" / "4x-tiny.pth", esrgan_state(4))
    write_upscaler(root / "ESRGAN" / "2x-tiny.safetensors", esrgan_state(2, seed=1))
    write_upscaler(root / "RealESRGAN" / "RealESRGAN_x4tiny.pth", real_esrgan_layout(esrgan_state(4, seed=2)))
    write_upscaler(root / "upscale_models" / "not-an-upscaler.safetensors", {"foo.weight": torch.zeros(3, 3)})
    return root


@pytest.fixture(scope="module")
def cache(upscaler_models) -> UpscalerCache:
    return UpscalerCache(upscaler_models, torch.device("cpu"), torch.float32)


def picture(width: int = 40, height: int = 24) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray((rng.random((height, width, 3)) * 255).astype(np.uint8))


def test_both_layouts_are_found_and_detected(cache, upscaler_models):
    assert set(upscaler_files(upscaler_models)) == {"4x-tiny", "2x-tiny", "RealESRGAN_x4tiny", "not-an-upscaler"}
    for name, scale in (("4x-tiny", 4), ("2x-tiny", 2), ("RealESRGAN_x4tiny", 4)):
        loaded = cache.get(name)
        assert loaded.scale == scale and loaded.architecture == "ESRGAN"
        assert upscale(loaded, picture()).size == (40 * scale, 24 * scale)


def test_the_new_layout_is_the_same_network(cache, upscaler_models, tmp_path):
    old = write_upscaler(tmp_path / "ESRGAN" / "same-old.pth", esrgan_state(4, seed=2))
    same = UpscalerCache(tmp_path, torch.device("cpu"), torch.float32)
    assert old.exists()
    a = np.asarray(upscale(same.get("same-old"), picture()))
    b = np.asarray(upscale(cache.get("RealESRGAN_x4tiny"), picture()))
    assert np.array_equal(a, b)


def test_tiles_equal_the_whole_within_one_level(cache):
    model = cache.get("4x-tiny")
    image = picture(64, 48)
    whole = np.asarray(upscale(model, image, tile=1024), dtype=int)
    tiled = np.asarray(upscale(model, image, tile=16, overlap=8), dtype=int)
    assert np.abs(whole - tiled).max() <= 1


def test_a_file_spandrel_does_not_know_is_named(cache):
    with pytest.raises(UserError, match="not-an-upscaler.safetensors is not an upscaler spandrel knows.*foo.weight"):
        cache.get("not-an-upscaler")
    with pytest.raises(UserError, match="No upscaler named 'missing'"):
        cache.get("missing")


def test_a_model_upscaler_for_hires_fix(upscaler_models, tmp_path):
    engine = make_engine(upscaler_models, tmp_path / "out", tmp_path / "cache")
    request = tiny_request(enable_hr=True, hr_upscaler="4x-tiny", hr_scale=2, denoising_strength=0.5)
    (image,) = engine.generate(request).images
    assert image.image.size == (128, 128) and image.infotext.endswith("Hires upscaler: 4x-tiny")
    lanczos = engine.generate(request.with_changes(hr_upscaler="Lanczos")).images[0].image
    assert not np.array_equal(np.asarray(image.image), np.asarray(lanczos))
    with pytest.raises(UserError, match="Unknown hires upscaler '4x-Nope'; choose one of: Latent.*4x-tiny"):
        engine.generate(request.with_changes(hr_upscaler="4x-Nope"))


class _OnlySmallTiles(torch.nn.Module):
    """A ×2 "upscaler" (nearest) that runs out of memory on any tile over 40 px a side, counting its calls."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.sides: list[int] = []

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.sides.append(max(pixels.shape[-2:]))
        if max(pixels.shape[-2:]) > 40:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.nn.functional.interpolate(pixels, scale_factor=2, mode="nearest")


def test_out_of_memory_halves_the_tile_until_it_fits():
    from core.upscalers import LoadedUpscaler

    net = _OnlySmallTiles()

    class Descriptor:  # what upscale() uses of spandrel's ImageModelDescriptor
        model, device = net, torch.device("cpu")

        def __call__(self, pixels):
            return net(pixels)

    image = picture(64, 48)
    result = upscale(LoadedUpscaler("fake", Descriptor(), 2, "fake"), image, tile=96, overlap=4)
    assert result.size == (128, 96)
    assert np.array_equal(np.asarray(result), np.asarray(image.resize((128, 96), Image.NEAREST)))
    assert net.sides[0] > 40 and max(net.sides[-4:]) <= 40  # 96 → 48 → 24 px tiles (with their overlap)

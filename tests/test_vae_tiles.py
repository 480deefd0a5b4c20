"""Tiled VAE decode and encode (core.vae_tiles) against untiled, on a 1024×1024 picture of the shipped shapes model:
PSNR ≥ 35 dB, no seams (the difference along tile borders no more than twice the mean elsewhere), and the engine's
tiled job gives the untiled job's picture. diffusers' blended tiles, for comparison, are printed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core import vae_tiles
from core.request import GenerationRequest
from core.starter import STARTER_CHECKPOINT, STARTER_RESOLUTION
from tests.conftest import make_engine
from tests.test_step_cache import psnr
from training.models import MODELS

SIZE = 1024


def shapes_request(prompt: str, steps: int, seed: int, size: int = STARTER_RESOLUTION) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt, checkpoint=STARTER_CHECKPOINT, width=size, height=size, steps=steps, seed=seed,
        preview_method="None",
    )  # fmt: skip


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """The shapes model's VAE and a 1024² picture it drew (its own size, enlarged), as pixels in [-1, 1]."""
    folder = tmp_path_factory.mktemp("tiles")
    engine = make_engine(MODELS, folder / "outputs", folder / "cache", capacity=1)
    request = shapes_request("a red circle at the top left and a big blue square at the bottom right", 12, seed=3)
    picture = engine.generate(request).images[0].image.resize((SIZE, SIZE), Image.LANCZOS)
    pixels = torch.from_numpy(np.array(picture)).permute(2, 0, 1)[None].float() / 127.5 - 1
    vae = engine.models.activate(STARTER_CHECKPOINT).loaded.pipeline.vae
    return engine, vae, pixels


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()


def seam_ratio(a: np.ndarray, b: np.ndarray, tile_pixels: int) -> float:
    """Mean difference on the rows/columns next to tile borders over the mean difference elsewhere."""
    diff = np.abs(a.astype(float) - b.astype(float)).mean(-1)
    border = np.zeros(diff.shape, bool)
    for edge in range(tile_pixels, diff.shape[0], tile_pixels):
        border[edge - 2 : edge + 2, :] = True
        border[:, edge - 2 : edge + 2] = True
    elsewhere = diff[~border].mean()
    return float(diff[border].mean() / elsewhere) if elsewhere else 1.0


@pytest.mark.parametrize("tile", [vae_tiles.TILE, 32])
def test_tiled_decode_and_encode_give_the_untiled_result(shapes, tile):
    _, vae, pixels = shapes
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
        untiled = to_uint8(vae.decode(latents).sample)
        tiled = to_uint8(vae_tiles.tiled_decode(vae, latents, tile=tile))
        moments = vae.quant_conv(vae.encoder(pixels))
        tiled_moments = vae_tiles.tiled_encode(vae, pixels, tile=tile)
        vae.enable_tiling()
        vae.tile_latent_min_size, vae.tile_sample_min_size = tile, tile * scale
        blended = to_uint8(vae.decode(latents).sample)
        vae.disable_tiling()
    encode_psnr = psnr(tiled_moments.numpy(), moments.numpy()) - 20 * np.log10(255 / moments.abs().max().item())
    print(
        f"tile {tile}: decode PSNR {psnr(tiled, untiled):.1f} dB (diffusers' blended tiles: "
        f"{psnr(blended, untiled):.1f} dB), encode PSNR {encode_psnr:.1f} dB, "
        f"seams {seam_ratio(tiled, untiled, tile * scale):.2f}"
    )
    assert psnr(tiled, untiled) >= 35
    assert encode_psnr >= 35
    assert seam_ratio(tiled, untiled, tile * scale) <= 2


def test_a_job_that_needs_tiles_gives_the_untiled_picture(shapes, monkeypatch):
    engine = shapes[0]
    request = shapes_request("a green triangle in the middle", 2, seed=4, size=SIZE)
    untiled = np.asarray(engine.generate(request).images[0].image)
    import core.engine

    real_plan = core.engine.plan_memory
    monkeypatch.setattr(
        core.engine, "plan_memory", lambda *a, **k: real_plan(*a, **k).__class__(1, True, "test: tiles forced")
    )
    calls = []
    real_decode = vae_tiles.tiled_decode
    monkeypatch.setattr(vae_tiles, "tiled_decode", lambda *a, **k: calls.append(1) or real_decode(*a, **k))
    tiled = np.asarray(engine.generate(request).images[0].image)
    assert calls == [1]
    assert psnr(tiled, untiled) >= 35 and seam_ratio(tiled, untiled, 512) <= 2

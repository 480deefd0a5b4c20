"""Settings → Optimisations (core.speed) and the memory levels (core.placement): each speed option and each level
gives the picture the plain engine gives (max pixel difference ≤ 2; fp8 storage: a measured PSNR), really applies
to the modules, and is undone for a job that does not want it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from core.memory_policy import LEVEL_NAMES
from core.placement import offloaded
from core.speed import COMPILING_NOTICE, SpeedOptions
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_loras import kohya_lora, write_lora
from tests.test_step_cache import psnr

PIXELS_KEPT = 2  # max difference (of 255) an option that keeps the arithmetic may make


class Lab:
    """An engine of its own (options change its modules) whose options a test sets."""

    def __init__(self, models_dir, tmp_path):
        write_lora(models_dir / "Lora" / "speed-style.safetensors", kohya_lora("SD1", seed=0))
        self.options = SpeedOptions()
        self.engine = make_engine(models_dir, tmp_path / "outputs", tmp_path / "cache", capacity=1)
        self.engine.speed = lambda: self.options
        self.engine.models.fp8_unet = lambda: self.options.fp8_unet

    def run(self, **changes):
        return self.engine.generate(tiny_request(seed=5, steps=6, **changes))

    def pixels(self, **changes) -> np.ndarray:
        return np.asarray(self.run(**changes).images[0].image).astype(int)

    @property
    def pipeline(self):
        return self.engine.models.activate("sd15/tiny-sd1.safetensors").loaded.pipeline


@pytest.fixture
def lab(models_dir, tmp_path):
    return Lab(models_dir, tmp_path)


def notices(engine, request) -> list[str]:
    from core.events import Notice

    return [e.message for e in engine.run(request) if isinstance(e, Notice)]


def test_channels_last_keeps_the_picture_and_is_undone(lab):
    plain = lab.pixels()
    lab.options = SpeedOptions(channels_last=True)
    fast = lab.pixels()
    conv = lab.pipeline.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    assert np.abs(fast - plain).max() <= PIXELS_KEPT
    lab.options = SpeedOptions()
    assert np.abs(lab.pixels() - plain).max() <= PIXELS_KEPT
    assert lab.pipeline.unet.conv_in.weight.is_contiguous()


def fused(module) -> bool:
    return any(type(p).__name__.startswith("Fused") for p in module.attn_processors.values())


def test_fused_projections_keep_the_picture_and_step_aside_for_a_lora(lab):
    plain, with_lora = lab.pixels(), lab.pixels(prompt="a photo of a cat <lora:speed-style:1>")
    assert np.abs(with_lora - plain).max() > 10  # the LoRA does change the picture
    lab.options = SpeedOptions(fused_qkv=True)
    assert np.abs(lab.pixels() - plain).max() <= PIXELS_KEPT
    assert fused(lab.pipeline.unet) and fused(lab.pipeline.vae)
    # The LoRA's adapters sit on the separate projections: the UNet runs unfused for it, and the LoRA still acts.
    assert np.abs(lab.pixels(prompt="a photo of a cat <lora:speed-style:1>") - with_lora).max() <= PIXELS_KEPT
    assert not fused(lab.pipeline.unet)
    lab.options = SpeedOptions()
    lab.pixels()
    assert not fused(lab.pipeline.vae)


def test_compile_keeps_the_picture_compiles_once_per_size_and_composes_with_the_step_cache(lab):
    plain, cached = lab.pixels(), lab.pixels(step_cache=2)
    lab.options = SpeedOptions(compile=True)
    assert COMPILING_NOTICE in notices(lab.engine, tiny_request(seed=5, steps=6))
    assert np.abs(lab.pixels() - plain).max() <= PIXELS_KEPT  # the compiled graphs' picture
    assert COMPILING_NOTICE not in notices(lab.engine, tiny_request(seed=5, steps=6))  # the same size: reused
    assert np.abs(lab.pixels(step_cache=2) - cached).max() <= PIXELS_KEPT
    assert "forward" in vars(lab.pipeline.unet.mid_block)  # the step cache gave the compiled forward back
    lab.options = SpeedOptions()
    assert np.abs(lab.pixels() - plain).max() <= PIXELS_KEPT
    assert "forward" not in vars(lab.pipeline.unet.mid_block)


def test_fp8_storage_halves_the_unet_keeps_the_picture_close_and_reloads_when_turned_off(lab):
    plain = lab.pixels()
    plain_bytes = sum(p.numel() * p.element_size() for p in lab.pipeline.unet.parameters())
    lab.options = SpeedOptions(fp8_unet=True, fused_qkv=True)
    stored = lab.pixels()
    unet = lab.pipeline.unet
    assert unet.conv_in.weight.dtype == torch.float8_e4m3fn
    assert sum(p.numel() * p.element_size() for p in unet.parameters()) < plain_bytes / 3  # fp32 → fp8 here
    quality = psnr(stored, plain)
    print(f"fp8 UNet against fp32: PSNR {quality:.1f} dB")
    assert quality > 25
    assert not fused(unet)  # a fused projection would be a new layer without fp8's upcast
    lora = lab.pixels(prompt="a photo of a cat <lora:speed-style:1>")  # a LoRA on fp8 layers still runs
    assert np.abs(lora - stored).max() > 10
    lab.options = SpeedOptions()
    assert np.array_equal(lab.pixels(), plain)
    assert lab.pipeline.unet.conv_in.weight.dtype == torch.float32


@pytest.mark.parametrize("flag", ["medvram", "lowvram"])
def test_a_forced_memory_level_offloads_says_so_keeps_the_picture_and_is_undone(lab, flag):
    engine = lab.engine
    plain = lab.pixels()
    engine.policy = dataclasses.replace(engine.policy, memory_flag=flag)
    lab.options = SpeedOptions(channels_last=True)
    said = notices(engine, tiny_request(seed=5, steps=6))
    level = {"medvram": 2, "lowvram": 4}[flag]
    assert f"Memory: {LEVEL_NAMES[level]} (--{flag}). The speed options are off while models are offloaded." in said
    assert np.abs(lab.pixels() - plain).max() <= PIXELS_KEPT
    assert np.abs(lab.pixels(prompt="a photo of a cat <lora:speed-style:1>") - plain).max() > 10
    pipe = lab.pipeline
    assert offloaded(pipe.unet) and offloaded(pipe.text_encoder)
    assert pipe.unet.conv_in.weight.is_contiguous()
    engine.policy = dataclasses.replace(engine.policy, memory_flag=None)
    lab.options = SpeedOptions()
    assert not any("Memory:" in m for m in notices(engine, tiny_request(seed=5, steps=6)))
    assert not offloaded(pipe.unet) and not offloaded(pipe.text_encoder)
    assert np.abs(lab.pixels() - plain).max() <= PIXELS_KEPT


def test_img2img_after_an_offloaded_txt2img_is_placed_too(lab):
    from PIL import Image

    lab.engine.policy = dataclasses.replace(lab.engine.policy, memory_flag="medvram")
    lab.pixels()
    start = Image.new("RGB", (64, 64), (200, 40, 40))
    first = lab.pixels(init_image=start, denoising_strength=0.5)
    assert np.array_equal(first, lab.pixels(init_image=start, denoising_strength=0.5))

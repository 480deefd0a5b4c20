"""The memory policy's decisions for the cards people own (free memory supplied), and a VAE decode that runs out of
memory retried in tiles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from core.errors import UserError
from core.events import Notice
from core.memory_policy import (
    ALL_ON_GPU,
    GB,
    OFFLOAD_BETWEEN_USES,
    SD15_SIZE,
    SDXL_SIZE,
    SEQUENTIAL_OFFLOAD,
    UNET_GROUP_OFFLOAD,
    plan_memory,
)
from core.vae_memory import RETRY_NOTICE
from tests.conftest import tiny_request

# (free GB) → (level, tiled VAE), as docs/benchmarks.md and the README's memory table say.
SD15_512 = {4: (ALL_ON_GPU, True), 6: (ALL_ON_GPU, False), 8: (ALL_ON_GPU, False), 12: (ALL_ON_GPU, False),
            24: (ALL_ON_GPU, False), 80: (ALL_ON_GPU, False)}  # fmt: skip
SDXL_1024 = {4: (UNET_GROUP_OFFLOAD, True), 6: (UNET_GROUP_OFFLOAD, True), 8: (OFFLOAD_BETWEEN_USES, False),
             12: (ALL_ON_GPU, True), 24: (ALL_ON_GPU, False), 80: (ALL_ON_GPU, False)}  # fmt: skip


@pytest.mark.parametrize("free_gb", sorted(SD15_512))
def test_the_level_for_sd15_at_512(free_gb):
    plan = plan_memory(free_gb * GB, SD15_SIZE, 512, 512)
    assert (plan.level, plan.tiled_vae) == SD15_512[free_gb]


@pytest.mark.parametrize("free_gb", sorted(SDXL_1024))
def test_the_level_for_sdxl_at_1024(free_gb):
    plan = plan_memory(free_gb * GB, SDXL_SIZE, 1024, 1024, is_sdxl=True)
    assert (plan.level, plan.tiled_vae) == SDXL_1024[free_gb]
    assert plan.reason == f"{free_gb:.1f} GB free"


def test_bigger_jobs_never_get_a_faster_level():
    jobs = sorted(((side, batch) for side in (512, 1024, 1536) for batch in (1, 4)), key=lambda j: j[0] ** 2 * j[1])
    levels = [plan_memory(8 * GB, SDXL_SIZE, side, side, batch).level for side, batch in jobs]
    assert levels == sorted(levels) and levels[0] < levels[-1]
    assert plan_memory(2 * GB, SDXL_SIZE, 1024, 1024).level == SEQUENTIAL_OFFLOAD


def test_a1111_flags_force_their_level():
    roomy = 80 * GB
    assert plan_memory(roomy, SD15_SIZE, 512, 512, forced="medvram").level == OFFLOAD_BETWEEN_USES
    assert plan_memory(roomy, SD15_SIZE, 512, 512, forced="lowvram").level == SEQUENTIAL_OFFLOAD
    assert plan_memory(roomy, SD15_SIZE, 512, 512, forced="medvram-sdxl").level == ALL_ON_GPU  # SDXL only
    assert plan_memory(roomy, SDXL_SIZE, 1024, 1024, forced="medvram-sdxl", is_sdxl=True).level == 2


def test_no_known_limit_keeps_everything_in_place():
    assert (plan_memory(None, SDXL_SIZE, 2048, 2048).level, plan_memory(None, SDXL_SIZE, 2048, 2048).tiled_vae) == (
        ALL_ON_GPU,
        False,
    )


class _OutOfMemoryUntiled:
    """AutoencoderKL.decode as on a card too small for an untiled decode: it runs out of memory unless tiled."""

    def __init__(self, monkeypatch, always: bool = False):
        self.tiling_seen: list[bool] = []
        original = AutoencoderKL.decode

        def decode(vae, *args, **kwargs):
            self.tiling_seen.append(vae.use_tiling)
            if always or not vae.use_tiling:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 5.00 GiB")
            return original(vae, *args, **kwargs)

        monkeypatch.setattr(AutoencoderKL, "decode", decode)


def test_a_decode_that_runs_out_of_memory_is_retried_in_tiles(engine, monkeypatch):
    expected = engine.generate(tiny_request(seed=5)).images[0].image
    decoding = _OutOfMemoryUntiled(monkeypatch)
    events = list(engine.run(tiny_request(seed=5)))
    assert decoding.tiling_seen == [False, True]
    assert Notice(RETRY_NOTICE) in events
    result = events[-1]
    assert np.array_equal(np.asarray(result.images[0].image), np.asarray(expected))  # too small to tile: same
    vae = engine.models.activate(tiny_request().checkpoint).loaded.pipeline.vae
    assert not vae.use_tiling and "decode" not in vars(vae)  # the shared VAE is as it was


def test_a_decode_that_runs_out_of_memory_even_tiled_ends_with_the_memory_message(engine, monkeypatch):
    _OutOfMemoryUntiled(monkeypatch, always=True)
    with pytest.raises(UserError, match="Out of GPU memory at 64x64"):
        engine.generate(tiny_request(seed=5))
    monkeypatch.undo()
    assert engine.generate(tiny_request(seed=5)).images  # the engine goes on

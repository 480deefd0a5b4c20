"""Every task in bfloat16 on the CPU: the dtype paths a GPU's half precision takes (a LoRA's deltas on a half
model, ControlNet residuals, embedding vectors, the VAE's encode for img2img/inpaint, SDXL's VAE) without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.request import ControlNetUnit
from tests.conftest import make_engine, tiny_request
from tests.fixtures.tiny_loras import kohya_lora, write_lora
from tests.fixtures.tiny_models import TEXT_HIDDEN, write_checkpoint, write_controlnet
from tests.test_img2img import picture

pytestmark = pytest.mark.bf16

CKPT, XL = "tiny-sd1.safetensors", "tiny-sdxl.safetensors"


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("half-models")
    write_checkpoint(root / "Stable-diffusion" / CKPT, "SD1")
    write_checkpoint(root / "Stable-diffusion" / XL, "SDXL")
    write_controlnet(root / "ControlNet" / "canny.safetensors", "SD1")
    write_lora(root / "Lora" / "style.safetensors", kohya_lora("SD1", seed=0))
    (root / "embeddings").mkdir()
    vectors = torch.randn(2, TEXT_HIDDEN, generator=torch.Generator().manual_seed(3))
    save_file({"emb_params": vectors}, root / "embeddings" / "halfstyle.safetensors")  # fp32 file, bf16 model
    work = tmp_path_factory.mktemp("half-work")
    return make_engine(root, work / "outputs", work / "cache", precision="bf16")


def left_half_mask():
    from PIL import Image

    mask = Image.new("L", picture().size, 0)
    mask.paste(255, (0, 0, mask.width // 2, mask.height))
    return mask


TASKS = {
    "txt2img": dict(),
    "sdxl": dict(checkpoint=XL),
    "img2img": dict(init_image=picture()),
    "inpaint": dict(init_image=picture(), mask=left_half_mask()),
    "controlnet": dict(controlnet_units=(ControlNetUnit(image=picture(64, 64), model="canny.safetensors"),)),
    "lora": dict(prompt="a photo of a cat <lora:style:0.8>"),
    "embedding": dict(prompt="a photo of a cat, halfstyle"),
    "full VAE previews": dict(preview_method="Full VAE", preview_every_n_steps=1),
}


@pytest.mark.parametrize("task", TASKS)
def test_every_task_runs_in_bf16_and_repeats_its_pixels(engine, task):
    request = tiny_request(**{"checkpoint": CKPT, **TASKS[task]})
    first = engine.generate(request).images[0].image
    again = engine.generate(request).images[0].image
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert np.asarray(first).std() > 0  # a picture, not a flat (NaN-turned-black) image


def test_a_lora_at_weight_zero_equals_none_in_bf16(engine):
    plain = engine.generate(tiny_request(checkpoint=CKPT)).images[0].image
    zero = engine.generate(tiny_request(checkpoint=CKPT, prompt="a photo of a cat <lora:style:0>")).images[0].image
    assert np.array_equal(np.asarray(plain), np.asarray(zero))

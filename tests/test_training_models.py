"""The shapes model family's own layout (four levels down to 2 x 2, no attention on the top level) is saved in the
LDM single-file layout and read back by the app's loader exactly, the ControlNet too."""

from __future__ import annotations

import torch
from diffusers import ControlNetModel

from core.devices import choose_policy
from core.loader import load_checkpoint, load_controlnet
from training import models
from training.train_controlnet import HINT_CHANNELS

CPU = choose_policy("cpu", "fp32")


def _assert_same_half(loaded: dict[str, torch.Tensor], original: dict[str, torch.Tensor]) -> None:
    assert set(loaded) == set(original)
    for key, tensor in original.items():
        assert torch.equal(loaded[key], tensor.half().float()), key  # the files are fp16, as model sites ship them


def test_the_shapes_checkpoint_loads_with_its_own_layout(tmp_path):
    unet, text_encoder = models.new_unet(1), models.new_text_encoder(1)
    path = tmp_path / "shapes.safetensors"
    models.save_checkpoint(path, unet, models.new_vae(1), text_encoder)
    pipeline = load_checkpoint(path, CPU).pipeline
    assert pipeline.unet.config.down_block_types == unet.config.down_block_types
    assert pipeline.unet.config.up_block_types == unet.config.up_block_types
    assert list(pipeline.unet.config.block_out_channels) == list(models.UNET_CHANNELS)
    _assert_same_half(pipeline.unet.state_dict(), unet.state_dict())
    _assert_same_half(pipeline.text_encoder.state_dict(), text_encoder.state_dict())


def test_its_controlnet_loads_too(tmp_path):
    unet = models.new_unet(2)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)
    path = tmp_path / "canny.safetensors"
    models.save_controlnet(path, controlnet)
    loaded = load_controlnet(path, CPU, dict(unet.config))
    assert loaded.config.down_block_types == controlnet.config.down_block_types
    _assert_same_half(loaded.state_dict(), controlnet.state_dict())

"""The shapes model family's own layout (four levels down to 2 x 2, no attention on the top level) is saved in the
LDM single-file layout and read back by the app's loader exactly, the ControlNet too."""

from __future__ import annotations

import random

import torch
from diffusers import ControlNetModel

from core.devices import choose_policy
from core.loader import load_checkpoint, load_controlnet
from training import models
from training.scenes import caption, random_scene, without_places
from training.train_controlnet import HINT_CHANNELS, placeless_tokens

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


def test_controlnet_captions_lose_their_places_token_for_token():
    # train_controlnet cuts the places out of the cached token ids (decoded and tokenized again): the same ids as
    # tokenizing the placeless text directly.
    rng = random.Random(8)
    captions = [caption(random_scene(rng, two_objects_fraction=0.5), rng) for _ in range(200)]
    tokens = models.tokenize(captions).view(100, 2, -1)
    expected = models.tokenize([without_places(text) for text in captions]).view(100, 2, -1)
    assert torch.equal(placeless_tokens(tokens), expected)
    assert not torch.equal(expected, tokens)

"""The tiny-model fixtures are what real downloads look like: diffusers' own converters read them back exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    is_clip_model,
    is_clip_sdxl_model,
    is_open_clip_model,
    is_open_clip_sdxl_model,
)
from safetensors.torch import load_file

from core.families import FAMILIES, text_encoder_heads
from tests.fixtures.tiny_models import (
    SDXL_PROJECTION_DIM,
    SDXL_TEXT_HIDDEN_2,
    TEXT_HIDDEN,
    TEXT_LAYERS,
    ldm_state_dict,
    tiny_components,
    write_checkpoint,
    write_diffusers_folder,
)
from training.ldm_export import (
    SD1_CLIP_PREFIX,
    SD2_OPENCLIP_PREFIX,
    SDXL_CLIP_PREFIX,
    SDXL_OPENCLIP_PREFIX,
    unet_to_ldm,
    vae_to_ldm,
)

CASES = [("SD1", False), ("SD1", True), ("SD2", False), ("SDXL", False)]


def _with_text_model(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # CLIPTextModel lost its `text_model.` level in transformers 5.6; diffusers' converters still emit it.
    return {k if k.startswith(("text_model.", "text_projection.")) else "text_model." + k: v for k, v in state.items()}


def _assert_same(original: dict, converted: dict, extra: set[str] = frozenset()) -> None:
    assert set(converted) - set(original) == set(extra)
    assert set(original) - set(converted) == set()
    for key, tensor in original.items():
        assert converted[key].shape == tensor.shape, key
        assert torch.equal(converted[key], tensor), key


@pytest.mark.parametrize(("family", "inpainting"), CASES)
def test_ldm_export_reads_back_with_diffusers_converters(family, inpainting):
    parts = tiny_components(family, inpainting=inpainting)
    state = ldm_state_dict(family, inpainting=inpainting)
    unet, vae = parts["unet"], parts["vae"]
    _assert_same(unet.state_dict(), convert_ldm_unet_checkpoint(state, unet.config))
    _assert_same(vae.state_dict(), convert_ldm_vae_checkpoint(state, vae.config))
    text = _with_text_model(parts["text_encoder"].state_dict())
    if family == "SD1":
        # Real SD1 files carry position_ids; diffusers passes the key through and its loader skips it.
        converted = convert_ldm_clip_checkpoint(state)
        _assert_same(text, converted, {"text_model.embeddings.position_ids"})
        assert torch.equal(converted["text_model.embeddings.position_ids"], torch.arange(77)[None])
    elif family == "SD2":
        # SD2 files hold one OpenCLIP layer more than the diffusers model; diffusers drops it only when it is
        # resblocks.23 (real ViT-H), so for a tiny model that layer comes back as surplus keys.
        converted = convert_open_clip_checkpoint(parts["text_encoder"], state, prefix=SD2_OPENCLIP_PREFIX)
        surplus = {k for k in converted if k.startswith(f"text_model.encoder.layers.{TEXT_LAYERS}.")}
        assert len(surplus) == 16
        _assert_same(text, converted, surplus)
    else:
        converted = convert_ldm_clip_checkpoint(state, remove_prefix=SDXL_CLIP_PREFIX)
        _assert_same(text, converted, {"text_model.embeddings.position_ids"})
        encoder_2 = parts["text_encoder_2"]
        _assert_same(
            encoder_2.state_dict(), convert_open_clip_checkpoint(encoder_2, state, prefix=SDXL_OPENCLIP_PREFIX)
        )


@pytest.mark.parametrize(("family", "inpainting"), CASES)
def test_ldm_keys_look_like_real_downloads(family, inpainting):
    state = ldm_state_dict(family, inpainting=inpainting)
    assert state["model.diffusion_model.input_blocks.0.0.weight"].shape == (32, 9 if inpainting else 4, 3, 3)
    assert state["model.diffusion_model.out.2.weight"].shape == (4, 32, 3, 3)
    assert state["first_stage_model.encoder.down.0.block.0.conv1.weight"].shape == (32, 32, 3, 3)
    assert state["first_stage_model.decoder.up.3.block.1.conv2.weight"].shape == (64, 64, 3, 3)
    assert "first_stage_model.decoder.up.3.block.2.conv2.weight" not in state  # up levels hold two resnets
    assert state["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (64, 64, 1, 1)
    assert state["first_stage_model.encoder.mid.attn_1.proj_out.weight"].shape == (64, 64, 1, 1)
    assert state["model.diffusion_model.input_blocks.2.0.op.weight"].shape == (32, 32, 3, 3)
    proj_in = state["model.diffusion_model.input_blocks.3.1.proj_in.weight"]
    assert proj_in.ndim == (4 if family == "SD1" else 2)  # SD1 projects with 1x1 convs, SD2/SDXL with linears
    tops = {k.split(".")[0] for k in state if "." in k}
    if family == "SD1":
        assert tops == {"model", "first_stage_model", "cond_stage_model"}
        assert is_clip_model(state) and not is_open_clip_model(state)
        assert state[f"{SD1_CLIP_PREFIX}text_model.encoder.layers.2.mlp.fc1.weight"].shape == (64, TEXT_HIDDEN)
        assert "alphas_cumprod" in state
    elif family == "SD2":
        assert tops == {"model", "first_stage_model", "cond_stage_model"}
        assert is_open_clip_model(state) and not is_clip_model(state)
        assert state[f"{SD2_OPENCLIP_PREFIX}transformer.resblocks.{TEXT_LAYERS}.attn.in_proj_weight"].shape == (96, 32)
        assert f"{SD2_OPENCLIP_PREFIX}transformer.resblocks.{TEXT_LAYERS + 1}.ln_1.weight" not in state
        assert state[f"{SD2_OPENCLIP_PREFIX}text_projection"].shape == (TEXT_HIDDEN, TEXT_HIDDEN)
        assert state[f"{SD2_OPENCLIP_PREFIX}positional_embedding"].shape == (77, TEXT_HIDDEN)
    else:
        assert tops == {"model", "first_stage_model", "conditioner"}
        assert is_clip_sdxl_model(state) and is_open_clip_sdxl_model(state)
        assert state["model.diffusion_model.label_emb.0.0.weight"].shape[1] == 6 * 8 + SDXL_PROJECTION_DIM
        assert state[f"{SDXL_OPENCLIP_PREFIX}text_projection"].shape == (SDXL_TEXT_HIDDEN_2, SDXL_PROJECTION_DIM)
        in_proj = state[f"{SDXL_OPENCLIP_PREFIX}transformer.resblocks.0.attn.in_proj_weight"]
        assert in_proj.shape == (3 * SDXL_TEXT_HIDDEN_2, SDXL_TEXT_HIDDEN_2)
        assert f"{SDXL_OPENCLIP_PREFIX}transformer.resblocks.{TEXT_LAYERS - 1}.mlp.c_proj.bias" in state
        assert f"{SDXL_OPENCLIP_PREFIX}transformer.resblocks.{TEXT_LAYERS}.mlp.c_proj.bias" not in state
        # Two transformer blocks at the second level, as in SDXL's deeper levels.
        assert "model.diffusion_model.input_blocks.3.1.transformer_blocks.1.attn2.to_k.weight" in state
        assert "alphas_cumprod" not in state


def test_export_generalises_to_other_layouts():
    # Real SD1's pattern (attention at every level but the lowest), 3 levels, 2 resnets, depth-2 transformers.
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 32, 64),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        norm_num_groups=32,
        cross_attention_dim=16,
        attention_head_dim=2,
        transformer_layers_per_block=2,
    )
    vae = AutoencoderKL(
        block_out_channels=(32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=2,
        norm_num_groups=32,
    )
    unet_state = unet_to_ldm(unet)
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in unet_state  # upsampler after a plain level
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in unet_state  # upsampler after attention
    assert "model.diffusion_model.input_blocks.6.0.op.weight" in unet_state
    _assert_same(unet.state_dict(), convert_ldm_unet_checkpoint(unet_state, unet.config))
    _assert_same(vae.state_dict(), convert_ldm_vae_checkpoint(vae_to_ldm(vae), vae.config))


@pytest.mark.parametrize("family", ["SD1", "SD2", "SDXL"])
def test_components_follow_family_conventions(family):
    fam = FAMILIES[family]
    parts = tiny_components(family)
    unet = parts["unet"].config
    assert unet.attention_head_dim == fam.unet_heads(list(unet.block_out_channels))
    assert parts["vae"].config.scaling_factor == fam.vae_scaling_factor
    for name in ("text_encoder", "text_encoder_2"):
        if name in parts:
            config = parts[name].config
            assert config.vocab_size == 49408 and config.max_position_embeddings == 77
            assert config.num_attention_heads == text_encoder_heads(config.hidden_size)
    again = tiny_components(family)
    assert torch.equal(again["unet"].conv_in.weight, parts["unet"].conv_in.weight)
    other = tiny_components(family, seed=1)
    assert not torch.equal(other["unet"].conv_in.weight, parts["unet"].conv_in.weight)


def test_write_checkpoint_formats(tmp_path):
    expected = ldm_state_dict("SD1")
    safetensors_file = write_checkpoint(tmp_path / "tiny.safetensors", "SD1")
    _assert_same(expected, load_file(str(safetensors_file)))
    ckpt_file = write_checkpoint(tmp_path / "tiny.ckpt", "SD1", fmt="ckpt")
    loaded = torch.load(str(ckpt_file), map_location="cpu", weights_only=True)
    _assert_same(expected, loaded["state_dict"])


@pytest.mark.parametrize(("family", "fmt"), [("SD1", "ckpt"), ("SD2", "safetensors"), ("SDXL", "safetensors")])
def test_checkpoint_loads_with_from_single_file(tmp_path, family, fmt):
    """diffusers' whole single-file loader, given a local config folder, rebuilds the exact components."""
    folder = write_diffusers_folder(tmp_path / "config", family)
    checkpoint = write_checkpoint(tmp_path / f"tiny.{fmt}", family, fmt=fmt)
    cls = StableDiffusionXLPipeline if family == "SDXL" else StableDiffusionPipeline
    pipe = cls.from_single_file(str(checkpoint), config=str(folder), local_files_only=True)
    for name, module in tiny_components(family).items():
        _assert_same(module.state_dict(), getattr(pipe, name).state_dict())


@pytest.mark.parametrize(("family", "cls"), [("SD1", StableDiffusionPipeline), ("SDXL", StableDiffusionXLPipeline)])
def test_diffusers_folder_loads_and_generates(tmp_path, family, cls):
    folder = write_diffusers_folder(tmp_path / family, family)
    assert (folder / "model_index.json").is_file()
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    pipe = cls.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if family == "SDXL":
        assert pipe.tokenizer_2.pad_token == "!"
    images = pipe(
        "a photo of a cat",
        num_inference_steps=2,
        height=64,
        width=64,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
    ).images
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all() and images.std() > 0.05

"""Loading checkpoints: detection from tensors, single file ↔ diffusers equivalence, and refusal of bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from core.checkpoint_files import load_state_dict, read_shapes
from core.detect import detect_checkpoint
from core.devices import choose_policy
from core.errors import UserError
from core.families import SD1, SD2, SDXL
from core.loader import load_checkpoint, load_vae
from tests.fixtures.tiny_models import ldm_state_dict, tiny_components, unet_config, vae_config, write_checkpoint

CPU = choose_policy("cpu", "fp32")


@pytest.mark.parametrize("family, expected", [("SD1", SD1), ("SD2", SD2), ("SDXL", SDXL)])
@pytest.mark.parametrize("inpainting", [False, True])
def test_family_and_dimensions_come_from_the_tensors(family, expected, inpainting):
    shapes = {k: tuple(v.shape) for k, v in ldm_state_dict(family, inpainting=inpainting).items()}
    spec = detect_checkpoint(shapes)
    assert spec.family is expected
    assert spec.is_inpainting == inpainting
    want = unet_config(family, inpainting=inpainting)
    for key, value in want.items():
        got = spec.unet_config.get(key)
        if key == "transformer_layers_per_block":
            assert got[1:] == value[1:]  # the first level has no attention, so its depth is moot
        else:
            assert got == value, key
    for key, value in vae_config(family).items():
        assert spec.vae_config[key] == value, key


@pytest.mark.parametrize("family", ["SD1", "SD2", "SDXL"])
def test_loaded_single_file_has_the_original_weights(tmp_path, family):
    path = write_checkpoint(tmp_path / "m.safetensors", family)
    loaded = load_checkpoint(path, CPU)
    original = tiny_components(family)
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = loaded.pipeline.components[name].state_dict(), original[name].state_dict()
        assert mine.keys() == theirs.keys(), name
        for key in theirs:
            assert torch.equal(mine[key].float(), theirs[key].float()), f"{name}.{key}"
    assert loaded.family.id == family


def test_ckpt_loads_through_weights_only_unpickling(tmp_path):
    path = write_checkpoint(tmp_path / "m.ckpt", "SD1", fmt="ckpt")
    assert load_checkpoint(path, CPU).family is SD1


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    _RunsCode.marker = marker
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.x": _RunsCode()}}, path)
    with pytest.raises(UserError, match="refused.*pickle.*posix.system"):
        load_checkpoint(path, CPU)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_files_get_a_clear_message(tmp_path, cut):
    good = write_checkpoint(tmp_path / "good.safetensors", "SD1")
    data = good.read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(UserError, match="corrupt, truncated"):
        load_checkpoint(bad, CPU)


def test_not_a_model_file(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("this is not a model")
    with pytest.raises(UserError, match="could not be read"):
        load_state_dict(text)
    other = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, other)
    with pytest.raises(UserError, match="not a Stable Diffusion checkpoint.*weight"):
        load_checkpoint(other, CPU)


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"model.diffusion_model.joint_blocks.0.x": (4,)}, "Stable Diffusion 3"),
        ({"double_blocks.0.img_attn.qkv.weight": (4,)}, "FLUX"),
        ({"lora_unet_down_blocks_0.lora_down.weight": (4, 4)}, "LoRA.*models/Lora"),
        ({"control_model.input_blocks.0.0.weight": (4,)}, "ControlNet"),
        ({"encoder.down.0.block.0.conv1.weight": (4,)}, "VAE"),
    ],
)
def test_unsupported_families_are_named(keys, message):
    with pytest.raises(UserError, match=message):
        detect_checkpoint(keys, "file.safetensors")


def test_missing_weights_are_reported(tmp_path):
    state = dict(ldm_state_dict("SD1"))
    state.pop("model.diffusion_model.out.2.bias")
    path = tmp_path / "incomplete.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    with pytest.raises(UserError, match="incomplete.*missing"):
        load_checkpoint(path, CPU)


def test_v_prediction_from_yaml_or_key(tmp_path):
    path = write_checkpoint(tmp_path / "sd1-v.safetensors", "SD1")
    assert load_checkpoint(path, CPU).prediction_type == "epsilon"
    path.with_suffix(".yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert load_checkpoint(path, CPU).prediction_type == "v_prediction"
    sd2 = write_checkpoint(tmp_path / "sd2.safetensors", "SD2")
    assert load_checkpoint(sd2, CPU, sd2_prediction="epsilon").prediction_type == "epsilon"
    assert load_checkpoint(sd2, CPU).prediction_type == "v_prediction"
    state = dict(ldm_state_dict("SDXL"), v_pred=torch.tensor([]), ztsnr=torch.tensor([]))
    xl = tmp_path / "xl-vpred.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, xl)
    loaded = load_checkpoint(xl, CPU)
    assert loaded.prediction_type == "v_prediction"
    assert loaded.scheduler_config["rescale_betas_zero_snr"] is True


def test_standalone_vae_file(tmp_path):
    state = {
        k.removeprefix("first_stage_model."): v
        for k, v in ldm_state_dict("SD1").items()
        if k.startswith("first_stage_model.")
    }
    path = tmp_path / "my.vae.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    vae = load_vae(path, SDXL)
    assert vae.config.scaling_factor == SDXL.vae_scaling_factor
    ref = tiny_components("SD1")["vae"].state_dict()
    for key, value in vae.state_dict().items():
        assert torch.equal(value, ref[key]), key


def test_read_shapes_reads_only_the_header(tmp_path):
    path = write_checkpoint(tmp_path / "m.safetensors", "SD1")
    shapes = read_shapes(path)
    assert shapes["model.diffusion_model.input_blocks.0.0.weight"] == (32, 4, 3, 3)
    assert isinstance(Path(path), Path)

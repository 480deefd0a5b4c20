"""Turns checkpoint files and folders into diffusers pipelines with bundled configs and tokenizers (never the hub)."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from accelerate import init_empty_weights
from diffusers import (
    AutoencoderKL,
    ControlNetModel,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (
    convert_controlnet_checkpoint,
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from core.checkpoint_files import StateDict, load_state_dict
from core.detect import (
    CheckpointSpec,
    ControlNetSpec,
    TextEncoderSpec,
    detect_checkpoint,
    detect_controlnet,
    vae_config_from_ldm,
)
from core.devices import DevicePolicy
from core.errors import UserError
from core.families import SD1, SD2, SDXL, Family
from core.tokenizers import PAD_ENDOFTEXT, PAD_EXCLAMATION, clip_tokenizer

log = logging.getLogger(__name__)


@dataclass
class LoadedCheckpoint:
    """A checkpoint ready to run: its pipeline, family, and the VAE it came with (restored when no VAE override)."""

    path: Path
    family: Family
    pipeline: DiffusionPipeline
    own_vae: AutoencoderKL | None
    is_inpainting: bool
    prediction_type: str
    scheduler_config: dict  # the checkpoint's own schedule, which every sampler starts from
    # img2img/inpaint pipelines built from this one's components (core.jobs), kept so a job does not rebuild them.
    derived: dict[str, DiffusionPipeline] = field(default_factory=dict, repr=False)
    placement: dict = field(default_factory=dict, repr=False)  # the last memory placement (core.placement)
    compiled_keys: set[tuple] = field(default_factory=set, repr=False)  # sizes compiled for (core.speed)
    fp8_unet: bool = False  # the UNet's weights stored in fp8 (core.speed.store_fp8)

    @property
    def description(self) -> str:
        return f"{self.family.label}{' inpainting' if self.is_inpainting else ''}"


def load_checkpoint(path: Path, policy: DevicePolicy, sd2_prediction: str = "v_prediction") -> LoadedCheckpoint:
    """Load a single-file checkpoint or a diffusers folder onto the policy's device and dtype."""
    path = Path(path)
    loaded = _load_diffusers_folder(path, policy) if path.is_dir() else _load_single_file(path, policy, sd2_prediction)
    _place(loaded, policy)
    return loaded


def _load_single_file(path: Path, policy: DevicePolicy, sd2_prediction: str) -> LoadedCheckpoint:
    state_dict = load_state_dict(path)
    spec = detect_checkpoint({k: tuple(v.shape) for k, v in state_dict.items()}, path.name)
    prediction = _prediction_type(path, spec, sd2_prediction)
    unet = _instantiate(
        UNet2DConditionModel,
        spec.unet_config,
        convert_ldm_unet_checkpoint(state_dict, spec.unet_config),
        path.name,
        upcast_attention=spec.family is SD2 and prediction == "v_prediction",
    )
    vae = None
    if spec.vae_config is not None:
        vae = _instantiate(
            AutoencoderKL, spec.vae_config, convert_ldm_vae_checkpoint(state_dict, spec.vae_config), path.name
        )
    else:
        log.warning("%s has no VAE; it needs one from models/VAE.", path.name)
    encoders = [_text_encoder(state_dict, enc, path.name) for enc in spec.text_encoders]
    del state_dict
    scheduler_config = dict(spec.family.scheduler_config, prediction_type=prediction)
    if spec.zero_terminal_snr:
        scheduler_config["rescale_betas_zero_snr"] = True
    pipeline = _assemble(spec.family, spec.is_inpainting, unet, vae, encoders, scheduler_config)
    return LoadedCheckpoint(path, spec.family, pipeline, vae, spec.is_inpainting, prediction, scheduler_config)


def _prediction_type(path: Path, spec: CheckpointSpec, sd2_prediction: str) -> str:
    """v-prediction is invisible in the weights: a `v_pred` key, a same-named .yaml (A1111's habit), or a setting."""
    if spec.prediction_type == "v_prediction":
        return "v_prediction"
    yaml_path = path.with_suffix(".yaml")
    if yaml_path.is_file():
        text = yaml_path.read_text(encoding="utf-8", errors="replace")
        return "v_prediction" if re.search(r"parameterization:\s*[\"']?v\b", text) else "epsilon"
    return sd2_prediction if spec.family is SD2 else "epsilon"


def _instantiate(cls, config: dict, converted: StateDict, name: str, **extra):
    """Build a model on the meta device and assign the file's tensors: no random init of multi-GB weights."""
    with init_empty_weights():
        model = cls(**config, **extra)
    return _assign(model, converted, name)


def _assign(model: torch.nn.Module, converted: StateDict, name: str) -> torch.nn.Module:
    expected = model.state_dict().keys()
    missing = [k for k in expected if k not in converted]
    if missing:
        raise UserError(
            f"{name} is incomplete: {len(missing)} weights of the {type(model).__name__} are missing "
            f"(e.g. {missing[0]}). The file may be truncated or of an unsupported variant."
        )
    try:
        model.load_state_dict({k: converted[k] for k in expected}, strict=True, assign=True)
    except RuntimeError as exc:
        raise UserError(f"{name}: weights do not fit the detected architecture ({str(exc).splitlines()[0]}).") from exc
    return model.eval()


def _text_encoder(state_dict: StateDict, spec: TextEncoderSpec, name: str) -> torch.nn.Module:
    config = CLIPTextConfig(**spec.config, bos_token_id=49406, eos_token_id=49407)
    cls = CLIPTextModelWithProjection if spec.with_projection else CLIPTextModel
    with init_empty_weights():
        model = cls(config)
    if spec.layout == "openclip":
        converted = convert_open_clip_checkpoint(model, state_dict, prefix=spec.prefix)
    else:
        converted = convert_ldm_clip_checkpoint(state_dict, remove_prefix=spec.prefix)
    # Files nest the encoder under "text_model." or not (old SD1 files), and so do transformers' classes
    # (CLIPTextModel's own keys have no "text_model." in transformers 5): compare without it.
    nested = any(k.startswith("text_model.") for k in model.state_dict())
    converted = {_text_key(k, nested): v for k, v in converted.items()}
    return _assign(model, converted, name)


def _text_key(key: str, nested: bool) -> str:
    bare = key.removeprefix("text_model.")
    if bare == key and key.startswith("text_projection"):
        return key
    return f"text_model.{bare}" if nested else bare


def _pipeline_class(family: Family, is_inpainting: bool) -> type[DiffusionPipeline]:
    # 9-channel inpainting UNets need the mask inputs even for txt2img, so their base pipeline is the inpaint one.
    if family is SDXL:
        return StableDiffusionXLInpaintPipeline if is_inpainting else StableDiffusionXLPipeline
    return StableDiffusionInpaintPipeline if is_inpainting else StableDiffusionPipeline


def _assemble(family, is_inpainting, unet, vae, encoders, scheduler_config) -> DiffusionPipeline:
    scheduler = EulerDiscreteScheduler.from_config(scheduler_config)
    cls = _pipeline_class(family, is_inpainting)
    if family is SDXL:
        return cls(
            vae=vae,
            text_encoder=encoders[0],
            text_encoder_2=encoders[1],
            tokenizer=clip_tokenizer(PAD_ENDOFTEXT),
            tokenizer_2=clip_tokenizer(PAD_EXCLAMATION),
            unet=unet,
            scheduler=scheduler,
        )
    return cls(
        vae=vae,
        text_encoder=encoders[0],
        tokenizer=clip_tokenizer(PAD_EXCLAMATION if family is SD2 else PAD_ENDOFTEXT),
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _load_diffusers_folder(path: Path, policy: DevicePolicy) -> LoadedCheckpoint:
    index = path / "model_index.json"
    if not index.is_file():
        raise UserError(f"{path.name} is a folder without model_index.json, so it is not a diffusers model.")
    try:
        unet_config = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path.name}: unreadable diffusers config ({exc}).") from exc
    if unet_config.get("addition_embed_type") == "text_time":
        family = SDXL
    elif unet_config.get("use_linear_projection"):
        family = SD2
    else:
        family = SD1
    is_inpainting = unet_config.get("in_channels") == 9
    extra = {}
    if not (path / "tokenizer").is_dir():
        extra["tokenizer"] = clip_tokenizer(PAD_EXCLAMATION if family is SD2 else PAD_ENDOFTEXT)
    if family is SDXL and not (path / "tokenizer_2").is_dir():
        extra["tokenizer_2"] = clip_tokenizer(PAD_EXCLAMATION)
    if family is not SDXL:
        extra.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cls = _pipeline_class(family, is_inpainting)
    try:
        pipeline = cls.from_pretrained(path, local_files_only=True, **extra)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"{path.name}: could not load the diffusers folder ({str(exc).splitlines()[0]}).") from exc
    prediction = pipeline.scheduler.config.get("prediction_type", "epsilon")
    config = dict(pipeline.scheduler.config)
    return LoadedCheckpoint(path, family, pipeline, pipeline.vae, is_inpainting, prediction, config)


def load_vae(path: Path, family: Family) -> AutoencoderKL:
    """A standalone VAE (original-layout single file as model sites distribute, or a diffusers folder)."""
    path = Path(path)
    if path.is_dir():
        try:
            vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"{path.name}: not a diffusers VAE folder ({str(exc).splitlines()[0]}).") from exc
    else:
        state_dict = load_state_dict(path)
        shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
        prefix = "first_stage_model." if "first_stage_model.encoder.conv_in.weight" in shapes else ""
        if f"{prefix}encoder.conv_in.weight" not in shapes or f"{prefix}decoder.conv_out.weight" not in shapes:
            raise UserError(f"{path.name} is not a VAE: no encoder/decoder weights in the original layout found.")
        config = vae_config_from_ldm(shapes, prefix, family)
        vae = _instantiate(AutoencoderKL, config, convert_ldm_vae_checkpoint(state_dict, config), path.name)
    vae.register_to_config(scaling_factor=family.vae_scaling_factor)
    return vae


SDXL_TIME_EMBED_DIM = 256  # SDXL's size-conditioning embedding width, which a ControlNet file alone cannot show


def load_controlnet(path: Path, policy: DevicePolicy, unet_config: dict) -> ControlNetModel:
    """A ControlNet (original-layout or diffusers-layout single file, or a diffusers folder) on the policy's
    device. `unet_config` is the checkpoint's UNet config: an SDXL ControlNet takes its size-embedding width."""
    path = Path(path)
    if path.is_dir():
        try:
            model = ControlNetModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UserError(f"{path.name}: not a diffusers ControlNet folder ({str(exc).splitlines()[0]}).") from exc
    else:
        state_dict = load_state_dict(path)
        spec = detect_controlnet({k: tuple(v.shape) for k, v in state_dict.items()}, path.name)
        config = dict(spec.config, global_pool_conditions="shuffle" in path.name.lower())
        if "projection_class_embeddings_input_dim" in config:
            same = (
                unet_config.get("projection_class_embeddings_input_dim")
                == config["projection_class_embeddings_input_dim"]
            )
            config["addition_time_embed_dim"] = unet_config["addition_time_embed_dim"] if same else SDXL_TIME_EMBED_DIM
        model = _instantiate(ControlNetModel, config, _controlnet_weights(state_dict, spec, config), path.name)
    return model.to(policy.device, policy.dtype)


def _controlnet_weights(state_dict: StateDict, spec: ControlNetSpec, config: dict) -> StateDict:
    if spec.layout == "diffusers":
        return state_dict
    if spec.prefix:  # the converter strips `control_model.` itself; stripped here too, for the label_emb keys below
        state_dict = {k.removeprefix(spec.prefix): v for k, v in state_dict.items() if k.startswith(spec.prefix)}
    converted = convert_controlnet_checkpoint(state_dict, config)
    # The converter leaves out SDXL's size-conditioning embedding (label_emb in the original layout).
    for ldm, ours in (("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2.")):
        for kind in ("weight", "bias"):
            if ldm + kind in state_dict:
                converted[ours + kind] = state_dict[ldm + kind]
    return {k: v for k, v in converted.items() if v is not None}


def _place(loaded: LoadedCheckpoint, policy: DevicePolicy) -> None:
    pipe = loaded.pipeline
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module) and name != "vae":
            module.to(policy.device, policy.dtype)
    if pipe.vae is not None:
        place_vae(pipe.vae, loaded.family, policy)
    pipe.set_progress_bar_config(disable=True)


def place_vae(vae: AutoencoderKL, family: Family, policy: DevicePolicy) -> None:
    vae.to(policy.device, policy.vae_dtype(family))
    vae.register_to_config(force_upcast=policy.vae_needs_fp32_decode(family))

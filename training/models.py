"""The shipped "shapes" model family: its small SD1-architecture configs, where its files go, and how they are saved."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, DDPMScheduler, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

from core.families import SD1, text_encoder_heads
from core.tokenizers import clip_tokenizer
from training.ldm_export import controlnet_to_ldm, to_ldm_state_dict

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
CHECKPOINT = MODELS / "Stable-diffusion" / "shapes" / "shapes-sd1.safetensors"
CONTROLNET = MODELS / "ControlNet" / "shapes-canny.safetensors"
LORA = MODELS / "Lora" / "shapes-striped.safetensors"
RUNS = ROOT / "training" / "runs"  # resumable training states (not committed)
VAE_WEIGHTS = ROOT / "training" / "weights" / "shapes-vae.safetensors"  # stage 1's result, committed for stage 2
RESOLUTION = 128

TEXT_HIDDEN = 64
TEXT_LAYERS = 3
# SD1's UNet shape, narrow (norm groups need multiples of 32): four levels, 16 x 16 down to 2 x 2 for our 16 x 16
# latents, cross-attention in the middle block. Attention differs from SD1's: none on the 16 x 16 top level (as
# SDXL leaves out its top level's; the loader reads which levels have it from the weights), where 8-head
# self-attention over 256 positions of 64 channels cost a third of each training step here; instead on the 8 x 8 and
# 4 x 4 levels and the 2 x 2 middle.
# Four levels, as SD1 has: a convolution can tell places apart only by the zero padding at the picture's edges, and
# at 2 x 2 each of the middle block's positions touches a different pair of edges. Neither three levels nor four
# learnt places on the diffusion loss alone; train_base's place loss did (with four; three were not tried with it).
UNET_CHANNELS = (64, 128, 128, 128)
UNET_ATTENTION = (False, True, True, False)
VAE_CHANNELS = (32, 64, 64, 64)  # four levels: the 1/8 latent of every SD model


def text_encoder_config() -> CLIPTextConfig:
    """A small OpenAI-CLIP text encoder as our loader rebuilds it from the file (quick_gelu, 64-wide heads)."""
    return CLIPTextConfig(
        vocab_size=49408,  # the real CLIP tokenizer's vocabulary: prompts are tokenized like any SD1 model's
        hidden_size=TEXT_HIDDEN,
        intermediate_size=4 * TEXT_HIDDEN,
        num_hidden_layers=TEXT_LAYERS,
        num_attention_heads=text_encoder_heads(TEXT_HIDDEN),
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=TEXT_HIDDEN,
        pad_token_id=49407,
        bos_token_id=49406,
        eos_token_id=49407,
    )


def unet_config() -> dict:
    return {
        "sample_size": RESOLUTION // 8,
        "in_channels": 4,
        "out_channels": 4,
        "block_out_channels": list(UNET_CHANNELS),
        "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in UNET_ATTENTION],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(UNET_ATTENTION)],
        "norm_num_groups": 32,
        "attention_head_dim": SD1.unet_heads(list(UNET_CHANNELS)),
        "cross_attention_dim": TEXT_HIDDEN,
        "use_linear_projection": False,
    }


def vae_config() -> dict:
    levels = len(VAE_CHANNELS)
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": list(VAE_CHANNELS),
        "layers_per_block": 1,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": RESOLUTION,
        "scaling_factor": SD1.vae_scaling_factor,
    }


def new_vae(seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**vae_config())


def new_text_encoder(seed: int) -> CLIPTextModel:
    torch.manual_seed(seed)
    return CLIPTextModel(text_encoder_config())


def new_unet(seed: int) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(**unet_config())


def noise_scheduler() -> DDPMScheduler:
    """The training noise schedule: SD1's, which the loader gives every SD1 checkpoint's samplers."""
    config = SD1.scheduler_config
    return DDPMScheduler(
        num_train_timesteps=config["num_train_timesteps"],
        beta_start=config["beta_start"],
        beta_end=config["beta_end"],
        beta_schedule=config["beta_schedule"],
        prediction_type="epsilon",
    )


def tokenize(captions: list[str]) -> torch.Tensor:
    """Token ids as every SD1 checkpoint sees them: the real CLIP tokenizer, padded to 77."""
    return clip_tokenizer()(
        captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt"
    ).input_ids


def normalise_vae_scale(vae: AutoencoderKL, latent_std: float) -> None:
    """Rescale the trained VAE's latent space so that latents x SD1's scaling factor (0.18215, which our loader
    uses for every SD1 checkpoint) have unit variance, as real SD1 latents do. The encoder's mean channels are
    multiplied and the decoder's input divided by the same factor: decoding is unchanged."""
    factor = 1.0 / (SD1.vae_scaling_factor * latent_std)
    with torch.no_grad():
        channels = vae.config.latent_channels
        vae.quant_conv.weight[:channels] *= factor
        vae.quant_conv.bias[:channels] *= factor
        vae.quant_conv.bias[channels:] += 2 * torch.log(torch.tensor(factor))  # log-variance of the scaled mean
        vae.post_quant_conv.weight /= factor


METADATA = {
    "modelspec.architecture": "stable-diffusion-v1",
    "modelspec.resolution": f"{RESOLUTION}x{RESOLUTION}",
    "modelspec.title": "SD Studio shapes",
    "modelspec.description": "Tiny SD1-architecture model trained by training/ on procedural shape scenes.",
    "modelspec.license": "MIT",
}


def save_checkpoint(path: Path, unet: UNet2DConditionModel, vae: AutoencoderKL, text_encoder: CLIPTextModel) -> None:
    """A single-file SD1 checkpoint in the original LDM key layout, fp16 (as model sites ship them)."""
    state = to_ldm_state_dict("SD1", {"unet": unet, "vae": vae, "text_encoder": text_encoder})
    _save_half(state, path, METADATA)


def save_controlnet(path: Path, controlnet: ControlNetModel) -> None:
    _save_half(controlnet_to_ldm(controlnet), path, {**METADATA, "modelspec.title": "SD Studio shapes canny"})


def _save_half(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(half, str(tmp), metadata=metadata)
    tmp.replace(path)


def load_frozen_base(where: torch.device):
    """Stage 2's checkpoint loaded exactly as the app loads it (fp32), its UNet and text encoder frozen on `where`:
    the pipeline that the ControlNet and the LoRA are trained against."""
    from core.devices import choose_policy
    from core.loader import load_checkpoint

    pipeline = load_checkpoint(CHECKPOINT, choose_policy("cpu", "fp32")).pipeline
    for module in (pipeline.unet, pipeline.text_encoder):
        module.to(where).requires_grad_(False)
    return pipeline


def save_vae_weights(vae: AutoencoderKL) -> None:
    """Stage 1's VAE (diffusers layout, fp16), kept in the repository so later stages can run without it."""
    _save_half(vae.state_dict(), VAE_WEIGHTS, {**METADATA, "modelspec.title": "SD Studio shapes VAE"})


def load_vae_weights() -> AutoencoderKL:
    from safetensors.torch import load_file

    vae = new_vae(0)
    vae.load_state_dict({k: v.float() for k, v in load_file(str(VAE_WEIGHTS)).items()})
    return vae.eval().requires_grad_(False)

"""The model families we support, declared once: what the weights cannot tell us about each."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    """Facts of one family that are conventions rather than tensor shapes."""

    id: str  # short id used in code and caches: "SD1", "SD2", "SDXL"
    label: str  # what users see: "SD1.x"
    vae_scaling_factor: float
    default_size: int  # pixels per side the family was trained at
    # UNet attention heads cannot be read from weights: SD1 uses a fixed head count, SD2/SDXL 64-wide heads.
    unet_fixed_heads: int | None
    unet_head_width: int | None
    pad_token_2: str | None = None  # pad token of the second text encoder (SDXL)
    # Diffusers scheduler config every sampler of this family starts from (the LDM training schedule).
    scheduler_config: dict = field(
        default_factory=lambda: {
            "num_train_timesteps": 1000,
            "beta_start": 0.00085,
            "beta_end": 0.012,
            "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon",
            "steps_offset": 1,
            "timestep_spacing": "leading",
            "clip_sample": False,
            "set_alpha_to_one": False,
        }
    )
    # Cheap latent → RGB preview: rgb = latent_channels @ factors + bias (from ComfyUI's latent_formats.py).
    latent_rgb_factors: tuple[tuple[float, float, float], ...] = ()
    latent_rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def unet_heads(self, block_channels: list[int]) -> int | list[int]:
        """diffusers' `attention_head_dim` (which, for these UNets, is the number of heads)."""
        if self.unet_fixed_heads is not None:
            return self.unet_fixed_heads
        return [max(1, c // self.unet_head_width) for c in block_channels]


def text_encoder_heads(hidden_size: int) -> int:
    """CLIP-L, OpenCLIP ViT-H and bigG all use 64-wide heads; heads are not visible in the weights."""
    return max(1, hidden_size // 64)


SD_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SDXL_LATENT_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)

SD1 = Family("SD1", "SD1.x", 0.18215, 512, unet_fixed_heads=8, unet_head_width=None, latent_rgb_factors=SD_LATENT_RGB)
SD2 = Family("SD2", "SD2.x", 0.18215, 768, unet_fixed_heads=None, unet_head_width=64, latent_rgb_factors=SD_LATENT_RGB)
SDXL = Family(
    "SDXL",
    "SDXL",
    0.13025,
    1024,
    unet_fixed_heads=None,
    unet_head_width=64,
    pad_token_2="!",
    latent_rgb_factors=SDXL_LATENT_RGB,
    latent_rgb_bias=(0.1084, -0.0175, -0.0011),
)

FAMILIES = {f.id: f for f in (SD1, SD2, SDXL)}

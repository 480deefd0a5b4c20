"""How a job's models are placed in the device's memory, decided from its free memory and the model's size.

The levels, from fastest to smallest (A1111's flags force one: --medvram → 2, --lowvram → 4; --medvram-sdxl → 2
for SDXL only):
  1 "all on GPU"                 every model stays on the device
  2 "offload between uses"       text encoders and VAE leave the device while the UNet runs (model CPU offload)
  3 "UNet group offload"         the UNet too is streamed in groups of blocks (diffusers' group offloading)
  4 "sequential offload"         every layer is moved in just before it runs (the last resort)
and, separately, whether the VAE decodes (and encodes) in tiles: above the size whose untiled decode would not fit.

Only the decisions live here (pure functions of the figures, so they are unit-tested with the free memory supplied);
the worker applies them. The estimates are fp16 figures of the real models, with the activations of SDPA attention
at the job's size; they err on the side of the next level (a level too low costs speed, one too high an OOM)."""

from __future__ import annotations

from dataclasses import dataclass

GB = 1024**3

ALL_ON_GPU, OFFLOAD_BETWEEN_USES, UNET_GROUP_OFFLOAD, SEQUENTIAL_OFFLOAD = 1, 2, 3, 4
LEVEL_NAMES = {
    ALL_ON_GPU: "all on GPU",
    OFFLOAD_BETWEEN_USES: "text encoders and VAE offloaded between uses",
    UNET_GROUP_OFFLOAD: "UNet streamed in groups of blocks",
    SEQUENTIAL_OFFLOAD: "every layer offloaded (slowest)",
}
FORCED_LEVELS = {"medvram": OFFLOAD_BETWEEN_USES, "medvram-sdxl": OFFLOAD_BETWEEN_USES, "lowvram": SEQUENTIAL_OFFLOAD}

HEADROOM = int(0.75 * GB)  # CUDA context growth, the allocator's fragmentation, a preview decode


@dataclass(frozen=True)
class ModelSize:
    """Bytes of each part on the device at the precision it runs in."""

    unet: int
    text_encoders: int
    vae: int
    unet_activation_per_megapixel: int  # one UNet call (CFG: two images) per megapixel of output
    vae_decode_per_megapixel: int  # an untiled decode per megapixel of output, per image

    @property
    def total(self) -> int:
        return self.unet + self.text_encoders + self.vae


# fp16 sizes of the real models (diffusers' safetensors) and activation peaks measured with SDPA on an A100
# (SD1.5 512² ≈ 0.6 GB per UNet call; SDXL 1024² ≈ 1.7 GB; VAE decode 512² ≈ 1.3 GB, 1024² ≈ 5 GB).
SD15_SIZE = ModelSize(
    unet=int(1.72 * GB), text_encoders=int(0.25 * GB), vae=int(0.16 * GB),
    unet_activation_per_megapixel=int(2.3 * GB), vae_decode_per_megapixel=int(5.0 * GB),
)  # fmt: skip
SDXL_SIZE = ModelSize(
    unet=int(5.14 * GB), text_encoders=int(1.62 * GB), vae=int(0.16 * GB),
    unet_activation_per_megapixel=int(1.7 * GB), vae_decode_per_megapixel=int(5.0 * GB),
)  # fmt: skip


@dataclass(frozen=True)
class MemoryPlan:
    level: int
    tiled_vae: bool
    reason: str  # why, in the user's words ("5.2 GB free", "--lowvram")

    @property
    def name(self) -> str:
        return LEVEL_NAMES[self.level]


def plan_memory(
    free_bytes: int | None,
    size: ModelSize,
    width: int,
    height: int,
    batch_size: int = 1,
    forced: str | None = None,
    is_sdxl: bool = False,
) -> MemoryPlan:
    """The fastest level whose peak fits in `free_bytes` (None: no limit known, e.g. the CPU)."""
    megapixels = width * height / 1e6
    activations = int(size.unet_activation_per_megapixel * megapixels * batch_size)
    decode = int(size.vae_decode_per_megapixel * megapixels)  # decoded one image at a time (VAE slicing)
    if forced and (forced != "medvram-sdxl" or is_sdxl):
        level = FORCED_LEVELS[forced]
        return MemoryPlan(level, _needs_tiles(free_bytes, decode, size, level), f"--{forced}")
    if free_bytes is None:
        return MemoryPlan(ALL_ON_GPU, False, "no memory limit known")
    free = free_bytes - HEADROOM
    free_gb = f"{free_bytes / GB:.1f} GB free"
    if size.total + activations <= free:
        level = ALL_ON_GPU
    elif size.unet + activations <= free:
        level = OFFLOAD_BETWEEN_USES
    elif activations + size.unet // 4 <= free:  # a quarter of the UNet's blocks resident at a time, streamed
        level = UNET_GROUP_OFFLOAD
    else:
        level = SEQUENTIAL_OFFLOAD
    return MemoryPlan(level, _needs_tiles(free_bytes, decode, size, level), free_gb)


def _needs_tiles(free_bytes: int | None, decode: int, size: ModelSize, level: int) -> bool:
    """Tiles when the untiled decode would not fit next to what stays on the device while it runs."""
    if free_bytes is None:
        return False
    resident = size.total if level == ALL_ON_GPU else size.vae
    return resident + decode > free_bytes - HEADROOM


def model_size(family_name: str) -> ModelSize:
    return SDXL_SIZE if family_name == "SDXL" else SD15_SIZE

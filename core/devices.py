"""Device, dtype and memory policy: the only place that decides where and in what precision models run."""

from __future__ import annotations

import gc
from dataclasses import dataclass

import torch

from core.errors import UserError
from core.families import SDXL, Family

PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class DevicePolicy:
    """Where models run and in which precision, plus a note the UI shows (e.g. the CPU fallback)."""

    device: torch.device
    dtype: torch.dtype
    note: str = ""
    memory_flag: str | None = None  # A1111's --medvram, --medvram-sdxl or --lowvram (core.memory_policy), unprefixed

    @property
    def precision_name(self) -> str:
        return next(name for name, dtype in PRECISIONS.items() if dtype == self.dtype)

    def vae_dtype(self, family: Family) -> torch.dtype:
        """SDXL's VAE overflows fp16 (NaNs → black images); bf16 has fp32's range at fp16's speed where supported."""
        if family is SDXL and self.dtype == torch.float16 and _bf16_supported(self.device):
            return torch.bfloat16
        return self.dtype

    def vae_needs_fp32_decode(self, family: Family) -> bool:
        """True where SDXL's VAE would run in fp16: then decoding is upcast to fp32 (diffusers' force_upcast)."""
        return family is SDXL and self.vae_dtype(family) == torch.float16


def choose_policy(device: str = "auto", precision: str = "auto", memory_flag: str | None = None) -> DevicePolicy:
    """Pick CUDA in fp16 when present, else the CPU in fp32; `--device` and `--precision` override.
    `memory_flag` forces a memory level (A1111's --medvram, --medvram-sdxl, --lowvram, without the dashes)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was given but no CUDA GPU is available; use --device cpu.")
    if precision == "auto":
        precision = "fp16" if dev.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise UserError(f"Unknown precision {precision!r}; use auto, fp16, bf16 or fp32.")
    note = ""
    if dev.type == "cpu":
        note = "Running on the CPU (no CUDA GPU found): generation works but is slow."
        if precision == "fp16":
            note += " fp16 on the CPU is slower still; fp32 is recommended."
    return DevicePolicy(dev, PRECISIONS[precision], note, memory_flag)


def _bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def release_memory(device: torch.device) -> None:
    """Return freed memory to the system after models are evicted."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still allocate (CUDA's own figure plus what torch holds cached), None where no limit
    is known (the CPU)."""
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def bytes_on(modules, device: torch.device) -> int:
    """Bytes of the modules' weights that are on `device` now (they count as free for the memory plan: the plan
    decides where they go)."""
    total = 0
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            if tensor.device.type == device.type and device.index in (None, tensor.device.index):
                total += tensor.numel() * tensor.element_size()
    return total


def is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()

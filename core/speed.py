"""The speed options of Settings → Optimisations (each also a flag), applied to a job's pipeline in the worker:

  channels_last   the UNet's and VAE's convolution weights in channels-last memory order (faster convolutions on
                  GPUs with tensor cores; the same arithmetic)
  fused_qkv       diffusers' fuse_qkv_projections: one matmul for attention's query, key and value
  compile         torch.compile of the UNet's blocks and the VAE's decoder, one graph per output size, kept for the
                  jobs that follow ("regional" compilation: each down/mid/up block on its own, as diffusers
                  recommends for UNets, compiles several times faster than the whole UNet and composes with the step
                  cache, which replays whole blocks)
  fp8_unet        the UNet's weights stored in fp8 and computed in the job's precision (diffusers'
                  enable_layerwise_casting): about half the UNet's memory, slightly different pixels. Applied when a
                  checkpoint loads (core.model_cache), as it rewrites the weights.

SDPA attention is diffusers' default and always on. The options apply when every model stays on the device (memory
level 1): offloading moves the weights between jobs and steps, which undoes the memory order and would recompile.
Where they cannot apply (an option off, offloading, a LoRA on fused projections) they are undone, so a job runs the
same whatever the previous one used."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

COMPILE_RECOMPILE_LIMIT = 64  # graphs per block: sizes × LoRA sets a long session uses (torch's default is 8)


@dataclass(frozen=True)
class SpeedOptions:
    channels_last: bool = False
    fused_qkv: bool = False
    compile: bool = False
    fp8_unet: bool = False

    @classmethod
    def from_settings(cls, values: dict) -> SpeedOptions:
        return cls(
            channels_last=bool(values.get("channels_last", False)),
            fused_qkv=bool(values.get("fused_qkv", False)),
            compile=bool(values.get("compile_unet", False)),
            fp8_unet=bool(values.get("fp8_unet", False)),
        )

    @property
    def any_on_modules(self) -> bool:
        return self.channels_last or self.fused_qkv or self.compile


_APPLIED = "_speed_options_applied"  # on each module: the names of the options it has now


def _applied(module) -> set[str]:
    if not hasattr(module, _APPLIED):
        setattr(module, _APPLIED, set())
    return getattr(module, _APPLIED)


def undo_speed_options(modules) -> None:
    """Every module back to plain (before offloading, and for a job that wants none)."""
    for module in modules:
        if module is not None:
            _set(module, "channels_last", False)
            _set(module, "fused_qkv", False)
            _set(module, "compile", False)


def apply_speed_options(unet, vae, options: SpeedOptions, can_fuse: bool) -> None:
    """Bring the UNet and VAE to `options` (only what differs from their current state is done). `can_fuse`:
    False when a LoRA is active on the UNet (its adapters sit on the separate query/key/value projections) or its
    weights are stored in fp8 (a fused projection would be a new layer without the upcast)."""
    for module in (unet, vae):
        if module is not None:
            _set(module, "channels_last", options.channels_last)
            _set(module, "fused_qkv", options.fused_qkv and (can_fuse or module is not unet))
            _set(module, "compile", options.compile)


def _set(module, option: str, on: bool) -> None:
    applied = _applied(module)
    if on == (option in applied):
        return
    if option == "channels_last":
        # torch's own .to(): diffusers' warns about fp32 modules on every call
        torch.nn.Module.to(module, memory_format=torch.channels_last if on else torch.contiguous_format)
    elif option == "fused_qkv":
        module.fuse_qkv_projections() if on else module.unfuse_qkv_projections()
    else:
        _compile(module, on)
    applied.add(option) if on else applied.discard(option)


def _compile(module, on: bool) -> None:
    blocks = list(_unet_blocks(module)) if hasattr(module, "down_blocks") else [module.decoder]
    if not on:
        for block in blocks:
            del block.forward  # back to the class's forward (the graphs stay in torch's cache)
        return
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, COMPILE_RECOMPILE_LIMIT)
    for block in blocks:
        # The bound class forward, compiled, as an instance attribute: hooks that wrap `forward` for one job
        # (core.step_cache) wrap the compiled one and give it back afterwards.
        block.forward = torch.compile(type(block).forward.__get__(block), dynamic=False)


COMPILING_NOTICE = "Compiling the UNet and VAE for this size (once per size; later jobs at this size are faster)…"


def _unet_blocks(unet):
    yield from unet.down_blocks
    if unet.mid_block is not None:
        yield unet.mid_block
    yield from unet.up_blocks


def store_fp8(unet: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """The UNet's weights kept in fp8 (e4m3), each layer upcast to `compute_dtype` as it runs."""
    unet.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute_dtype)


def adapters_in_compute_dtype(unet: torch.nn.Module, compute_dtype: torch.dtype) -> None:
    """A LoRA loaded into an fp8 UNet: peft gives its adapters the base layer's dtype (fp8 here), in which nothing
    computes; they are small, so they are kept in the compute dtype instead."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in unet.modules():
        if not isinstance(module, BaseTunerLayer):
            continue
        for name in module.adapter_layer_names:
            for tensor in getattr(module, name).parameters():
                if tensor.dtype == torch.float8_e4m3fn:
                    tensor.data = tensor.data.to(compute_dtype)

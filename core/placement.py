"""Puts a job's pipeline in the device's memory as the memory plan's level says (core.memory_policy decides; this
applies), through diffusers' own offloading:

  1 all on the device                 every module moved there, no hooks
  2 offload between uses              enable_model_cpu_offload: each model comes to the device when it runs
  3 UNet streamed in groups of blocks enable_group_offload, block level (one block per group), CUDA streams
  4 every layer offloaded             enable_group_offload, leaf level: sequential offload's memory, but it keeps
                                      weights on the CPU (not on torch's "meta" device as accelerate's sequential
                                      offload does), so loading an embedding or a LoRA into the modules still works

The img2img, inpaint and ControlNet pipelines of a checkpoint share its modules (core.jobs), and the hooks live on
the modules: each job's pipeline is placed before it runs, and a placement is redone only when the level, the
pipeline or one of its modules (another VAE, ControlNet) changed since the last one."""

from __future__ import annotations

import logging

import torch
from diffusers.hooks.group_offloading import (
    _GROUP_OFFLOADING,
    _LAYER_EXECUTION_TRACKER,
    _LAZY_PREFETCH_GROUP_OFFLOADING,
)

from core.memory_policy import ALL_ON_GPU, OFFLOAD_BETWEEN_USES, SEQUENTIAL_OFFLOAD, UNET_GROUP_OFFLOAD

log = logging.getLogger(__name__)


def _modules(pipe) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in pipe.components.items() if isinstance(m, torch.nn.Module)}


def placement_key(pipe, level: int) -> tuple:
    return (id(pipe), level, tuple(sorted((name, id(m)) for name, m in _modules(pipe).items())))


def place_pipeline(pipe, level: int, device: torch.device, placed: dict) -> bool:
    """Hooks for `level` on `pipe`'s modules (`placed` remembers the last placement of the checkpoint's modules;
    keep one per checkpoint). True when something changed."""
    key = placement_key(pipe, level)
    if placed.get("key") == key:
        return False
    for previous in placed.pop("pipes", []):
        _remove_offloading(previous)
    _remove_offloading(pipe)
    if level == ALL_ON_GPU:
        for module in _modules(pipe).values():
            torch.nn.Module.to(module, device)  # torch's own: diffusers' .to() warns about dtypes on every move
    elif level == OFFLOAD_BETWEEN_USES:
        pipe.enable_model_cpu_offload(device=device)
    elif level in (UNET_GROUP_OFFLOAD, SEQUENTIAL_OFFLOAD):
        streamed = device.type == "cuda"  # the next group's transfer overlaps the current one's compute
        leaf = level == SEQUENTIAL_OFFLOAD
        pipe.enable_group_offload(
            onload_device=device,
            offload_device=torch.device("cpu"),
            offload_type="leaf_level" if leaf else "block_level",
            num_blocks_per_group=None if leaf else 1,
            use_stream=streamed,
            non_blocking=streamed,
        )
    placed.update(key=key, pipes=[pipe])
    log.info("Memory level %d for %s", level, type(pipe).__name__)
    return True


def lift_placement(placed: dict) -> None:
    """The checkpoint's modules without offloading hooks until the next placement (before a LoRA loads into them:
    diffusers would otherwise lift and re-apply its offloading itself, on the default GPU rather than this worker's)."""
    for pipe in placed.pop("pipes", []):
        _remove_offloading(pipe)
    placed.pop("key", None)


def offloaded(module: torch.nn.Module) -> bool:
    """Whether diffusers' or accelerate's offloading hooks are on the module (for tests and the bench)."""
    for part in module.modules():  # leaf-level offloading hooks the leaves only
        registry = getattr(part, "_diffusers_hook", None)
        if hasattr(part, "_hf_hook") or (registry is not None and registry.get_hook(_GROUP_OFFLOADING) is not None):
            return True
    return False


def _remove_offloading(pipe) -> None:
    """Back to plain modules (weights wherever the hooks left them; the next placement moves them)."""
    pipe.remove_all_hooks()  # accelerate's (model CPU offload); also forgets the offload chain
    for module in _modules(pipe).values():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None:
            continue
        for name in (_GROUP_OFFLOADING, _LAYER_EXECUTION_TRACKER, _LAZY_PREFETCH_GROUP_OFFLOADING):
            registry.remove_hook(name, recurse=True)

"""Keeps recently used checkpoints and VAEs loaded (LRU), so switching back is cheap, and frees evicted ones."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from diffusers import AutoencoderKL, ControlNetModel

from core.devices import DevicePolicy, release_memory
from core.errors import UserError
from core.families import FAMILIES, SD1, SD2, SDXL, Family
from core.loader import LoadedCheckpoint, load_checkpoint, load_controlnet, load_vae, place_vae
from core.preprocessors import Annotators
from core.registry import ModelEntry, ModelRegistry
from core.request import MAX_CONTROLNET_UNITS
from core.speed import store_fp8

log = logging.getLogger(__name__)

VAE_SUFFIXES = (".vae.safetensors", ".vae.pt", ".vae.ckpt")


@dataclass(frozen=True)
class ActiveModel:
    """The checkpoint a job runs with, and how to name it and its VAE in the infotext."""

    loaded: LoadedCheckpoint
    entry: ModelEntry
    model_hash: str | None
    vae_name: str | None
    vae_hash: str | None


class ModelCache:
    """LRU of loaded checkpoints; its size is read from `capacity()` each time so a settings change applies."""

    def __init__(
        self,
        registry: ModelRegistry,
        policy: DevicePolicy,
        capacity: Callable[[], int],
        sd2_prediction,
        fp8_unet: Callable[[], bool] = lambda: False,
    ):
        self.registry = registry
        self.fp8_unet = fp8_unet
        self.policy = policy
        self.capacity = capacity
        self.sd2_prediction = sd2_prediction
        self._checkpoints: OrderedDict[Path, LoadedCheckpoint] = OrderedDict()
        self._vaes: OrderedDict[tuple[Path, str], AutoencoderKL] = OrderedDict()
        self._controlnets: OrderedDict[tuple[Path, str], ControlNetModel] = OrderedDict()
        self.annotators = Annotators(registry.folder("annotator"), str(policy.device))
        self.last_load_seconds = 0.0

    def activate(self, checkpoint: str, vae: str = "Automatic") -> ActiveModel:
        """Load (or reuse) the checkpoint and put the chosen VAE in it."""
        entry = self.registry.find("checkpoint", checkpoint)
        loaded = self._checkpoint(entry)
        vae_entry = self._vae_entry(entry, vae)
        if vae_entry is None:
            if loaded.own_vae is None:
                raise UserError(f"{entry.name} contains no VAE: choose one from models/VAE in the VAE dropdown.")
            loaded.pipeline.vae = loaded.own_vae
            vae_name = vae_hash = None
        else:
            loaded.pipeline.vae = self._vae(vae_entry, loaded)
            # A1111 writes the VAE's file name (no subfolder) in the infotext.
            vae_name, vae_hash = Path(vae_entry.name).name, self.registry.short_hash(vae_entry)
        return ActiveModel(loaded, entry, self.registry.short_hash(entry), vae_name, vae_hash)

    def _checkpoint(self, entry: ModelEntry) -> LoadedCheckpoint:
        fp8 = self.fp8_unet()
        cached = self._checkpoints.get(entry.path)
        if cached is not None and cached.fp8_unet == fp8:
            self._checkpoints.move_to_end(entry.path)
            return cached
        if cached is not None:  # the fp8 setting changed: fp8 storage rewrote the weights, so load them again
            del self._checkpoints[entry.path]
            release_memory(self.policy.device)
        self._evict(self._checkpoints, max(0, self.capacity() - 1))
        started = time.perf_counter()
        loaded = load_checkpoint(entry.path, self.policy, self.sd2_prediction())
        if fp8:
            store_fp8(loaded.pipeline.unet, self.policy.dtype)
            loaded.fp8_unet = True
        self.last_load_seconds = time.perf_counter() - started
        log.info("Loaded %s (%s) in %.1f s", entry.name, loaded.description, self.last_load_seconds)
        self.registry.remember_family(entry, loaded.description)
        self._checkpoints[entry.path] = loaded
        return loaded

    def _vae_entry(self, checkpoint: ModelEntry, choice: str) -> ModelEntry | None:
        if choice == "None":
            return None
        if choice != "Automatic":
            return self.registry.find("vae", choice)
        # A1111's "Automatic": a VAE named like the checkpoint, beside it or in models/VAE.
        stem = Path(checkpoint.name).stem
        for candidate in self.registry.list("vae"):
            if any(candidate.path.name == stem + suffix for suffix in VAE_SUFFIXES):
                return candidate
        for suffix in VAE_SUFFIXES:
            beside = checkpoint.path.with_name(stem + suffix)
            if beside.is_file():
                return ModelEntry("vae", beside.name, beside)
        return None

    def _vae(self, entry: ModelEntry, loaded: LoadedCheckpoint) -> AutoencoderKL:
        key = (entry.path, loaded.family.id)
        if key not in self._vaes:
            self._evict(self._vaes, 1)
            vae = load_vae(entry.path, loaded.family)
            place_vae(vae, loaded.family, self.policy)
            self._vaes[key] = vae
        self._vaes.move_to_end(key)
        return self._vaes[key]

    def controlnet(self, name: str, active: ActiveModel) -> ControlNetModel:
        """The named ControlNet, loaded for the active checkpoint (or reused). A ControlNet of another family
        than the checkpoint's is refused."""
        entry = self.registry.find("controlnet", name)
        self._check_family(entry, self.registry.family_label(entry), active)
        loaded = active.loaded
        key = (entry.path, loaded.family.id)
        if key not in self._controlnets:
            # One per unit at most is needed at once; more would only hold memory.
            self._evict(self._controlnets, MAX_CONTROLNET_UNITS - 1)
            model = load_controlnet(entry.path, self.policy, dict(loaded.pipeline.unet.config))
            label = controlnet_family(model.config).label
            self.registry.remember_family(entry, label)
            self._check_family(entry, label, active)
            self._controlnets[key] = model
        self._controlnets.move_to_end(key)
        return self._controlnets[key]

    def controlnet_title(self, name: str) -> str:
        """How the infotext names a ControlNet, as sd-webui-controlnet: "file stem [short hash]"."""
        entry = self.registry.find("controlnet", name)
        short = self.registry.short_hash(entry)
        return f"{entry.stem} [{short}]" if short else entry.stem

    @staticmethod
    def _check_family(entry: ModelEntry, label: str, active: ActiveModel) -> None:
        family = active.loaded.family
        if label in (f.label for f in FAMILIES.values()) and label != family.label:
            raise UserError(
                f"ControlNet '{entry.name}' is for {label} but the checkpoint '{active.entry.name}' is "
                f"{family.label}: pick a ControlNet made for {family.label}."
            )

    def _evict(self, cache: OrderedDict, keep: int) -> None:
        evicted = False
        while len(cache) > keep:
            key, _ = cache.popitem(last=False)
            log.info("Unloaded %s", key)
            evicted = True
        if evicted:
            release_memory(self.policy.device)

    def loaded_names(self) -> list[str]:
        """The loaded checkpoints as requests name them (relative to models/Stable-diffusion, "/" separators)."""
        root = self.registry.folder("checkpoint")
        return [p.relative_to(root).as_posix() if p.is_relative_to(root) else p.name for p in self._checkpoints]


def controlnet_family(config) -> Family:
    """A loaded ControlNet's family, from its config as detect_controlnet tells it from the tensors."""
    if config.get("addition_embed_type") == "text_time":
        return SDXL
    return SD2 if config.get("use_linear_projection") else SD1

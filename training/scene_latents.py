"""Training scenes made once and cached: their VAE latents, two captions' token ids each, and their canny maps."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from training.models import RESOLUTION, tokenize
from training.run_state import log
from training.scenes import canny_map, caption, random_scene, render

CAPTIONS_PER_SCENE = 2
ENCODE_BATCH = 32


@dataclass(frozen=True)
class SceneLatents:
    latents: torch.Tensor  # [N, 4, 16, 16], already multiplied by the VAE's scaling factor
    tokens: torch.Tensor  # [N, CAPTIONS_PER_SCENE, 77]
    empty_tokens: torch.Tensor  # [77]: the empty caption
    edges: torch.Tensor | None = None  # [N, 1, 128, 128] uint8 canny maps of the same pictures

    def to(self, device) -> SceneLatents:
        return replace(self, latents=self.latents.to(device))


def scene_latents(path: Path, vae, count: int, seed: int, *, style: str = "plain", edges: bool = False) -> SceneLatents:
    """The cached set at `path`, or made now (rendered, encoded by `vae`, tokenized) and saved there."""
    if path.exists():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["latents"].shape[0] == count and (saved.get("edges") is not None) == edges:
            return SceneLatents(saved["latents"], saved["tokens"], saved["empty_tokens"], saved.get("edges"))
    log.info("rendering and encoding %d %s scenes (once) for %s", count, style, path.parent.name)
    rng = random.Random(seed)
    latents, captions, maps = [], [], []
    for start in range(0, count, ENCODE_BATCH):
        scenes = [random_scene(rng, two_objects_fraction=0.3) for _ in range(min(ENCODE_BATCH, count - start))]
        images = [render(scene, RESOLUTION, style) for scene in scenes]
        captions += [caption(scene, rng) for scene in scenes for _ in range(CAPTIONS_PER_SCENE)]
        if edges:
            maps += [np.asarray(canny_map(image))[None, :, :, 0] for image in images]
        latents.append(_encode(vae, images))
        if start % (ENCODE_BATCH * 40) == 0:
            log.info("  %d / %d", start, count)
    data = {
        "latents": torch.cat(latents),
        "tokens": tokenize(captions).view(count, CAPTIONS_PER_SCENE, -1),
        "empty_tokens": tokenize([""])[0],
        "edges": torch.from_numpy(np.stack(maps)) if edges else None,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return SceneLatents(data["latents"], data["tokens"], data["empty_tokens"], data["edges"])


@torch.no_grad()
def _encode(vae, images) -> torch.Tensor:
    pixels = torch.from_numpy(np.stack([np.asarray(i, dtype=np.float32) for i in images])).permute(0, 3, 1, 2)
    pixels = (pixels / 127.5 - 1).to(vae.device)
    return (vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor).cpu()

"""The VAE's decode and encode within the device's memory: tiled when the plan says an untiled pass would not fit,
and always retried once in tiles when a pass runs out of memory (then the job's own out-of-memory message).

The tiles are core.vae_tiles' (GroupNorm statistics shared by all tiles, attention untiled: the untiled picture),
through diffusers' AutoencoderKL tiling switch (`use_tiling`, which takes the tiled path above one tile's size); what
no library does is the retry, because the decode happens inside the pipeline's __call__. Wrapping the VAE
instance's `decode` and `encode` (as core.previews wraps the scheduler's `step`) is the smallest hook that reaches it
without copying the pipelines' decode code (latents' scaling, SDXL's fp32 upcast, post-processing)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

from core import vae_tiles
from core.devices import is_out_of_memory, release_memory

RETRY_NOTICE = "The VAE ran out of memory at this size; it was run again in tiles."


@contextlib.contextmanager
def vae_within_memory(vae, tiled: bool, device, notify: Callable[[str], None]) -> Iterator[None]:
    """For one job: tiling on when `tiled`, and every decode/encode that runs out of memory retried tiled once.
    The VAE is left as it was found (it is shared by the jobs that follow)."""
    if vae is None or not hasattr(vae, "use_tiling"):
        yield
        return
    was_tiled = vae.use_tiling
    vae.use_tiling = was_tiled or tiled
    synchronised = vae_tiles.supported(vae)
    if synchronised:
        vae_tiles.install(vae)  # tiles that give the untiled picture, not diffusers' blended ones
    originals = {name: getattr(vae, name) for name in ("decode", "encode") if name in vars(type(vae))}
    for name, original in originals.items():
        setattr(vae, name, _retried_tiled(vae, original, device, notify))
    try:
        yield
    finally:
        for name in originals:
            delattr(vae, name)  # back to the class's method
        if synchronised:
            vae_tiles.uninstall(vae)
        vae.use_tiling = was_tiled


def _retried_tiled(vae, original, device, notify: Callable[[str], None]):
    @functools.wraps(original)
    def run(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except Exception as exc:
            if vae.use_tiling or not is_out_of_memory(exc):
                raise
        release_memory(device)
        notify(RETRY_NOTICE)
        vae.use_tiling = True  # for the rest of this job too: the next image would run out the same way
        return original(*args, **kwargs)

    return run

"""Stage 1: train the shapes model's VAE (1/8 latent) on rendered scenes, plain and striped; resumable.

    .venv/bin/python -m training.train_vae [--minutes 20] [--steps 2500]

Writes training/weights/shapes-vae.safetensors (latent scale normalised to SD1's factor) for the next stages.
"""

from __future__ import annotations

import random

import numpy as np
import torch
import torch.nn.functional as F

from training.models import RESOLUTION, RUNS, new_vae, normalise_vae_scale, save_vae_weights
from training.run_state import RunState, device, log, parse_args, seed_everything
from training.scenes import random_scene, render

SEED = 1
KL_WEIGHT = 1e-6  # a nearly deterministic autoencoder, as SD's (its KL weight is 1e-6 too)
STRIPED_SHARE = 0.3  # the LoRA's striped style must survive the VAE as well
# The VAE is convolutional, so random 64 px crops teach it most at a quarter of the cost; but its middle block's
# self-attention must then see full 128 px pictures (16 x 16 latents) for a while, or it smears colours there.
CROP = 64
FULL_SIZE_AFTER = 2000  # steps on crops, then whole pictures


def batch_of_images(rng: random.Random, count: int) -> torch.Tensor:
    """Random training scenes as a [-1, 1] tensor."""
    images = []
    for _ in range(count):
        scene = random_scene(rng, two_objects_fraction=0.3)
        style = "striped" if rng.random() < STRIPED_SHARE else "plain"
        images.append(np.asarray(render(scene, RESOLUTION, style), dtype=np.float32))
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return pixels / 127.5 - 1


def random_crops(pixels: torch.Tensor, rng: random.Random) -> torch.Tensor:
    crops = []
    for image in pixels:
        x, y = (rng.randrange(0, RESOLUTION - CROP + 1, 8) for _ in range(2))
        crops.append(image[:, y : y + CROP, x : x + CROP])
    return torch.stack(crops)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=3000, batch=16, lr=1e-3, minutes=25)
    seed_everything(SEED)
    run = args.run or RUNS / "vae"
    where = device()
    vae = new_vae(SEED).to(where).train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=args.lr, weight_decay=0.0)
    state = RunState(run, {"vae": vae}, optimizer)
    state.resume(args.fresh)
    rng = random.Random(SEED * 1000 + state.step)  # a resumed run continues with new scenes
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps, eta_min=args.lr / 20)
    for _ in range(state.step):
        schedule.step()
    while state.step < args.steps and state.seconds() < args.minutes * 60:
        full = state.step >= FULL_SIZE_AFTER
        batch = batch_of_images(rng, args.batch // 2 if full else args.batch)  # whole pictures: half as many
        pixels = (batch if full else random_crops(batch, rng)).to(where)
        posterior = vae.encode(pixels).latent_dist
        decoded = vae.decode(posterior.sample()).sample
        loss = F.mse_loss(decoded, pixels) + 0.5 * F.l1_loss(decoded, pixels) + KL_WEIGHT * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        state.tick(loss.item())
    state.save()
    export(vae.eval())


@torch.no_grad()
def export(vae) -> None:
    rng = random.Random(999)
    latents = torch.cat([vae.encode(batch_of_images(rng, 16).to(vae.device)).latent_dist.mean for _ in range(16)])
    std = latents.std().item()
    normalise_vae_scale(vae, std)
    check = vae.encode(batch_of_images(random.Random(999), 16).to(vae.device)).latent_dist.mean
    log.info("latent std %.3f → scaled std %.3f", std, (check * vae.config.scaling_factor).std().item())
    save_vae_weights(vae)


if __name__ == "__main__":
    main()

"""Stage 2: train the shapes model's text encoder and UNet on the VAE's latents of captioned scenes; resumable.

    .venv/bin/python -m training.train_base [--minutes 60] [--steps 2100]

Needs training/weights/shapes-vae.safetensors (stage 1). Writes the checkpoint models/Stable-diffusion/shapes/….
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from training.models import (
    CHECKPOINT,
    RUNS,
    load_vae_weights,
    new_text_encoder,
    new_unet,
    noise_scheduler,
    save_checkpoint,
)
from training.run_state import Ema, RunState, device, log, parse_args, seed_everything
from training.scene_latents import SceneLatents, scene_latents

SEED = 2
SCENES = 12000
CAPTION_DROPOUT = 0.1  # an empty caption now and then: what classifier-free guidance contrasts with
EMA_DECAY = 0.995  # averages over the last few hundred steps: a run here is a few thousand steps long
MIN_SNR_GAMMA = 5.0  # min-SNR loss weighting (Hang et al. 2023): converges several times faster for the same steps
WARMUP_STEPS = 100
# Low-resolution noise on top of the usual Gaussian noise. At SD1's last training step a 16 x 16 latent still shows
# its mean (and its quadrants) through the noise (sqrt(alpha_bar) = 0.07 against the 1/16 standard error of a mean),
# so a model learns to read the background colour and the layout from the noise instead of from the caption, then
# reads them from random noise when generating: random backgrounds whatever the prompt says (what a first run here
# did). Offset noise (Crosslabs, 2023) hides the mean; pyramid noise (Whitaker, 2023; sd-scripts' multires noise)
# hides the coarse layout.
OFFSET_NOISE = 0.1
PYRAMID_DISCOUNT = 0.5


def training_batch(data: SceneLatents, size: int, generator: torch.Generator):
    index = torch.randint(0, len(data.latents), (size,), generator=generator)
    variant = torch.randint(0, data.tokens.shape[1], (size,), generator=generator)
    tokens = data.tokens[index, variant].clone()
    dropped = torch.rand(size, generator=generator) < CAPTION_DROPOUT
    tokens[dropped] = data.empty_tokens
    return data.latents[index], tokens


def training_noise(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    """Gaussian noise plus Gaussian noise drawn at 1/2, 1/4 … down to 1 x 1 of the size and upscaled (weights 0.5,
    0.25, …), plus a per-channel offset, rescaled to unit variance. Samplers still start from plain Gaussian noise,
    which is one of the noises the model has learnt to remove."""
    batch, channels, height, width = shape
    noise = torch.randn(shape, generator=generator)
    size, weight = height, 1.0
    while size > 1:
        size, weight = size // 2, weight * PYRAMID_DISCOUNT
        coarse = torch.randn(batch, channels, size, size, generator=generator)
        noise += F.interpolate(coarse, size=(height, width), mode="bilinear") * weight
    noise += OFFSET_NOISE * torch.randn(batch, channels, 1, 1, generator=generator)
    return noise / noise.std()


def diffusion_loss(unet, text_encoder, scheduler, latents, tokens, generator) -> torch.Tensor:
    """The epsilon-prediction loss every SD1 model is trained with, min-SNR weighted."""
    noise = training_noise(latents.shape, generator).to(latents)
    steps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    noisy = scheduler.add_noise(latents, noise, steps.to(latents.device))
    context = text_encoder(tokens.to(latents.device)).last_hidden_state
    errors = F.mse_loss(unet(noisy, steps.to(latents.device), context).sample, noise, reduction="none")
    alphas = scheduler.alphas_cumprod[steps]
    snr = alphas / (1 - alphas)
    weights = (snr.clamp(max=MIN_SNR_GAMMA) / snr).to(latents)
    return (errors.mean(dim=(1, 2, 3)) * weights).mean()


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up, then cosine down to a tenth of the peak at `total`."""
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=2100, batch=32, lr=6e-4, minutes=60)
    seed_everything(SEED)
    where = device()
    run = args.run or RUNS / "base"
    data = scene_latents(run / "latents.pt", load_vae_weights(), SCENES, SEED).to(where)
    unet, text_encoder = new_unet(SEED).to(where).train(), new_text_encoder(SEED).to(where).train()
    ema_unet, ema_text = Ema(unet, EMA_DECAY), Ema(text_encoder, EMA_DECAY)
    params = [*unet.parameters(), *text_encoder.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    modules = {"unet": unet, "text_encoder": text_encoder, "ema_unet": ema_unet.model, "ema_text": ema_text.model}
    state = RunState(run, modules, optimizer)
    state.resume(args.fresh)
    generator = torch.Generator().manual_seed(SEED * 1000 + state.step)
    scheduler = noise_scheduler()
    while state.step < args.steps and state.seconds() < args.minutes * 60:
        latents, tokens = training_batch(data, args.batch, generator)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state.step, args.steps, args.lr)
        loss = diffusion_loss(unet, text_encoder, scheduler, latents, tokens, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        ema_unet.update(unet, state.step)
        ema_text.update(text_encoder, state.step)
        state.tick(loss.item())
    state.save()
    save_checkpoint(CHECKPOINT, ema_unet.model, load_vae_weights(), ema_text.model)
    log.info("wrote %s after %d steps (%.0f min)", CHECKPOINT, state.step, state.seconds() / 60)


if __name__ == "__main__":
    random.seed(SEED)
    main()

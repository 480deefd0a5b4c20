"""Stage 2: train the shapes model's text encoder and UNet on the VAE's latents of captioned scenes; resumable.

    .venv/bin/python -m training.train_base [--minutes 70] [--steps 4000]

Needs training/weights/shapes-vae.safetensors (stage 1). Writes the checkpoint models/Stable-diffusion/shapes/….
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F

from core.tokenizers import clip_tokenizer
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
from training.scenes import POSITIONS, SHAPES, first_place, first_shape

SEED = 2
SCENES = 12000
CAPTION_DROPOUT = 0.1  # an empty caption now and then: what classifier-free guidance contrasts with
EMA_DECAY = 0.995  # averages over the last few hundred steps: a run here is a few thousand steps long
# Loss weights by noise level, in terms of the picture: an epsilon error e at signal-to-noise ratio s is a picture (x0)
# error of e / sqrt(s), so the plain epsilon loss weighs picture errors by s. Min-SNR-5 (Hang et al. 2023) caps that
# at 5 at the low-noise end (converges several times faster). At the high-noise end s falls to 0.005, so the plain
# loss hardly counts the steps where only the caption can say where an object goes (a 16 x 16 latent shows a
# medium object's place through the noise down to s = 0.6 or so): a first model learnt colours and backgrounds but
# put objects anywhere (place 4 % after 3,400 steps). Weighing picture errors by s + 0.25 instead lifts those steps:
# measured on that model, the weighted loss at t = 600 … 999 rises from 0.010 … 0.003 (a third of the low-noise
# steps' 0.015 … 0.03) to 0.02 … 0.13. With s + 1 (a v-prediction model's loss) they would outweigh all the rest
# ten to one, though much of a picture's error there cannot be removed (the caption does not say the exact size).
# On its own this did not teach places either (see CAPTION_LOSS_WEIGHT).
MIN_SNR_GAMMA = 5.0
HIGH_NOISE_FLOOR = 0.25
WARMUP_STEPS = 100
# Low-resolution noise on top of the usual Gaussian noise. At SD1's last training step a 16 x 16 latent still shows
# its mean (and its quadrants) through the noise (sqrt(alpha_bar) = 0.07 against the 1/16 standard error of a mean),
# so a model learns to read the background colour and the layout from the noise instead of from the caption, then
# reads them from random noise when generating: random backgrounds whatever the prompt says (what a first run here
# did). Offset noise (Crosslabs, 2023) hides the mean; pyramid noise (Whitaker, 2023; sd-scripts' multires noise)
# hides the coarse layout.
OFFSET_NOISE = 0.1
PYRAMID_DISCOUNT = 0.5
# SD1's CLIP text encoder came pretrained (on 400 M captioned pictures): its features already said what a caption
# describes. Ours starts from random weights and learns only what the UNet asks of it. Trained on the diffusion loss
# alone, a caption's place words changed the model's prediction by 0.01 after 1,500 steps (its colour words by
# 0.3 - 0.8): the text encoder kept places faint because the UNet did not use them, and the UNet could not use them
# because they were faint. A linear head on the text encoder's pooled output that must name the first object's place
# (an auxiliary loss; the head is not part of the checkpoint) breaks that circle: in a trial the place words changed
# the prediction by 0.30 after 600 steps, most in the named corner.
# Shapes were the same circle one step behind. After run 5's 3,350 steps the text encoder's output moved 3.8 between
# "circle" and "square" (11.8 between "red" and "green"), and the UNet's predicted picture moved 10 - 20 % of the way
# from a circle's latents to a square's (a colour or size word moved it all the way): its objects were soft blobs,
# circles and stars mostly read as squares (shape 37.5 %). A second head names the first object's shape: with it,
# shape was right in 73 % of 120 held-out prompts after 4,000 steps (run 6).
CAPTION_LOSS_WEIGHT = 0.05  # per head
CAPTION_HEADS = {"place": (POSITIONS, first_place), "shape": (SHAPES, first_shape)}  # classes, reader of a caption
UNNAMED = -100  # cross_entropy's ignore_index: a dropped caption names nothing


def training_batch(data: SceneLatents, size: int, generator: torch.Generator, labels: dict | None = None):
    """Latents, their captions' tokens (a tenth of them empty) and, given `labels` (see caption_labels), what each
    caption says of its first object, by head (UNNAMED for the empty ones)."""
    index = torch.randint(0, len(data.latents), (size,), generator=generator)
    variant = torch.randint(0, data.tokens.shape[1], (size,), generator=generator)
    tokens = data.tokens[index, variant].clone()
    dropped = torch.rand(size, generator=generator) < CAPTION_DROPOUT
    tokens[dropped] = data.empty_tokens
    named = {head: values[index, variant].masked_fill(dropped, UNNAMED) for head, values in (labels or {}).items()}
    return data.latents[index], tokens, named


def caption_labels(tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """For [scenes, captions, 77] token ids, by head of CAPTION_HEADS: the index of the class (place, shape) each
    caption gives its first object."""
    texts = clip_tokenizer().batch_decode(tokens.flatten(0, 1), skip_special_tokens=True)
    return {
        head: torch.tensor([classes.index(read(text)) for text in texts]).view(tokens.shape[:2])
        for head, (classes, read) in CAPTION_HEADS.items()
    }


def caption_loss(heads: torch.nn.ModuleDict, pooled: torch.Tensor, named: dict[str, torch.Tensor]) -> torch.Tensor:
    """The auxiliary loss: each head must name its class of the first object from the text encoder's pooled output."""
    losses = [F.cross_entropy(heads[head](pooled), labels.to(pooled.device), ignore_index=UNNAMED)
              for head, labels in named.items()]  # fmt: skip
    return CAPTION_LOSS_WEIGHT * torch.stack(losses).sum()


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


def diffusion_loss(unet, context, scheduler, latents, generator, below: int | None = None) -> torch.Tensor:
    """The epsilon-prediction loss every SD1 model is trained with, weighted by noise level (see MIN_SNR_GAMMA);
    `context` is the text encoder's last hidden state for the latents' captions. Timesteps are drawn uniformly from
    all of the schedule's, or only from those below `below`."""
    noisy, noise, steps = noised(latents, scheduler, generator, below)
    return weighted_error(unet(noisy, steps, context).sample, noise, scheduler, steps)


def noised(latents: torch.Tensor, scheduler, generator: torch.Generator, below: int | None = None):
    """(noisy latents, their noise, their timesteps): training noise at timesteps drawn uniformly from the whole
    schedule, or from those below `below`; on the latents' device."""
    noise = training_noise(latents.shape, generator).to(latents)
    steps = torch.randint(0, below or scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
    steps = steps.to(latents.device)
    return scheduler.add_noise(latents, noise, steps), noise, steps


def weighted_error(predicted: torch.Tensor, noise: torch.Tensor, scheduler, steps: torch.Tensor) -> torch.Tensor:
    """The mean squared error of predicted noise, each sample's weighed by its noise level (see loss_weights)."""
    errors = F.mse_loss(predicted, noise, reduction="none").mean(dim=(1, 2, 3))
    return (errors * loss_weights(scheduler, steps.cpu()).to(errors)).mean()


def loss_weights(scheduler, steps: torch.Tensor) -> torch.Tensor:
    """Per-sample weights of the epsilon loss: picture errors weighed by min(SNR + 0.25, 5) (see MIN_SNR_GAMMA)."""
    alphas = scheduler.alphas_cumprod[steps]
    snr = alphas / (1 - alphas)
    return (snr + HIGH_NOISE_FLOOR).clamp(max=MIN_SNR_GAMMA) / snr


def learning_rate(step: int, total: int, peak: float) -> float:
    """Linear warm-up, then cosine down to a tenth of the peak at `total`."""
    if step < WARMUP_STEPS:
        return peak * (step + 1) / WARMUP_STEPS
    progress = min(1.0, (step - WARMUP_STEPS) / max(1, total - WARMUP_STEPS))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=4000, batch=32, lr=6e-4, minutes=70)
    seed_everything(SEED)
    where = device()
    run = args.run or RUNS / "base"
    data = scene_latents(run / "latents.pt", load_vae_weights(), SCENES, SEED).to(where)
    labels = caption_labels(data.tokens)
    unet, text_encoder = new_unet(SEED).to(where).train(), new_text_encoder(SEED).to(where).train()
    heads = torch.nn.ModuleDict(
        {
            head: torch.nn.Linear(text_encoder.config.hidden_size, len(classes))
            for head, (classes, _) in CAPTION_HEADS.items()
        }
    ).to(where)
    ema_unet, ema_text = Ema(unet, EMA_DECAY), Ema(text_encoder, EMA_DECAY)
    params = [*unet.parameters(), *text_encoder.parameters(), *heads.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    modules = {"unet": unet, "text_encoder": text_encoder, "caption_heads": heads}
    modules |= {"ema_unet": ema_unet.model, "ema_text": ema_text.model}
    state = RunState(run, modules, optimizer)
    state.resume(args.fresh)
    generator = torch.Generator().manual_seed(SEED * 1000 + state.step)
    scheduler = noise_scheduler()
    while state.step < args.steps and state.seconds() < args.minutes * 60:
        latents, tokens, named = training_batch(data, args.batch, generator, labels)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(state.step, args.steps, args.lr)
        encoded = text_encoder(tokens.to(where))
        loss = diffusion_loss(unet, encoded.last_hidden_state, scheduler, latents, generator)
        loss = loss + caption_loss(heads, encoded.pooler_output, named)
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

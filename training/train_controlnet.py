"""Stage 3: train a canny ControlNet for the shapes checkpoint (frozen), from scenes and their canny maps; resumable.

    .venv/bin/python -m training.train_controlnet [--minutes 30] [--steps 1200]

Needs the checkpoint of stage 2; writes models/ControlNet/shapes-canny.safetensors.
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel

from core.tokenizers import clip_tokenizer
from training.models import CONTROLNET, RUNS, load_frozen_base, noise_scheduler, save_controlnet, tokenize
from training.run_state import Ema, RunState, device, log, parse_args, seed_everything
from training.scene_latents import scene_latents
from training.scenes import without_places
from training.train_base import noised, weighted_error

SEED = 3
SCENES = 4000
CAPTION_DROPOUT = 0.3  # without a caption now and then it learns to follow the edges alone, as ControlNet did
# Most captions lose their position phrases: the frozen base puts an object the caption does not place in the centre
# (its captions leave out only "in the centre"), so where the edges are somewhere else, the ControlNet must win over
# that. With every place named (run 1), the caption alone placed the object, and the ControlNet learnt nothing.
PLACELESS_SHARE = 0.7
# The zero convolutions gate everything the ControlNet adds; at the base learning rate they stayed near zero for
# 1,100 steps (run 1). And the hint embedding's last convolution starts random, not zero (diffusers zeroes it, as
# the paper does): zeroed, the edges reach the ControlNet only once the zero convolutions have grown, and both wait
# on each other. The output still starts unchanged, since the zero convolutions are zero.
ZERO_CONV_LR_SCALE = 10.0
HINT_CHANNELS = (16, 32, 64, 128)  # 3 stride-2 convolutions: 128 px edges → the 16 x 16 latent


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=1200, batch=32, lr=3e-4, minutes=30)
    seed_everything(SEED)
    where = device()
    run = args.run or RUNS / "controlnet"
    base = load_frozen_base(where)
    unet, text_encoder = base.unet, base.text_encoder
    data = scene_latents(run / "latents.pt", base.vae, SCENES, SEED, edges=True)
    placeless = placeless_tokens(data.tokens)
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS).to(where).train()
    controlnet.controlnet_cond_embedding.conv_out.reset_parameters()
    ema = Ema(controlnet, 0.998)
    optimizer = torch.optim.AdamW(parameter_groups(controlnet, args.lr), weight_decay=0.0)
    state = RunState(run, {"controlnet": controlnet, "ema": ema.model}, optimizer)
    state.resume(args.fresh)
    generator = torch.Generator().manual_seed(SEED * 1000 + state.step)
    scheduler = noise_scheduler()
    with torch.no_grad():
        empty_context = text_encoder(data.empty_tokens[None].to(where)).last_hidden_state
    while state.step < args.steps and state.seconds() < args.minutes * 60:
        index = torch.randint(0, len(data.latents), (args.batch,), generator=generator)
        variant = torch.randint(0, data.tokens.shape[1], (args.batch,), generator=generator)
        latents = data.latents[index].to(where)
        edges = (data.edges[index].float() / 255).expand(-1, 3, -1, -1).to(where)  # the pipeline's 0..1 RGB map
        noisy, noise, steps = noised(latents, scheduler, generator)
        with torch.no_grad():
            unplaced = torch.rand(args.batch, generator=generator) < PLACELESS_SHARE
            tokens = torch.where(unplaced[:, None], placeless[index, variant], data.tokens[index, variant])
            context = text_encoder(tokens.to(where)).last_hidden_state
            dropped = (torch.rand(args.batch, generator=generator) < CAPTION_DROPOUT).to(where)
            context = torch.where(dropped[:, None, None], empty_context, context)
        down, mid = controlnet(noisy, steps, context, edges, return_dict=False)
        predicted = unet(noisy, steps, context, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        loss = weighted_error(predicted.sample, noise, scheduler, steps)  # the base's weights: places count
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(controlnet, state.step)
        state.tick(loss.item())
    state.save()
    save_controlnet(CONTROLNET, ema.model)
    log.info("wrote %s after %d steps (%.0f min)", CONTROLNET, state.step, state.seconds() / 60)


def placeless_tokens(tokens: torch.Tensor) -> torch.Tensor:
    """Token ids of the same captions without their position phrases (decoded, cut and tokenized again)."""
    texts = clip_tokenizer().batch_decode(tokens.flatten(0, 1), skip_special_tokens=True)
    return tokenize([without_places(text) for text in texts]).view_as(tokens)


def parameter_groups(controlnet: ControlNetModel, lr: float) -> list[dict]:
    zero_convs = [*controlnet.controlnet_down_blocks.parameters(), *controlnet.controlnet_mid_block.parameters()]
    gated = {id(p) for p in zero_convs}
    rest = [p for p in controlnet.parameters() if id(p) not in gated]
    return [{"params": rest, "lr": lr}, {"params": zero_convs, "lr": lr * ZERO_CONV_LR_SCALE}]


if __name__ == "__main__":
    main()

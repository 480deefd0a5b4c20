"""Stage 4: train a "striped" style LoRA for the shapes checkpoint on striped renders of the same scenes; resumable.

    .venv/bin/python -m training.train_lora [--minutes 65] [--steps 4400]

Needs the checkpoint of stage 2; writes models/Lora/shapes-striped.safetensors in Kohya's format (the format most
downloaded LoRAs have), which the app reads through diffusers' converter like any other.
"""

from __future__ import annotations

import torch
from diffusers.utils import convert_state_dict_to_kohya
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from training.models import LORA, RUNS, load_frozen_base, noise_scheduler
from training.run_state import RunState, device, log, parse_args, seed_everything
from training.scene_latents import scene_latents
from training.train_base import diffusion_loss, training_batch

SEED = 4
SCENES = 3000
RANK = 8
# Attention and the ResNets' convolutions (LyCORIS calls conv LoRAs LoCon): a texture lives in the convolutions.
TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "conv1", "conv2"]
# Fine texture (stripes 2.5 latent px apart) is decided at low noise, the layout at high noise (SNR 0.19 at t = 600,
# 0.005 at 999), and the LoRA must leave the layout alone. There the base's loss weights, lifted at high noise for the
# places (51x at t = 999), made the LoRA's gradient mostly noise: 1,600 more steps over all timesteps took the stripe
# strength only from 0.071 to 0.074; 1,400 more from the same state, below 600 only, to 0.113.
STYLE_STEPS = 600


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], steps=4400, batch=32, lr=1e-3, minutes=65)
    seed_everything(SEED)
    where = device()
    run = args.run or RUNS / "lora"
    base = load_frozen_base(where)
    unet, text_encoder = base.unet, base.text_encoder
    # The same scenes and captions as plain ones would have: only the objects' fill differs, so the LoRA learns
    # nothing but the style, and needs no trigger word.
    data = scene_latents(run / "latents.pt", base.vae, SCENES, SEED, style="striped").to(where)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, init_lora_weights="gaussian", target_modules=TARGETS))
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    state = RunState(run, {"unet": unet}, optimizer)
    state.resume(args.fresh)
    generator = torch.Generator().manual_seed(SEED * 1000 + state.step)
    scheduler = noise_scheduler()
    while state.step < args.steps and state.seconds() < args.minutes * 60:
        latents, tokens, _ = training_batch(data, args.batch, generator)
        with torch.no_grad():
            context = text_encoder(tokens.to(where)).last_hidden_state
        loss = diffusion_loss(unet, context, scheduler, latents, generator, below=STYLE_STEPS)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        state.tick(loss.item())
    state.save()
    save_lora(unet)
    log.info("wrote %s after %d steps (%.0f min)", LORA, state.step, state.seconds() / 60)


def save_lora(unet) -> None:
    peft_state = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
    kohya = convert_state_dict_to_kohya(peft_state)
    LORA.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"ss_network_module": "networks.lora", "ss_network_dim": str(RANK), "ss_network_alpha": str(RANK)}
    save_file({k: v.half().contiguous() for k, v in kohya.items()}, str(LORA), metadata=metadata)


if __name__ == "__main__":
    main()

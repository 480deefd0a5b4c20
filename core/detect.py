"""Family and dimensions of a checkpoint read from its tensors' key names and shapes (no config files needed)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from core.errors import UserError
from core.families import SD1, SD2, SDXL, Family, text_encoder_heads

Shapes = dict[str, tuple[int, ...]]

UNET = "model.diffusion_model."
VAE = "first_stage_model."
SD1_CLIP = "cond_stage_model.transformer."
SD2_OPENCLIP = "cond_stage_model.model."
SDXL_CLIP = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP = "conditioner.embedders.1.model."


@dataclass(frozen=True)
class TextEncoderSpec:
    """One text encoder: where its weights sit in the file and the CLIPTextConfig that fits them."""

    prefix: str
    layout: str  # "clip" (HF layout inside the file) or "openclip"
    config: dict
    with_projection: bool = False


@dataclass(frozen=True)
class CheckpointSpec:
    """Everything needed to rebuild a single-file checkpoint as diffusers components."""

    family: Family
    unet_config: dict
    vae_config: dict | None
    text_encoders: list[TextEncoderSpec] = field(default_factory=list)
    prediction_type: str = "epsilon"
    zero_terminal_snr: bool = False

    @property
    def is_inpainting(self) -> bool:
        return self.unet_config["in_channels"] == 9

    @property
    def description(self) -> str:
        return f"{self.family.label}{' inpainting' if self.is_inpainting else ''}"


def detect_checkpoint(shapes: Shapes, name: str = "checkpoint") -> CheckpointSpec:
    """Work out family and dimensions; raise UserError naming what was found when it is not a supported model."""
    _refuse_unsupported(shapes, name)
    unet = unet_config_from_ldm(shapes)
    family = _family_of(shapes, unet)
    unet["attention_head_dim"] = family.unet_heads(unet["block_out_channels"])
    unet["sample_size"] = family.default_size // 8
    encoders = _text_encoders(shapes, family)
    if family is SDXL:
        pooled_dim = encoders[1].config["projection_dim"]
        adm_in = unet.pop("adm_in_channels")
        unet.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=(adm_in - pooled_dim) // 6,
            projection_class_embeddings_input_dim=adm_in,
        )
    else:
        unet.pop("adm_in_channels", None)
    vae = vae_config_from_ldm(shapes, VAE, family) if f"{VAE}encoder.conv_in.weight" in shapes else None
    prediction = "v_prediction" if "v_pred" in shapes else "epsilon"
    return CheckpointSpec(family, unet, vae, encoders, prediction, zero_terminal_snr="ztsnr" in shapes)


def _refuse_unsupported(shapes: Shapes, name: str) -> None:
    keys = shapes.keys()

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    known = [
        (UNET + "joint_blocks.", "Stable Diffusion 3 (MMDiT)"),
        ("joint_blocks.", "Stable Diffusion 3 (MMDiT)"),
        (UNET + "double_blocks.", "FLUX"),
        ("double_blocks.", "FLUX"),
        ("control_model.", "a ControlNet (put it in models/ControlNet)"),
        ("lora_unet_", "a LoRA (put it in models/Lora)"),
        ("lora_te_", "a LoRA (put it in models/Lora)"),
        ("string_to_param", "a textual-inversion embedding (put it in models/embeddings)"),
        ("emb_params", "a textual-inversion embedding (put it in models/embeddings)"),
        ("clip_l", "a textual-inversion embedding (put it in models/embeddings)"),
        ("down_blocks.", "a diffusers-format component file, not a whole checkpoint"),
    ]
    if not has(UNET):
        for prefix, what in known:
            if has(prefix):
                raise UserError(f"{name} is {what}, not a supported Stable Diffusion checkpoint.")
        if has("encoder.down.") or has(VAE):
            raise UserError(f"{name} is a VAE on its own (put it in models/VAE), not a whole checkpoint.")
        found = sorted({k.split(".")[0] for k in keys})[:8]
        raise UserError(
            f"{name} is not a Stable Diffusion checkpoint: no UNet weights ({UNET}…) in it. "
            f"Top-level keys found: {', '.join(found) or 'none'}."
        )
    for prefix, what in known[:4]:
        if has(prefix):
            raise UserError(f"{name} is {what}, which is not supported (SD1.x, SD2.x and SDXL are).")
    if f"{UNET}input_blocks.0.0.weight" not in shapes:
        raise UserError(f"{name} has UNet weights of an unknown architecture; SD1.x, SD2.x and SDXL are supported.")


def _family_of(shapes: Shapes, unet: dict) -> Family:
    keys = shapes.keys()
    has_label_emb = "adm_in_channels" in unet
    if any(k.startswith(SDXL_OPENCLIP) for k in keys) and any(k.startswith(SDXL_CLIP) for k in keys):
        if not has_label_emb:
            raise UserError("Found SDXL text encoders but a UNet without SDXL's size conditioning; not supported.")
        return SDXL
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        raise UserError("This is an SDXL refiner checkpoint (OpenCLIP only), which is not supported; use an SDXL base.")
    if has_label_emb:
        raise UserError(
            "This UNet takes class/image-embedding conditioning (e.g. SD2 unCLIP or SVD), which is not supported."
        )
    if any(k.startswith(SD2_OPENCLIP) for k in keys):
        return SD2
    if any(k.startswith(SD1_CLIP) for k in keys):
        return SD1
    raise UserError(
        f"Found a UNet (context width {unet['cross_attention_dim']}) but no text encoder in the file; "
        "SD1.x, SD2.x and SDXL checkpoints include theirs."
    )


def _indices(shapes: Shapes, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pattern.match(k))})


def unet_config_from_ldm(shapes: Shapes, prefix: str = UNET) -> dict:
    """UNet2DConditionModel config from original-layout keys; heads and sample size are filled in by the family."""
    config = encoder_config_from_ldm(shapes, prefix)
    attention = [kind == "CrossAttnDownBlock2D" for kind in config["down_block_types"]]
    config["out_channels"] = shapes[f"{prefix}out.2.weight"][0]
    config["up_block_types"] = ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)]
    return config


def encoder_config_from_ldm(shapes: Shapes, prefix: str) -> dict:
    """The config a UNet and a ControlNet share (a ControlNet is a copy of the UNet's input and middle blocks)."""
    in_channels = shapes[f"{prefix}input_blocks.0.0.weight"][1]
    # After the stem come res(+attn) blocks; a downsampler ("…N.0.op") closes every level but the last.
    levels: list[list[int]] = [[]]
    for i in _indices(shapes, f"{prefix}input_blocks.")[1:]:
        if f"{prefix}input_blocks.{i}.0.op.weight" in shapes:
            levels.append([])
        else:
            levels[-1].append(i)
    block_channels, attention, depth = [], [], []
    for blocks in levels:
        first = blocks[0]
        block_channels.append(shapes[f"{prefix}input_blocks.{first}.0.out_layers.3.weight"][0])
        attn = f"{prefix}input_blocks.{first}.1."
        attention.append(f"{attn}proj_in.weight" in shapes)
        depth.append(max(1, len(_indices(shapes, f"{attn}transformer_blocks."))))
    proj_in = next(
        (shape for key, shape in shapes.items() if key.startswith(prefix) and key.endswith("proj_in.weight"))
    )
    attn2_k = next(
        shape for key, shape in shapes.items() if key.startswith(prefix) and key.endswith("attn2.to_k.weight")
    )
    config = {
        "in_channels": in_channels,
        "block_out_channels": block_channels,
        "layers_per_block": len(levels[0]),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "transformer_layers_per_block": depth,
        "cross_attention_dim": attn2_k[1],
        "use_linear_projection": len(proj_in) == 2,
        "norm_num_groups": 32,  # not visible in the weights; every SD UNet uses 32
    }
    if f"{prefix}label_emb.0.0.weight" in shapes:
        config["adm_in_channels"] = shapes[f"{prefix}label_emb.0.0.weight"][1]
    return config


def vae_config_from_ldm(shapes: Shapes, prefix: str, family: Family) -> dict:
    """AutoencoderKL config from original-layout VAE keys (inside a checkpoint or a standalone VAE file)."""
    levels = _indices(shapes, f"{prefix}encoder.down.")
    channels = [shapes[f"{prefix}encoder.down.{i}.block.0.conv2.weight"][0] for i in levels]
    return {
        "in_channels": shapes[f"{prefix}encoder.conv_in.weight"][1],
        "out_channels": shapes[f"{prefix}decoder.conv_out.weight"][0],
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "block_out_channels": channels,
        "layers_per_block": len(_indices(shapes, f"{prefix}encoder.down.0.block.")),
        "latent_channels": shapes[f"{prefix}decoder.conv_in.weight"][1],
        "norm_num_groups": 32,
        "sample_size": family.default_size,
        "scaling_factor": family.vae_scaling_factor,
    }


def _text_encoders(shapes: Shapes, family: Family) -> list[TextEncoderSpec]:
    if family is SD1:
        return [_clip_spec(shapes, SD1_CLIP)]
    if family is SD2:
        # SD2 conditions on OpenCLIP's penultimate layer: the diffusers model stops one layer early.
        return [_openclip_spec(shapes, SD2_OPENCLIP, drop_last_layer=True)]
    return [_clip_spec(shapes, SDXL_CLIP), _openclip_spec(shapes, SDXL_OPENCLIP, drop_last_layer=False)]


def _clip_spec(shapes: Shapes, prefix: str) -> TextEncoderSpec:
    inner = prefix + "text_model." if any(k.startswith(prefix + "text_model.") for k in shapes) else prefix
    vocab, hidden = shapes[f"{inner}embeddings.token_embedding.weight"]
    config = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shapes[f"{inner}encoder.layers.0.mlp.fc1.weight"][0],
        "num_hidden_layers": len(_indices(shapes, f"{inner}encoder.layers.")),
        "num_attention_heads": text_encoder_heads(hidden),
        "max_position_embeddings": shapes[f"{inner}embeddings.position_embedding.weight"][0],
        "hidden_act": "quick_gelu",
        "projection_dim": hidden,
    }
    return TextEncoderSpec(prefix, "clip", config)


def _openclip_spec(shapes: Shapes, prefix: str, drop_last_layer: bool) -> TextEncoderSpec:
    vocab, hidden = shapes[f"{prefix}token_embedding.weight"]
    layers = len(_indices(shapes, f"{prefix}transformer.resblocks."))
    projection = shapes.get(f"{prefix}text_projection", (hidden, hidden))
    config = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shapes[f"{prefix}transformer.resblocks.0.mlp.c_fc.weight"][0],
        "num_hidden_layers": layers - 1 if drop_last_layer else layers,
        "num_attention_heads": text_encoder_heads(hidden),
        "max_position_embeddings": shapes[f"{prefix}positional_embedding"][0],
        "hidden_act": "gelu",
        "projection_dim": projection[1],
    }
    return TextEncoderSpec(prefix, "openclip", config, with_projection=not drop_last_layer)


CONTROLNET = "control_model."
_DIFFUSERS_HINT = "controlnet_cond_embedding.conv_in.weight"


@dataclass(frozen=True)
class ControlNetSpec:
    """A ControlNet file's family, ControlNetModel config and layout ("ldm" under `prefix`, or "diffusers")."""

    family: Family
    config: dict  # for SDXL without addition_time_embed_dim, which only the checkpoint's UNet tells (see loader)
    layout: str
    prefix: str = ""


def detect_controlnet(shapes: Shapes, name: str = "ControlNet") -> ControlNetSpec:
    """Family and dimensions of a ControlNet: the original layout (`control_model.` keys, or the same keys bare as
    some SD2 files have them) or a diffusers-layout single file, as many SDXL ControlNets are distributed."""
    if _DIFFUSERS_HINT in shapes:
        config, layout, prefix = _controlnet_config_from_diffusers(shapes), "diffusers", ""
    else:
        prefix = CONTROLNET if any(k.startswith(CONTROLNET) for k in shapes) else ""
        if f"{prefix}input_hint_block.0.weight" not in shapes or f"{prefix}input_blocks.0.0.weight" not in shapes:
            raise UserError(
                f"{name} is not a ControlNet of a supported kind (no hint block and input blocks found): "
                "ControlNet 1.0/1.1 and SDXL ControlNets are supported, T2I-Adapters and Control-LoRAs are not."
            )
        config, layout = _controlnet_config_from_ldm(shapes, prefix), "ldm"
    adm_in = config.pop("adm_in_channels", None)
    family = SDXL if adm_in else SD2 if config["use_linear_projection"] else SD1
    config["attention_head_dim"] = family.unet_heads(config["block_out_channels"])
    if adm_in:
        config.update(addition_embed_type="text_time", projection_class_embeddings_input_dim=adm_in)
    return ControlNetSpec(family, config, layout, prefix)


def _controlnet_config_from_ldm(shapes: Shapes, prefix: str) -> dict:
    config = encoder_config_from_ldm(shapes, prefix)
    hint = _indices(shapes, f"{prefix}input_hint_block.")  # convolutions, with a SiLU between each two
    channels = [shapes[f"{prefix}input_hint_block.{i}.weight"][0] for i in hint[:-1]]
    config.update(
        conditioning_channels=shapes[f"{prefix}input_hint_block.0.weight"][1],
        conditioning_embedding_out_channels=list(dict.fromkeys(channels)),  # 16, 16, 32, 32… → 16, 32…
    )
    return config


def _controlnet_config_from_diffusers(shapes: Shapes) -> dict:
    levels = _indices(shapes, "down_blocks.")
    attention = [f"down_blocks.{i}.attentions.0.proj_in.weight" in shapes for i in levels]
    depth = [max(1, len(_indices(shapes, f"down_blocks.{i}.attentions.0.transformer_blocks."))) for i in levels]
    attn2_k = next(shape for key, shape in shapes.items() if key.endswith("attn2.to_k.weight"))
    proj_in = next(shape for key, shape in shapes.items() if key.endswith("proj_in.weight"))
    blocks = _indices(shapes, "controlnet_cond_embedding.blocks.")
    channels = [shapes[_DIFFUSERS_HINT][0]] + [
        shapes[f"controlnet_cond_embedding.blocks.{i}.weight"][0] for i in blocks
    ]
    config = {
        "in_channels": shapes["conv_in.weight"][1],
        "block_out_channels": [shapes[f"down_blocks.{i}.resnets.0.conv2.weight"][0] for i in levels],
        "layers_per_block": len(_indices(shapes, "down_blocks.0.resnets.")),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "transformer_layers_per_block": depth,
        "cross_attention_dim": attn2_k[1],
        "use_linear_projection": len(proj_in) == 2,
        "norm_num_groups": 32,
        "conditioning_channels": shapes[_DIFFUSERS_HINT][1],
        "conditioning_embedding_out_channels": list(dict.fromkeys(channels)),
    }
    if "add_embedding.linear_1.weight" in shapes:
        config["adm_in_channels"] = shapes["add_embedding.linear_1.weight"][1]
    return config

"""Starts the web UI: command-line flags → Settings → engine → Gradio page → launch (nothing else)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Offline always: no model, config or tokenizer is ever fetched from a hub (set before those libraries import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SD Studio: a Stable Diffusion web UI (flags follow A1111's names).")
    parser.add_argument(
        "--listen", action="store_true", help="serve on 0.0.0.0 so other machines on the network can connect"
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument(
        "--share", action="store_true", help="make a public gradio.live link (needs internet; falls back to local)"
    )
    parser.add_argument(
        "--gradio-auth", metavar="USER:PASS[,USER:PASS…]", help="require a login for the web UI and API"
    )
    parser.add_argument("--models-dir", type=Path, help="models folder in A1111's layout (default: ./models)")
    parser.add_argument("--outputs-dir", type=Path, help="where images are saved (default: ./outputs)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: CUDA if present)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp16", "bf16", "fp32"],
        help="weights precision (default auto: fp16 on GPU, fp32 on CPU)",
    )
    parser.add_argument(
        "--config", type=Path, default=ROOT / "config.json", help="settings file (default ./config.json)"
    )
    parser.add_argument(
        "--styles-file", type=Path, default=ROOT / "styles.csv", help="saved prompt styles (default ./styles.csv)"
    )
    return parser.parse_args(argv)


def parse_auth(value: str | None) -> list[tuple[str, str]] | None:
    if not value:
        return None
    pairs = []
    for item in value.split(","):
        user, sep, password = item.strip().partition(":")
        if not sep or not user:
            raise SystemExit(f"--gradio-auth expects user:password pairs separated by commas, got {item!r}")
        pairs.append((user, password))
    return pairs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    auth = parse_auth(args.gradio_auth)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its dtype-cast notices would drown the log at every model load

    from core.devices import choose_policy
    from core.engine import Engine
    from core.errors import UserError
    from core.model_cache import ModelCache
    from core.outputs import OutputWriter
    from core.registry import HashCache, ModelRegistry
    from core.settings import Settings, resolve_folder
    from core.starter import first_start_defaults
    from core.styles import StyleLibrary
    from ui.app_ui import CSS, JS, build_ui
    from ui.model_pickers import default_checkpoint
    from ui.remembered import load_or_create_secret
    from ui.services import Services

    first_start = not args.config.exists()
    settings = Settings.load(args.config)
    if args.models_dir:
        settings.models_dir = str(args.models_dir)
    if args.outputs_dir:
        settings.outputs_dir = str(args.outputs_dir)
    try:
        policy = choose_policy(args.device, args.precision)
    except UserError as exc:
        raise SystemExit(str(exc)) from exc
    if policy.note:
        print(policy.note, file=sys.stderr)
    cache_dir = resolve_folder(settings.cache_dir, ROOT)
    registry = ModelRegistry(resolve_folder(settings.models_dir, ROOT), HashCache(cache_dir / "models.json"))
    if first_start:
        first_start_defaults(settings, default_checkpoint(registry, settings.default_checkpoint))
    models = ModelCache(
        registry,
        policy,
        capacity=lambda: settings.model_cache_size,
        sd2_prediction=lambda: settings.sd2_prediction_type,
    )
    outputs_dir = resolve_folder(settings.outputs_dir, ROOT)
    outputs = OutputWriter(outputs_dir, lambda: settings.save_control_maps)
    engine = Engine(models, outputs, policy, StyleLibrary(args.styles_file))
    served_folders = [str(outputs_dir)]  # Services adds a new output folder here when the Settings tab changes it
    services = Services(
        engine,
        registry,
        settings,
        args.config,
        base_dir=ROOT,
        served_folders=served_folders,
        ui_secret=load_or_create_secret(cache_dir / "browser-state.key"),
    )
    page = build_ui(services)
    page.queue(default_concurrency_limit=1)
    _, local_url, share_url = page.launch(
        server_name="0.0.0.0" if args.listen else "127.0.0.1",
        server_port=args.port,
        share=args.share,
        auth=auth,
        allowed_paths=served_folders,
        theme=gr_theme(),
        css=CSS,
        js=JS,
        prevent_thread_lock=True,
        show_error=True,
    )
    if args.share and not share_url:
        print(
            "Could not create a public share link (no internet?). Serving locally only at " + local_url, file=sys.stderr
        )
    page.block_thread()


def gr_theme():
    import gradio as gr

    return gr.themes.Default(primary_hue="orange")


if __name__ == "__main__":
    main()

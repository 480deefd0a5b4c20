"""Starts the web UI: command-line flags → Settings → engine → Gradio page → launch (nothing else)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Offline always, whatever the environment says: no model, config or tokenizer is ever fetched from a hub (set
# before those libraries import).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

ROOT = Path(__file__).resolve().parent


SPEED_FLAGS = (  # each forces a core.speed option (a Settings field) on
    (("--opt-channelslast",), "channels_last", "channels_last memory order for the UNet and VAE"),
    (("--fuse-qkv",), "fused_qkv", "fused attention projections"),
    (("--compile",), "compile_unet", "torch.compile the UNet and VAE (compiles once per image size)"),
    (("--fp8-unet", "--unet-in-fp8-e4m3fn"), "fp8_unet", "store the UNet's weights in fp8"),
)


def memory_flag(args: argparse.Namespace) -> str | None:
    """The forced memory level's flag without its dashes, as core.memory_policy names it."""
    names = ("medvram", "medvram-sdxl", "lowvram")
    return next((name for name in names if getattr(args, name.replace("-", "_"))), None)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SD Studio: a Stable Diffusion web UI (flags follow A1111's names).")
    parser.add_argument(
        "--listen", action="store_true", help="serve on 0.0.0.0 so other machines on the network can connect"
    )
    parser.add_argument("--port", type=int, help="port to serve on (default 7860; 7861 with --nowebui, as A1111)")
    parser.add_argument(
        "--share", action="store_true", help="make a public gradio.live link (needs internet; falls back to local)"
    )
    parser.add_argument(
        "--gradio-auth", metavar="USER:PASS[,USER:PASS…]", help="require a login for the web UI and API"
    )
    parser.add_argument(
        "--gradio-auth-path", type=Path, metavar="FILE", help="read logins (user:pass, commas or lines) from a file"
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="DANGER: serve --listen/--share WITHOUT a login (anyone who reaches the address can use it)",
    )
    parser.add_argument(
        "--api",
        action="store_true",
        help="serve A1111's REST API (/sdapi/v1, docs at /docs); on by default unless --listen or --share",
    )
    parser.add_argument("--nowebui", action="store_true", help="serve the REST API only, without the web UI")
    parser.add_argument(
        "--api-auth", metavar="USER:PASS[,USER:PASS…]", help="logins for the REST API (HTTP Basic); the UI's also work"
    )
    parser.add_argument("--models-dir", type=Path, help="models folder in A1111's layout (default: ./models)")
    parser.add_argument("--outputs-dir", type=Path, help="where images are saved (default: ./outputs)")
    parser.add_argument(
        "--device",
        default="auto",
        help="auto, cpu, cuda, cuda:N, or several (cuda:0,cuda:1): one generation worker process each (default auto)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="CPU threads per generation worker (default: cores / workers)"
    )
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="a generation worker silent this long during a job is restarted (default 600)",
    )
    parser.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp16", "bf16", "fp32"],
        help="weights precision (default auto: fp16 on GPU, fp32 on CPU)",
    )
    memory = parser.add_mutually_exclusive_group()
    for flag, what in (
        ("--medvram", "text encoders and VAE leave the GPU while the UNet runs"),
        ("--medvram-sdxl", "as --medvram, for SDXL checkpoints only"),
        ("--lowvram", "every layer offloaded to the CPU between uses (slowest, least GPU memory)"),
    ):
        memory.add_argument(flag, action="store_true", help=f"{what} (default: chosen from the free GPU memory)")
    for flags, setting, what in SPEED_FLAGS:
        parser.add_argument(*flags, dest=setting, action="store_true", help=f"{what} (Settings → Optimisations)")
    parser.add_argument(
        "--config", type=Path, default=ROOT / "config.json", help="settings file (default ./config.json)"
    )
    parser.add_argument(
        "--styles-file", type=Path, default=ROOT / "styles.csv", help="saved prompt styles (default ./styles.csv)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from core.access import plan_login
    from core.errors import UserError
    from core.settings import Settings, resolve_folder
    from core.untrusted_images import limit_pillow

    limit_pillow()
    first_start = not args.config.exists()
    settings = Settings.load(args.config)
    if args.models_dir:
        settings.models_dir = str(args.models_dir)
    if args.outputs_dir:
        settings.outputs_dir = str(args.outputs_dir)
    cache_dir = resolve_folder(settings.cache_dir, ROOT)
    try:
        login = plan_login(
            reachable_by_others=args.listen or args.share,
            auth=args.gradio_auth,
            auth_path=args.gradio_auth_path,
            insecure_no_auth=args.insecure_no_auth,
            cache_dir=cache_dir,
        )
        outputs_dir = _served_outputs(settings, args)
    except UserError as exc:
        raise SystemExit(str(exc)) from exc
    # Uploads are kept in our cache, not a /tmp/gradio shared with every Gradio app of this machine (Gradio serves
    # its upload folder); set before Gradio is imported.
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir / "uploads")

    # This process runs no model and never imports torch (it starts in seconds and leaves the cores to the
    # workers): the registry reads file headers only; the generation workers (core.worker) do the rest.
    from core.registry import HashCache, ModelRegistry
    from core.services import Services
    from core.starter import default_checkpoint, first_start_defaults
    from core.styles import StyleLibrary
    from core.untrusted_images import MAX_UPLOAD_BYTES
    from core.worker import parse_devices
    from ui.app_ui import CSS, JS, build_ui
    from ui.job_limits import MAX_QUEUED_JOBS, MAX_WAITING_JOBS_PER_SESSION, limit_waiting_jobs
    from ui.remembered import load_or_create_secret

    try:
        devices = parse_devices(args.device)
    except UserError as exc:
        raise SystemExit(str(exc)) from exc
    models_dir = resolve_folder(settings.models_dir, ROOT)
    registry = ModelRegistry(models_dir, HashCache(cache_dir / "models.json"))
    if first_start:
        first_start_defaults(settings, default_checkpoint(registry, settings.default_checkpoint))
    styles = StyleLibrary(args.styles_file)
    workers = _start_workers(args, devices, settings, models_dir, outputs_dir, cache_dir, styles)
    services = Services(
        workers,
        registry,
        settings,
        args.config,
        base_dir=ROOT,
        styles=styles,
        outputs_dir=outputs_dir,
        ui_secret=load_or_create_secret(cache_dir / "browser-state.key"),
    )
    api = _api_router(args, services, login.credentials)
    if args.nowebui:
        _serve_api_only(args, api, workers, login.announcement)
        return
    page = build_ui(services, banner=login.banner)
    page.queue(default_concurrency_limit=1, max_size=MAX_QUEUED_JOBS)
    limit_waiting_jobs(page, MAX_WAITING_JOBS_PER_SESSION)
    workers.start()  # after the page is built (it says "loading the model…" until one is ready)
    if login.announcement:
        print(login.announcement, file=sys.stderr, flush=True)  # printed, never logged: it may hold a password
    app, local_url, share_url = page.launch(
        server_name="0.0.0.0" if args.listen else "127.0.0.1",
        server_port=args.port or 7860,
        share=args.share,
        auth=login.credentials,
        # Served: the output folder (fixed now; no request can add one) and Gradio's own assets and uploads.
        allowed_paths=[str(outputs_dir)],
        blocked_paths=[str(p) for p in (models_dir, cache_dir / "login.txt", args.config, args.styles_file)],
        max_file_size=MAX_UPLOAD_BYTES,
        theme=gr_theme(),
        css=CSS,
        js=JS,
        prevent_thread_lock=True,
        show_error=True,
    )
    if api is not None:
        from api import attach_api

        attach_api(app, api)  # the same server and port: /sdapi/v1/…, /controlnet/…, docs at /docs
    if args.share and not share_url:
        print(
            "Could not create a public share link (no internet?). Serving locally only at " + local_url, file=sys.stderr
        )
    try:
        page.block_thread()
    finally:
        workers.close()  # they would exit anyway when their pipes close; this waits for them


def _api_router(args: argparse.Namespace, services, ui_credentials):
    """The REST API's routes, or None when it is off: on by default for a local server; for an address others can
    reach only with --api (or --nowebui). Its logins: --api-auth's and the UI's."""
    if not (args.api or args.nowebui or not (args.listen or args.share)):
        return None
    from api import build_api_router
    from core.access import parse_credentials
    from core.errors import UserError

    try:
        credentials = parse_credentials(args.api_auth, "--api-auth") if args.api_auth else []
    except UserError as exc:
        raise SystemExit(str(exc)) from exc
    credentials += ui_credentials or []
    return build_api_router(services, credentials or None, vars(args))


def _serve_api_only(args: argparse.Namespace, api, workers, announcement: str) -> None:
    """--nowebui: the REST API alone on its own FastAPI app, served by uvicorn (A1111's port 7861 by default)."""
    import uvicorn

    from api import api_only_app

    if args.share:
        print("--share needs the web UI; serving the API locally only (or on the network with --listen).")
    workers.start()
    if announcement:
        print(announcement, file=sys.stderr, flush=True)
    try:
        uvicorn.run(api_only_app(api), host="0.0.0.0" if args.listen else "127.0.0.1", port=args.port or 7861)
    finally:
        workers.close()


def _start_workers(args, devices, settings, models_dir, outputs_dir, cache_dir, styles):
    """One generation worker process per device (started by the caller, in the background)."""
    from core.worker import WorkerConfig
    from core.worker_pool import WorkerPool

    threads = args.threads or max(1, (os.cpu_count() or 1) // len(devices))
    folders = (str(models_dir), str(outputs_dir), str(cache_dir))
    configs = [WorkerConfig(*folders, device, args.precision, threads, memory_flag(args)) for device in devices]
    forced = {setting: True for _, setting, _ in SPEED_FLAGS if getattr(args, setting)}

    def worker_settings() -> dict:
        return {**settings.worker_settings(), **forced}

    return WorkerPool(configs, styles, settings=worker_settings, hang_seconds=args.worker_timeout, start=False)


def _served_outputs(settings, args: argparse.Namespace) -> Path:
    """The output folder, refused when serving it would also serve the program, models, cache or settings."""
    from core.served_files import checked_output_folder, never_served
    from core.settings import resolve_folder

    protected = never_served(settings, ROOT, args.config, args.styles_file)
    outputs_dir = checked_output_folder(resolve_folder(settings.outputs_dir, ROOT), protected)
    outputs_dir.mkdir(parents=True, exist_ok=True)
    return outputs_dir


def gr_theme():
    import gradio as gr

    return gr.themes.Default(primary_hue="orange")


if __name__ == "__main__":
    main()

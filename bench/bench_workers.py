"""Times txt2img through a generation worker process, as the UI runs it, against the plain diffusers pipeline.

In one run, same model, seed, steps, size, sampler (Euler) and CFG 7, this process playing the web process:
- the plain diffusers pipeline on the main thread of its own process (as its docs show it);
- our engine in that process on a job thread (the design before issue 17, for the before/after table), and on
  its main thread (what a worker does, without the process boundary: the difference is the boundary's cost);
- our engine through a worker process (core.worker_pool.WorkerPool.run, events and previews decoded here as the
  UI gets them), previews None / Approximate every step / Full VAE every 5 steps / Full VAE every step;
- the dispatch overhead per job (wall time here less the job's own time inside the worker);
- the transport of one preview (JPEG encode in the worker, the pipe, decode here).
The runs are interleaved (one of each per round, after a warm-up of each), so drift in the machine's speed falls
on all of them alike. Prints median seconds per image and the ratio ours/plain. Random weights run exactly as fast
as trained ones.

    .venv/bin/python bench/bench_workers.py --preset tiny --size 256 --steps 10 --repeats 5      # CPU
    .venv/bin/python bench/bench_workers.py --preset sd15 --size 512 --steps 20 --device cuda
    .venv/bin/python bench/bench_workers.py --preset sdxl --size 1024 --steps 20 --device cuda
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from bench_txt2img import (  # noqa: E402
    bench_request,
    bench_setup,
    build,
    plain_pipeline,
    run_plain_once,
    sync,
    write_bench_checkpoint,
)
from diffusers.utils import logging as diffusers_logging  # noqa: E402
from PIL import Image  # noqa: E402

from core.devices import choose_policy  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.events import JobControl, Progress, final_result  # noqa: E402
from core.model_cache import ModelCache  # noqa: E402
from core.outputs import OutputWriter  # noqa: E402
from core.registry import HashCache, ModelRegistry  # noqa: E402
from core.request import GenerationRequest  # noqa: E402
from core.wire import event_from_wire, event_to_wire  # noqa: E402
from core.worker import WorkerConfig  # noqa: E402
from core.worker_pool import WorkerPool  # noqa: E402

PREVIEWS = (("None", 1), ("Approximate", 1), ("Full VAE", 5), ("Full VAE", 1))


def through_the_worker(pool: WorkerPool, job: GenerationRequest) -> int:
    """As ui.job_runner consumes a job: every event, previews decoded. Returns how many previews arrived."""
    previews = 0
    for event in pool.run(job, mode="txt2img"):
        if isinstance(event, Progress) and event.preview:
            previews += 1
    return previews


def preview_transport_ms(size: int, repeats: int = 50) -> float:
    """One preview of the job's size: encoded as the worker does, sent through a real pipe, decoded as here."""
    ours, theirs = multiprocessing.Pipe()
    picture = Image.effect_mandelbrot((size, size), (-2, -1.5, 1, 1.5), 100).convert("RGB")  # detail, like a preview
    event = Progress(step=1, total_steps=10, batch_index=0, batch_count=1, elapsed=0.1, eta=1.0, preview=[picture])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        theirs.send({"op": "event", "event": event_to_wire(event)})
        event_from_wire(ours.recv()["event"])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


class _NoSink:
    def put(self, event) -> None:
        pass

    def close(self, error=None) -> None:
        if error:
            raise error


def _reference(connection, preset: str, device: str, precision: str, models_dir: str, outputs_dir: str) -> None:
    """The plain pipeline's own process (and the in-process engine, as the UI ran it before the workers): runs
    what it is asked and answers with the seconds it took."""
    diffusers_logging.set_verbosity_error()
    torch.manual_seed(0)
    policy = choose_policy(device, precision)
    family, parts = build(preset)  # the same seed: the same weights the checkpoint file was written from
    for module in parts.values():
        module.eval().requires_grad_(False)
    plain = plain_pipeline(family, parts, policy)
    registry = ModelRegistry(Path(models_dir), HashCache(Path(outputs_dir) / "cache.json"))
    models = ModelCache(registry, policy, capacity=lambda: 1, sd2_prediction=lambda: "epsilon")
    engine = Engine(models, OutputWriter(Path(outputs_dir)), policy)
    connection.send("ready")
    while (message := connection.recv()) is not None:
        what, args = message
        sync(policy.device)
        start = time.perf_counter()
        if what == "plain":
            run_plain_once(plain, args)
        elif what == "decode":  # what one Full VAE preview costs at least: one decode of one latent
            latents = torch.randn(1, 4, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0))
            with torch.inference_mode():
                plain.vae.decode(latents.to(policy.device, plain.vae.dtype) / plain.vae.config.scaling_factor)
        elif what == "main_thread":  # the engine as a worker runs it, without the process boundary
            engine.run_here(bench_request(args), JobControl(), _NoSink(), "txt2img")
        else:
            final_result(engine.run(bench_request(args)))
        sync(policy.device)
        connection.send(time.perf_counter() - start)


def main() -> None:
    args, policy, family, parts = bench_setup(__doc__, repeats=5)
    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    pool = reference = None
    try:
        write_bench_checkpoint(family, parts, work)
        del parts
        threads = torch.get_num_threads()  # what app.py gives a single worker: all the cores
        device, models = str(policy.device), str(work / "models")
        pool = WorkerPool(
            [WorkerConfig(models, str(work / "outputs"), str(work / "cache"), device, args.precision, threads)]
        )
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        reference = context.Process(
            target=_reference,
            args=(theirs, args.preset, device, args.precision, models, str(work / "ref")),
            daemon=True,
        )
        reference.start()
        ours.recv()
        while not pool.ready:
            if pool.problem:
                raise SystemExit(pool.problem)
            time.sleep(0.1)

        def in_reference(what: str) -> float:
            ours.send((what, args))
            return ours.recv()

        overheads: list[float] = []

        def through_worker(job: GenerationRequest) -> float:
            start = time.perf_counter()
            through_the_worker(pool, job)
            seconds = time.perf_counter() - start
            overheads.append(seconds - pool.last_job_seconds)
            return seconds

        decode_s = statistics.median(in_reference("decode") for _ in range(args.repeats + 1))
        runs = {
            "plain diffusers pipeline (main thread)": lambda: in_reference("plain"),
            "engine in-process, job thread (before)": lambda: in_reference("in_process"),
            "engine, main thread of plain's process": lambda: in_reference("main_thread"),
        }
        for method, every in PREVIEWS:
            label = f"worker, previews {method}" + (f" every {every}" if method != "None" else "")
            job = bench_request(args, method, every)
            runs[label] = lambda job=job: through_worker(job)
        for run in runs.values():
            run()  # warm-up: kernels, allocator, the checkpoint's first load
        overheads.clear()
        times: dict[str, list[float]] = {label: [] for label in runs}
        for _ in range(args.repeats):
            for label, run in runs.items():
                times[label].append(run())

        name = torch.cuda.get_device_name() if policy.device.type == "cuda" else f"CPU, {threads} threads"
        print(
            f"device: {policy.device} ({name}), precision {policy.precision_name}, preset {args.preset}, "
            f"{args.size}x{args.size}, {args.steps} steps, Euler, CFG 7, median of {args.repeats}, interleaved"
        )
        # The median and the best run: on a shared machine a run is only ever slowed down by others, so the best
        # is the steadier comparison of the work itself; both ratios are printed.
        print(f"{'run':<44}{'s/image':>10}{'it/s':>9}{'ours/plain':>12}{'best s':>9}{'best ratio':>12}")
        plain_values = times["plain diffusers pipeline (main thread)"]
        plain_s, plain_best = statistics.median(plain_values), min(plain_values)
        for label, values in times.items():
            seconds, best = statistics.median(values), min(values)
            print(
                f"{label:<44}{seconds:>10.3f}{args.steps / seconds:>9.2f}{seconds / plain_s:>12.3f}"
                f"{best:>9.3f}{best / plain_best:>12.3f}"
            )
        print(f"one VAE decode of a {args.size}x{args.size} latent (plain's VAE): {decode_s:.3f} s")
        print(f"dispatch overhead per job (median of {len(overheads)}): {statistics.median(overheads) * 1000:.1f} ms")
        transport = preview_transport_ms(args.size)
        print(f"preview transport ({args.size}x{args.size}, JPEG, encode + pipe + decode): {transport:.2f} ms")
    finally:
        if reference:
            ours.send(None)
            reference.join(timeout=30)
        if pool:
            pool.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

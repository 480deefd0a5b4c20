"""Times the engine's speed options and memory levels against the plain diffusers pipeline, in one run.

Rows: the plain pipeline; our engine as it runs in a worker (main thread, previews off); the same with the step
cache at N = 2 and 3 (core.step_cache), with the PSNR of its picture against the uncached one. Each row prints
s/image, the ratio to plain and the peak memory of that row (CUDA: max_memory_allocated; CPU: the process's peak
RSS so far, which holds both copies of the model). The rows are interleaved, one of each per round.

    .venv/bin/python bench/bench_optimisations.py --preset tiny --size 256 --steps 10 --repeats 5   # CPU
    .venv/bin/python bench/bench_optimisations.py --preset sd15 --size 256 --steps 10 --repeats 1   # CPU, real size
    .venv/bin/python bench/bench_optimisations.py --preset sd15 --size 512 --steps 20 --device cuda
    .venv/bin/python bench/bench_optimisations.py --preset sdxl --size 1024 --steps 20 --device cuda
"""

from __future__ import annotations

import dataclasses
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_txt2img import bench_request, bench_setup, plain_pipeline, run_plain_once, sync, write_bench_checkpoint  # noqa: E402
from bench_workers import _NoSink  # noqa: E402

from core.engine import Engine  # noqa: E402
from core.events import JobControl  # noqa: E402
from core.model_cache import ModelCache  # noqa: E402
from core.outputs import OutputWriter  # noqa: E402
from core.registry import HashCache, ModelRegistry  # noqa: E402


class _Collect(_NoSink):
    def __init__(self):
        self.result = None

    def put(self, event) -> None:
        self.result = event


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def main() -> None:
    args, policy, family, parts = bench_setup(__doc__)
    work = Path(tempfile.mkdtemp(prefix="bench-optimisations-"))
    try:
        write_bench_checkpoint(family, parts, work)
        plain = plain_pipeline(family, parts, policy)
        registry = ModelRegistry(work / "models", HashCache(work / "cache.json"))
        models = ModelCache(registry, policy, capacity=lambda: 1, sd2_prediction=lambda: "epsilon")
        engine = Engine(models, OutputWriter(work / "outputs"), policy)

        def ours(step_cache: int):
            job = dataclasses.replace(bench_request(args, "None"), step_cache=step_cache)

            def run():
                sink = _Collect()
                engine.run_here(job, JobControl(), sink, "txt2img")
                return np.asarray(sink.result.images[0].image)

            return run

        rows = {"plain diffusers pipeline": lambda: np.asarray(run_plain_once(plain, args)), "engine": ours(0)}
        rows.update({f"engine, step cache {n}": ours(n) for n in (2, 3)})
        times: dict[str, list[float]] = {label: [] for label in rows}
        peaks, pictures = dict.fromkeys(rows, 0), {}
        for run in rows.values():
            run()  # warm-up
        # Interleaved, one of each per round: on a shared machine the speed drifts (CPU credits, neighbours),
        # and a row that always ran first would look faster.
        for _ in range(args.repeats):
            for label, run in rows.items():
                reset_peak(policy.device)
                sync(policy.device)
                start = time.perf_counter()
                pictures[label] = run()
                sync(policy.device)
                times[label].append(time.perf_counter() - start)
                peaks[label] = max(peaks[label], peak_memory(policy.device))
        name = (
            torch.cuda.get_device_name() if policy.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        )
        print(
            f"device: {policy.device} ({name}), precision {policy.precision_name}, preset {args.preset}, "
            f"{args.size}x{args.size}, {args.steps} steps, median of {args.repeats}, interleaved"
        )
        print(f"{'run':<30}{'s/image':>10}{'it/s':>9}{'ours/plain':>12}{'plain/ours':>12}{'peak MiB':>10}{'PSNR':>8}")
        plain_s = statistics.median(times["plain diffusers pipeline"])
        for label, values in times.items():
            seconds = statistics.median(values)
            quality = ""
            if label.startswith("engine, step cache"):
                mse = np.mean((pictures[label].astype(np.float64) - pictures["engine"].astype(np.float64)) ** 2)
                quality = f"{10 * np.log10(255**2 / mse):.1f}" if mse else "inf"
            print(
                f"{label:<30}{seconds:>10.3f}{args.steps / seconds:>9.2f}{seconds / plain_s:>12.3f}"
                f"{plain_s / seconds:>12.2f}{peaks[label] / 2**20:>10.0f}{quality:>8}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

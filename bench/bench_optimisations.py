"""Times the engine's speed options and memory levels against the plain diffusers pipeline, in one run.

Rows: the plain pipeline; our engine as it runs in a worker (main thread, previews off); each speed option of
Settings → Optimisations alone (channels_last, fused QKV, compile, fp8 UNet) and the pixel-keeping ones together;
the step cache at N = 2 and 3 (core.step_cache); and the memory levels 2–4 forced (core.memory_policy). Each row
runs in its own block, interleaved with the plain pipeline (one of each per round), after a warm-up that applies
its options (and compiles): switching options moves or rewrites weights, which is not what a job costs once they
are set. Each row prints s/image, its ratio to the plain runs of its own block, the peak memory of the row (CUDA:
max_memory_allocated; CPU: the process's peak RSS so far, which holds every copy of the model) and the PSNR of its
picture against the engine's default one (inf: the same pixels).

    .venv/bin/python bench/bench_optimisations.py --preset tiny --size 256 --steps 10 --repeats 5   # CPU
    .venv/bin/python bench/bench_optimisations.py --preset sd15 --size 256 --steps 10 --repeats 1   # CPU, real size
    .venv/bin/python bench/bench_optimisations.py --preset sd15 --size 512 --steps 20 --device cuda
    .venv/bin/python bench/bench_optimisations.py --preset sdxl --size 1024 --steps 20 --device cuda
    ... --rows engine,compile,step-cache-3                                          # a subset of the rows
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
from unittest import mock

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_txt2img import bench_request, bench_setup, plain_pipeline, run_plain_once, sync, write_bench_checkpoint  # noqa: E402
from bench_workers import _NoSink  # noqa: E402

import core.engine  # noqa: E402
from core.engine import Engine  # noqa: E402
from core.events import JobControl  # noqa: E402
from core.memory_policy import ALL_ON_GPU, MemoryPlan  # noqa: E402
from core.model_cache import ModelCache  # noqa: E402
from core.outputs import OutputWriter  # noqa: E402
from core.registry import HashCache, ModelRegistry  # noqa: E402
from core.speed import SpeedOptions  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    speed: SpeedOptions = SpeedOptions()
    step_cache: int = 0
    level: int = ALL_ON_GPU


ROWS = {
    "engine": Row("engine (defaults)"),
    "channels-last": Row("channels_last", SpeedOptions(channels_last=True)),
    "fused-qkv": Row("fused QKV", SpeedOptions(fused_qkv=True)),
    "compile": Row("compile", SpeedOptions(compile=True)),
    "pixel-keeping": Row("channels_last+QKV+compile", SpeedOptions(channels_last=True, fused_qkv=True, compile=True)),
    "fp8": Row("fp8 UNet", SpeedOptions(fp8_unet=True)),
    "step-cache-2": Row("step cache 2", step_cache=2),
    "step-cache-3": Row("step cache 3", step_cache=3),
    "all-step-cache-3": Row(
        "pixel-keeping + step cache 3", SpeedOptions(channels_last=True, fused_qkv=True, compile=True), 3
    ),
    "level-2": Row("memory level 2 (model offload)", level=2),
    "level-3": Row("memory level 3 (group offload)", level=3),
    "level-4": Row("memory level 4 (sequential)", level=4),
}


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


class EngineUnderTest:
    """One engine whose Settings → Optimisations and memory level are set per row, as a worker's would be."""

    def __init__(self, work: Path, policy, args):
        self.options = SpeedOptions()
        registry = ModelRegistry(work / "models", HashCache(work / "cache.json"))
        models = ModelCache(
            registry,
            policy,
            capacity=lambda: 1,
            sd2_prediction=lambda: "epsilon",
            fp8_unet=lambda: self.options.fp8_unet,
        )
        self.engine = Engine(models, OutputWriter(work / "outputs"), policy, speed=lambda: self.options)
        self.args = args

    def runner(self, row: Row):
        job = dataclasses.replace(bench_request(self.args, "None"), step_cache=row.step_cache)

        def forced_plan(*_args, **_kwargs):
            return MemoryPlan(row.level, False, "forced by the bench")

        def run():
            self.options = row.speed
            sink = _Collect()
            with mock.patch.object(core.engine, "plan_memory", forced_plan):
                self.engine.run_here(job, JobControl(), sink, "txt2img")
            return np.asarray(sink.result.images[0].image)

        return run


def timed_pair(runs: dict, repeats: int, device: torch.device) -> tuple[dict, dict, int]:
    """Median seconds of each run, interleaved one of each per round, the last picture of each, the peak of the
    last run."""
    times, pictures, peak = {name: [] for name in runs}, {}, 0
    for name, run in runs.items():
        pictures[name] = run()  # warm-up: options applied, graphs compiled, weights placed
    for _ in range(repeats):
        for name, run in runs.items():
            reset_peak(device)
            sync(device)
            start = time.perf_counter()
            pictures[name] = run()
            sync(device)
            times[name].append(time.perf_counter() - start)
            if name == "row":
                peak = peak_memory(device)
    return {name: statistics.median(v) for name, v in times.items()}, pictures, peak


def psnr(a: np.ndarray, b: np.ndarray) -> str:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return f"{10 * np.log10(255**2 / mse):.1f}" if mse else "inf"


def _add_rows_argument(parser) -> None:
    def rows(value: str) -> list[str]:
        names = value.split(",")
        if unknown := [name for name in names if name not in ROWS]:
            raise ValueError(f"unknown rows {unknown}")
        return names

    parser.add_argument("--rows", type=rows, default=list(ROWS), help=f"a comma-separated subset of: {', '.join(ROWS)}")


def main() -> None:
    args, policy, family, parts = bench_setup(__doc__, add_arguments=_add_rows_argument)
    work = Path(tempfile.mkdtemp(prefix="bench-optimisations-"))
    try:
        write_bench_checkpoint(family, parts, work)
        plain = plain_pipeline(family, parts, policy)
        ours = EngineUnderTest(work, policy, args)
        reference = ours.runner(ROWS["engine"])()
        name = (
            torch.cuda.get_device_name() if policy.device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        )
        print(
            f"device: {policy.device} ({name}), precision {policy.precision_name}, preset {args.preset}, "
            f"{args.size}x{args.size}, {args.steps} steps, median of {args.repeats}, each row interleaved with plain"
        )
        print(f"{'run':<34}{'s/image':>9}{'it/s':>8}{'plain s':>9}{'plain/ours':>12}{'peak MiB':>10}{'PSNR':>7}")
        for key in args.rows:
            row = ROWS[key]
            runs = {"plain": lambda: np.asarray(run_plain_once(plain, args)), "row": ours.runner(row)}
            seconds, pictures, peak = timed_pair(runs, args.repeats, policy.device)
            print(
                f"{row.label:<34}{seconds['row']:>9.3f}{args.steps / seconds['row']:>8.2f}{seconds['plain']:>9.3f}"
                f"{seconds['plain'] / seconds['row']:>12.2f}{peak / 2**20:>10.0f}"
                f"{psnr(pictures['row'], reference):>7}",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

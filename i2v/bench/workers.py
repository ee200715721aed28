"""Throughput of worker processes: the same jobs on 1 worker and on N, a ratio from one run each.

``python -m i2v.bench.workers [--jobs 8] [--workers 2] [--gpus 0,1] [--executor ray]``: on the CPU (the default)
the workers split the cores, so the ratio shows the dispatch's overhead more than a gain; with ``--gpus`` each
worker has a GPU. ``--executor ray``: Ray actors on a local Ray instance (or ``--ray-address``) instead of worker
processes, on CPUs, or one per GPU of the cluster with ``--gpus all``. The clock starts once every worker has its
model loaded (a load is not throughput)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from i2v.engine.engine import Engine
from i2v.engine.presets import load_presets
from i2v.engine.request import GenerationRequest
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.keywords import load_keyword_library
from i2v.service.jobs import JobManager
from i2v.speedups import Speedups
from i2v.workers.child import WorkerConfig
from i2v.workers.process import ProcessWorker

LOAD_TIMEOUT_S = 600
JOB_TIMEOUT_S = 1800


def _ray_workers(count: int, gpus: list[int] | None, outputs: Path, engine: Engine, address: str) -> list:
    from types import SimpleNamespace

    from i2v.workers.ray_cluster import build_ray_workers

    settings = SimpleNamespace(ray_address=address, cpu_workers=0 if gpus else count, watchdog_minutes=0)
    return build_ray_workers(settings, engine)[:count]


def _workers(count: int, gpus: list[int] | None, outputs: Path) -> list[ProcessWorker]:
    threads = None if gpus else max(1, (os.cpu_count() or 1) // count)
    return [ProcessWorker(WorkerConfig(name=f"gpu{gpus[n]}" if gpus else f"cpu{n}", gpu=gpus[n] if gpus else None,
                                       output_dir=outputs, min_free_bytes=0, speedups=Speedups(),
                                       presets=load_presets(), keywords=load_keyword_library(), torch_threads=threads))
            for n in range(count)]


def seconds_for(jobs: int, workers: int, request: GenerationRequest, outputs: Path, gpus: list[int] | None,
                ray_address: str | None = None) -> float:
    """Wall time of ``jobs`` copies of ``request`` (seeds 1…) on ``workers`` warm workers (Ray actors when
    ``ray_address`` is not None)."""
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs, min_free_bytes=0)
    built = (_workers(workers, gpus, outputs) if ray_address is None
             else _ray_workers(workers, gpus, outputs, engine, ray_address))
    manager = JobManager(engine, max_queue=jobs, workers=built)
    try:
        manager.warm_up(request)
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while any(info.resident_model != request.model for info in manager.workers()):
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not load the model in time; see the log")
            time.sleep(0.1)
        started = time.perf_counter()
        ids = [manager.submit(_with_seed(request, seed)) for seed in range(1, jobs + 1)]
        states = [manager.wait(job_id, timeout=JOB_TIMEOUT_S).state for job_id in ids]
        elapsed = time.perf_counter() - started
    finally:
        manager.shutdown()
    if states != ["done"] * jobs:
        raise RuntimeError(f"not every job finished: {states}")
    return elapsed


def _with_seed(request: GenerationRequest, seed: int) -> GenerationRequest:
    return replace(request, seeds=(seed,))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m i2v.bench.workers", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="compared with 1 worker")
    parser.add_argument("--gpus", default="", help="GPU numbers for the workers (default: the CPU)")
    parser.add_argument("--image", type=Path, help="input picture (default: a generated one)")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--executor", choices=("process", "ray"), default="process")
    parser.add_argument("--ray-address", default="", help="with --executor ray: empty (a local instance), auto, "
                        "ray://host:10001")
    args = parser.parse_args(argv)
    if args.executor == "ray" and args.gpus.strip() == "all":
        gpus = [0]  # any: the actors go wherever the cluster has a GPU
    else:
        gpus = [int(part) for part in args.gpus.split(",") if part.strip()] or None
    ray_address = args.ray_address if args.executor == "ray" else None
    with tempfile.TemporaryDirectory(prefix="i2v-bench-workers-") as scratch:
        image = args.image or _picture(Path(scratch) / "input.png")
        request = GenerationRequest(image=str(image), prompt="a red ball rolling slowly to the left", model=args.model,
                                    preset="fast-check", resolution=128, frames=8, steps=8)
        one = seconds_for(args.jobs, 1, request, Path(scratch) / "one", gpus, ray_address)
        many = seconds_for(args.jobs, args.workers, request, Path(scratch) / "many", gpus, ray_address)
    print(json.dumps({"jobs": args.jobs, "workers": args.workers, "device": "GPU" if gpus else "CPU",
                      "executor": args.executor,
                      "seconds_1_worker": round(one, 2), f"seconds_{args.workers}_workers": round(many, 2),
                      "speedup": round(one / many, 2)}))
    return 0


def _picture(path: Path) -> Path:
    from PIL import Image

    Image.effect_noise((320, 256), 40).convert("RGB").save(path)
    return path


if __name__ == "__main__":
    sys.exit(main())

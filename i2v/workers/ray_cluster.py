"""``--executor ray``: connect to Ray (or start a local instance) and make one ``RayWorker`` per GPU of the cluster
(``--cpu-workers N``: N actors on CPUs instead, for tests and CPU boxes).

``I2V_RAY_ADDRESS``: empty starts a Ray instance inside the app (one box; its actors see this box's environment),
``auto`` joins the cluster that ``ray start --head`` runs on this box, ``ray://host:10001`` joins one through Ray
Client. The app's own code travels to the actors with the job (``py_modules``), so every box runs the head's
version; the libraries (torch, diffusers) and the models come from each box's own install and cache. The number of
actors is counted once, at start: a box added later is used after the app restarts (its queue survives that).
docs/SCALING.md has the commands."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import i2v
from i2v.errors import I2VError
from i2v.workers.child import WorkerConfig
from i2v.workers.ray_worker import RayWorker

log = logging.getLogger(__name__)

# Passed to the actors of a Ray instance the app starts itself (they run on this box, so this box's settings
# apply); on a cluster each box's own environment (as `ray start` saw it) applies instead.
LOCAL_ENVIRONMENT = ("I2V_CACHE_DIR", "HF_HOME", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "I2V_LORA_DIR", "TORCH_HOME")


class RayUnavailableError(I2VError):
    """Ray is not installed, cannot be reached, or has no GPU to run on. Stops the app at start with what to do."""

    kind = "fatal"


def connect(address: str, cpu_workers: int) -> None:
    """Join (or start) the Ray cluster once per process."""
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--executor ray needs Ray, which the default install leaves out. Install it with "
                                  "./start_app.sh setup --cluster (requirements-cluster.txt), or run without "
                                  "--executor ray.") from None
    if ray.is_initialized():
        return
    runtime_env = {"py_modules": [str(Path(i2v.__file__).parent)]}
    try:
        if address:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        else:
            env = {name: os.environ[name] for name in LOCAL_ENVIRONMENT if name in os.environ}
            ray.init(runtime_env={**runtime_env, "env_vars": env}, include_dashboard=False, log_to_driver=True,
                     num_cpus=max(os.cpu_count() or 1, cpu_workers))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailableError(f"Ray could not be reached at {address or 'a new local instance'}: "
                                  f"{(str(exc).splitlines() or [''])[0][:300]}. Check I2V_RAY_ADDRESS (empty, auto or "
                                  "ray://host:10001) and that `ray start` runs there.") from exc
    log.info("Ray: %s, resources %s", address or "a local instance", _resources_line(ray.cluster_resources()))


def build_ray_workers(settings, engine) -> list[RayWorker]:
    import ray

    connect(settings.ray_address, settings.cpu_workers)
    from i2v.workers.ray_actor import JobActor

    actor_class = ray.remote(JobActor)
    if settings.cpu_workers:
        threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // settings.cpu_workers)
        return [_worker(settings, engine, actor_class, f"ray-cpu{n}", 0, threads) for n in range(settings.cpu_workers)]
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if not gpus:
        raise RayUnavailableError(f"The Ray cluster ({settings.ray_address or 'local'}) has no GPU: "
                                  f"{_resources_line(ray.cluster_resources())}. Join a GPU box to it (`ray start "
                                  "--address=<head>:6379` there), or use --cpu-workers N for actors on CPUs.")
    return [_worker(settings, engine, actor_class, f"ray-gpu{n}", 1, None) for n in range(gpus)]


def _worker(settings, engine, actor_class, name: str, num_gpus: int, threads: int | None) -> RayWorker:
    config = WorkerConfig(name=name, gpu=None, output_dir=engine.output_dir, min_free_bytes=engine.min_free_bytes,
                          speedups=engine.speedups, presets=engine.presets, keywords=engine.keywords,
                          torch_threads=threads)
    return RayWorker(config, actor_class, num_gpus=num_gpus, output_dir=engine.output_dir,
                     watchdog_s=settings.watchdog_minutes * 60)


def _resources_line(resources: dict) -> str:
    wanted = ("CPU", "GPU", "memory")
    nodes = sum(1 for key in resources if key.startswith("node:") and key != "node:__internal_head__")
    shown = ", ".join(f"{key} {resources[key]:g}" for key in wanted if key in resources and key != "memory")
    return f"{nodes} node(s), {shown}"

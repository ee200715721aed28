"""Prometheus metrics for ``GET /metrics``.

One ``CollectorRegistry`` per app, not the library's global one: a process (the tests) may build several apps,
and the global registry refuses a second metric of the same name. Job counters are fed by the ``JobManager``
(this object is its listener); queue length, GPU memory, uptime and the workers (up, jobs by outcome, restarts) are
read when scraped, so they are never stale. Only jobs that started are counted: started = succeeded + failed +
cancelled + interrupted (their worker died; each is re-queued once as a new job) + the ones running.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger(__name__)

FAILURE_KINDS = ("bad_input", "recoverable", "fatal", "internal")
# From a seconds-long check on a big card to a high-quality run on a small one (up to ~30 min).
GENERATION_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 450, 600, 900, 1200, 1800, float("inf"))
# Result notice codes (i2v/planning/planner.py, i2v/engine/run.py) that mark what the engine did to save a job.
DOWNGRADE_CODES = frozenset({"plan.downgraded"})
NAN_RETRY_CODES = frozenset({"numerics.run_retried", "numerics.decode_retried"})
OOM_RECOVERY_CODES = frozenset({"plan.oom_retry"})

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, *, monitor, queue_length: Callable[[], int], started_at: float | None = None,
                 workers: Callable[[], list] | None = None):
        self.registry = CollectorRegistry()
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self.started = counter("i2v_jobs_started_total", "Jobs the worker started.")
        self.succeeded = counter("i2v_jobs_succeeded_total", "Jobs that finished with their videos.")
        self.failed = counter("i2v_jobs_failed_total", "Jobs that failed, by error kind.", "kind")
        for kind in FAILURE_KINDS:
            self.failed.labels(kind)  # present at 0, so rate() and alerts work before the first failure
        self.cancelled = counter("i2v_jobs_cancelled_total", "Started jobs that were cancelled.")
        self.interrupted = counter("i2v_jobs_interrupted_total",
                                   "Started jobs whose worker process died or hung under them (re-queued once).")
        self.downgrades = counter("i2v_plan_downgrades_total",
                                  "Succeeded jobs the planner ran with fewer frames or a lower resolution to fit.")
        self.nan_retries = counter("i2v_nan_retries_total",
                                   "Runs or decodes of succeeded jobs retried in a safer precision after NaN/Inf.")
        self.oom_recoveries = counter("i2v_oom_recoveries_total",
                                      "Out-of-memory errors in succeeded jobs, recovered on a smaller plan.")
        self.generation_seconds = Histogram("i2v_generation_seconds", "Run time of succeeded jobs, in seconds.",
                                            buckets=GENERATION_BUCKETS, registry=self.registry)
        self.registry.register(_LiveCollector(monitor, queue_length, started_at or time.time()))
        self.registry.register(_WorkerCollector(workers or list))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # -- JobManager listener -------------------------------------------------------------------------------
    def job_started(self, job_id: str) -> None:
        self.started.inc()

    def job_finished(self, job_id: str, state: str, *, kind: str | None, result, seconds: float) -> None:
        if state == "done":
            self.succeeded.inc()
            self.generation_seconds.observe(seconds)
            codes = [notice.code for notice in result.notices]
            self.downgrades.inc(any(code in DOWNGRADE_CODES for code in codes))  # one per job, however many candidates
            self.nan_retries.inc(sum(code in NAN_RETRY_CODES for code in codes))
            self.oom_recoveries.inc(sum(code in OOM_RECOVERY_CODES for code in codes))
        elif state == "cancelled":
            self.cancelled.inc()
        elif state == "interrupted":
            self.interrupted.inc()
        else:
            self.failed.labels(kind if kind in FAILURE_KINDS else "internal").inc()


class _LiveCollector:
    """Gauges read at scrape time."""

    def __init__(self, monitor, queue_length: Callable[[], int], started_at: float):
        self.monitor = monitor
        self.queue_length = queue_length
        self.started_at = started_at

    def collect(self):
        yield GaugeMetricFamily("i2v_uptime_seconds", "Seconds since the app started.",
                                value=time.time() - self.started_at)
        yield GaugeMetricFamily("i2v_queue_length", "Jobs waiting behind the running one.",
                                value=self.queue_length())
        used = GaugeMetricFamily("i2v_gpu_memory_used_bytes", "GPU memory in use (all processes).", labels=["gpu"])
        total = GaugeMetricFamily("i2v_gpu_memory_total_bytes", "GPU memory in total.", labels=["gpu"])
        for gpu in self.monitor.snapshot().gpus:  # the monitor never raises; no GPU: no samples
            used.add_metric([str(gpu.index)], gpu.memory_used_bytes)
            total.add_metric([str(gpu.index)], gpu.memory_total_bytes)
        yield used
        yield total


class _WorkerCollector:
    """Per worker (so per GPU), read at scrape time from the workers' own counts (``WorkerInfo``)."""

    LABELS = ["node", "gpu", "worker"]

    def __init__(self, workers: Callable[[], list]):
        self.workers = workers

    def collect(self):
        up = GaugeMetricFamily("i2v_worker_up", "1 while the worker can run jobs (idle or busy), 0 while it starts "
                               "or restarts.", labels=self.LABELS)
        busy = GaugeMetricFamily("i2v_worker_busy", "1 while the worker runs a job.", labels=self.LABELS)
        jobs = CounterMetricFamily("i2v_worker_jobs", "Jobs that ended on this worker, by outcome (lost: the "
                                   "worker died or hung under the job).", labels=[*self.LABELS, "outcome"])
        restarts = CounterMetricFamily("i2v_worker_restarts", "Times the worker process was ended and started "
                                       "again.", labels=self.LABELS)
        for info in self.workers():
            labels = [info.node, info.gpu, info.name]
            up.add_metric(labels, 1.0 if info.state in ("idle", "busy") else 0.0)
            busy.add_metric(labels, 1.0 if info.state == "busy" else 0.0)
            for outcome, count in info.jobs.items():
                jobs.add_metric([*labels, outcome], count)
            restarts.add_metric(labels, info.restarts)
        yield from (up, busy, jobs, restarts)

"""``Dispatcher``: one thread per worker, each taking the next queued job that ``choose_worker`` gives its worker,
running it there and telling the job manager (``DispatchHooks``) how it went.

The queue and its lock belong to the ``JobManager``; the dispatcher takes jobs from it under that lock, so a job is
always either queued or running for ``status`` to find. A job runs on one worker at a time and a worker runs one job
at a time: the most jobs at once is the number of workers."""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from i2v.engine.progress import ProgressEvent
from i2v.engine.request import GenerationRequest
from i2v.logs import job_context
from i2v.workers.gpu_room import GpuRoom
from i2v.workers.outcome import RunOutcome, WorkerInfo
from i2v.workers.pool import choose_worker
from i2v.workers.worker import Worker

log = logging.getLogger(__name__)

# A worker passed over for the job at the head of the queue looks again this soon: the choice reads free GPU memory,
# which changes without telling anyone, so the worker it named may have decided otherwise on its own thread.
RECHECK_SECONDS = 1.0


class DispatchHooks(Protocol):
    """What the job manager does at each point of a job's run (``live`` is its ``_LiveJob``)."""

    def job_taken(self, live: Any, worker: Worker) -> None:
        """Under the queue's lock: the job left the queue for ``worker``."""

    def job_starting(self, live: Any) -> RunOutcome | None:
        """Before it runs: None to go ahead, or how it ended already (the job database refused it)."""

    def job_progress(self, live: Any, event: ProgressEvent) -> None: ...

    def job_ended(self, live: Any, outcome: RunOutcome, worker: Worker, seconds: float) -> None:
        """Record the outcome (and re-queue a ``lost`` job) while ``status`` still finds the job running."""

    def job_released(self, live: Any) -> None:
        """Under the queue's lock: the job is no longer running."""

    def between_jobs(self) -> float | None:
        """Housekeeping on an idle worker's thread; returns how long to wait for work at most (None: until told)."""


class Dispatcher:
    def __init__(self, workers: Sequence[Worker], queue: deque, changed: threading.Condition, hooks: DispatchHooks,
                 room: GpuRoom | None = None):
        """``room``: the GPUs' free memory for each job's predicted peak (None: the resident model and the last use
        decide alone). A queued job carries its prediction as ``peak_bytes``."""
        self.workers = list(workers)
        self._room = room
        self._queue = queue
        self._changed = changed
        self._hooks = hooks
        self._taken: set[str] = set()  # names of workers that have a job (set before the worker says busy)
        self._threads: list[threading.Thread] = []
        self._stopping = False
        self._started = False

    def start(self) -> None:
        """Start the workers and their threads (once)."""
        with self._changed:
            if self._started:
                return
            self._started = True
        for worker in self.workers:
            worker.start()
            thread = threading.Thread(target=self._serve, args=(worker,), name=f"i2v-jobs-{worker.name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float) -> None:
        """No more jobs are taken; wait for the threads (the job manager cancelled the running jobs), then stop
        the workers."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers:
            worker.stop()

    def warm_up(self, request: GenerationRequest) -> None:
        self.start()
        for worker in self.workers:
            worker.warm_up(request)

    def serving(self) -> bool:
        """Whether every worker's thread is alive (a bug that ends one would leave its worker idle for ever)."""
        return self._started and all(thread.is_alive() for thread in self._threads)

    def infos(self) -> list[WorkerInfo]:
        return [worker.info() for worker in self.workers]

    def node_gpus(self) -> list[dict]:
        """Each box of the workers (Ray nodes) with its GPUs, asked of one worker per box."""
        seen: dict[str, dict] = {}
        for worker in self.workers:
            if worker.node not in seen:
                status = worker.node_gpu_status()
                if status is not None:
                    seen[worker.node] = status
        return list(seen.values())

    # -- a worker's thread -----------------------------------------------------------------------------------
    def _serve(self, worker: Worker) -> None:
        while True:
            wait_s = self._hooks.between_jobs()
            with self._changed:
                if self._stopping:
                    return
                live = self._take(worker)
                if live is None:
                    self._changed.wait(self._recheck(wait_s))
                    continue
                self._taken.add(worker.name)
                self._hooks.job_taken(live, worker)
                self._changed.notify_all()
            try:
                self._run(worker, live)
            finally:
                with self._changed:
                    self._taken.discard(worker.name)
                    self._hooks.job_released(live)
                    self._changed.notify_all()

    def _take(self, worker: Worker):
        """The head of the queue, when ``choose_worker`` gives it to this worker."""
        if not self._queue:
            return None
        head = self._queue[0]
        ready = [w for w in self.workers if w.ready and w.name not in self._taken]
        room = self._room
        fits = None if room is None else lambda candidate: room.fits(candidate, head.peak_bytes)
        if choose_worker(head.request.model, ready, fits) is not worker:
            return None
        return self._queue.popleft()

    def _recheck(self, wait_s: float | None) -> float | None:
        """How long a worker without a job waits: until told, unless a job waits at the head for another worker."""
        if self._room is None or not self._queue:
            return wait_s
        return min(wait_s, RECHECK_SECONDS) if wait_s is not None else RECHECK_SECONDS

    def _run(self, worker: Worker, live) -> None:
        with job_context(live.id):
            started = time.monotonic()
            outcome = self._hooks.job_starting(live)
            if outcome is None:
                log.info("running on worker %s (%s)", worker.name, worker.info().gpu)
                outcome = worker.run(live.id, live.request, lambda event: self._hooks.job_progress(live, event),
                                     live.cancel)
            self._hooks.job_ended(live, outcome, worker, time.monotonic() - started)

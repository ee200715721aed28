"""``RayWorker``: the app's side of one Ray actor (``ray_actor.JobActor``), one per GPU of the cluster.

It sends a job with its pictures, polls the actor for progress (with previews), log lines and the finished files,
which it writes into the app's output folder, and passes a cancel on within a poll. An actor that dies (its process
killed, its node lost), stops answering, breaks its CUDA context or reports no step for ``watchdog_s`` is killed
through Ray and replaced by a new one, and the job comes back ``lost`` with the reason; the job manager re-queues it
once, as for a worker process. An idle actor is looked at every few seconds, so one that died between jobs is
replaced before a job is sent to it."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from i2v.engine.progress import CancelToken, ProgressCallback
from i2v.engine.request import GenerationRequest
from i2v.workers.child import WorkerConfig
from i2v.workers.log_relay import write_to_app_log
from i2v.workers.outcome import RunOutcome
from i2v.workers.ray_files import ShippedFileError, pictures_of, relocated, write_shipped
from i2v.workers.worker import Worker

log = logging.getLogger(__name__)

POLL_WAIT_SECONDS = 0.2  # the actor holds a poll this long when it has nothing to say
ANSWER_SECONDS = 60.0  # a poll or hello unanswered this long: the actor (or its node) is taken for dead
IDLE_CHECK_SECONDS = 5.0  # how often an idle actor is asked whether it is alive
GPU_STATUS_SECONDS = 2.0  # /gpu_status is polled by every open page: an actor is asked at most this often
GPU_STATUS_WAIT_SECONDS = 1.0
START_SECONDS = 600.0  # a new actor that is not placed and answering by then (no free GPU in the cluster) is retried


class RayWorker(Worker):
    def __init__(self, config: WorkerConfig, actor_class, *, num_gpus: float, output_dir: Path,
                 watchdog_s: float | None = None):
        super().__init__(config.name, "cpu" if not num_gpus else "?")
        self.config = config
        self.output_dir = Path(output_dir)
        self.watchdog_s = watchdog_s or None
        self._actor_class = actor_class  # ray.remote(JobActor), made by ray_cluster
        self._num_gpus = num_gpus
        self._actor = None
        self._pid: int | None = None
        self._scratch = ""
        self._resident: str | None = None
        self._held_bytes = 0
        self._model_request: GenerationRequest | None = None
        self._life = threading.Lock()
        self._stopping = False
        self._gpu_status: dict | None = None
        self._gpu_status_at = 0.0
        self._generation = 0  # which actor the idle checks and the start-up thread belong to

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def resident_model(self) -> str | None:
        return self._resident

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    def node_gpu_status(self) -> dict | None:
        """Its box's GPUs, read by the actor (NVML there), at most every ``GPU_STATUS_SECONDS``; the last reading
        (or None) when the actor does not answer within ``GPU_STATUS_WAIT_SECONDS`` (the page must not wait)."""
        import ray

        actor, now = self._actor, time.monotonic()
        if actor is None or self._state in ("starting", "restarting", "stopped"):
            return None
        if now - self._gpu_status_at >= GPU_STATUS_SECONDS:
            self._gpu_status_at = now
            try:
                self._gpu_status = ray.get(actor.gpu_status.remote(), timeout=GPU_STATUS_WAIT_SECONDS)
            except Exception as exc:  # noqa: BLE001 - a busy or lost actor: the page shows the last reading
                log.debug("no GPU reading from %s: %s", self.name, exc)
        return self._gpu_status

    # -- life ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Create the actor; it becomes ready once Ray has placed it and it answers."""
        self._set_state("starting")
        self._generation += 1
        self._actor = self._actor_class.options(num_gpus=self._num_gpus, num_cpus=1, max_restarts=0,
                                                max_concurrency=4).remote(self.config)
        threading.Thread(target=self._come_up, args=(self._actor, self._generation),
                         name=f"i2v-ray-{self.name}", daemon=True).start()

    def stop(self) -> None:
        self._stopping = True
        self._kill()
        self._set_state("stopped")

    def warm_up(self, request: GenerationRequest) -> None:
        self._model_request = request
        actor = self._actor
        threading.Thread(target=self._load, args=(actor, request), name=f"i2v-ray-load-{self.name}",
                         daemon=True).start()

    # -- one job ---------------------------------------------------------------------------------------------
    def _run(self, job_id: str, request: GenerationRequest, on_progress: ProgressCallback,
             cancel: CancelToken) -> RunOutcome:
        import ray

        self._model_request = request
        actor = self._actor
        try:
            ray.get(actor.start_job.remote(job_id, request, pictures_of(request)), timeout=ANSWER_SECONDS)
        except OSError as exc:  # the picture went missing from outputs/inputs/ (swept or deleted by hand)
            return RunOutcome("failed", "bad_input", f"The job's picture could not be read: {exc.strerror}.")
        except Exception as exc:  # noqa: BLE001 - any Ray error here means the actor is gone or unreachable
            return self._lost(_why(exc))
        return self._follow(actor, on_progress, cancel)

    def _follow(self, actor, on_progress: ProgressCallback, cancel: CancelToken) -> RunOutcome:
        import ray

        cancel_sent = False
        last_step: float | None = None  # the watchdog starts at the first step after loading (a download is slow)
        while True:
            if cancel.cancelled and not cancel_sent:
                actor.cancel.remote()
                cancel_sent = True
            try:
                messages = ray.get(actor.poll.remote(POLL_WAIT_SECONDS), timeout=ANSWER_SECONDS)
            except Exception as exc:  # noqa: BLE001 - an actor or node lost, or unanswered: all the same here
                return self._lost(_why(exc))
            for message in messages:
                kind = message[0]
                if kind == "progress":
                    if message[1].stage != "load":
                        last_step = time.monotonic()
                    on_progress(message[1])
                elif kind == "log":
                    write_to_app_log(message[1])
                elif kind == "file":
                    try:
                        write_shipped(self.output_dir, message[1], message[2], self._scratch)
                    except (OSError, ShippedFileError) as exc:
                        cancel.cancel()  # the rest of the job's files would be as lost as this one
                        return RunOutcome("failed", "recoverable", f"A finished file could not be written into "
                                          f"the output folder: {exc}.")
                elif kind == "finished":
                    outcome, self._resident, self._held_bytes = message[1], message[2], message[3]
                    if outcome.state == "lost":  # a broken CUDA context: only a new actor helps
                        return self._lost(outcome.message or "broke its CUDA context")
                    if outcome.state == "done":
                        log.info("the finished files came back from %s on %s into %s", self.name, self.node,
                                 self.output_dir)
                    return relocated(outcome, self._scratch, self.output_dir)
            if last_step is not None and self.watchdog_s and time.monotonic() - last_step > self.watchdog_s:
                return self._lost(f"reported no step for {self.watchdog_s / 60:g} minutes (the watchdog's limit: "
                                  "--watchdog-minutes)")

    def _lost(self, reason: str) -> RunOutcome:
        where = f"the Ray worker {self.name} on {self.node} (PID {self._pid})"
        log.error("%s %s: replacing it with a new actor", where, reason)
        self._replace()
        return RunOutcome("lost", "fatal", f"{where[0].upper()}{where[1:]} {reason}.")

    def _replace(self) -> None:
        with self._life:
            self._set_state("restarting")
            self._kill()
            if not self._stopping:
                self.restarts += 1
                self.start()
                if self._model_request is not None:
                    self.warm_up(self._model_request)

    def _kill(self) -> None:
        import ray

        if self._actor is not None:
            try:
                ray.kill(self._actor, no_restart=True)
            except Exception as exc:  # noqa: BLE001 - already gone, or Ray is shutting down: nothing to end
                log.debug("ray.kill of %s: %s", self.name, exc)
        self._resident, self._held_bytes = None, 0

    # -- background threads ----------------------------------------------------------------------------------
    def _come_up(self, actor, generation: int) -> None:
        """Wait until Ray has placed the actor and it answers, then look at it every few seconds while idle."""
        import ray

        try:
            hello = ray.get(actor.hello.remote(), timeout=START_SECONDS)
        except Exception as exc:  # noqa: BLE001 - not placed (no free GPU) or died at start: try a new one
            if generation == self._generation and not self._stopping:
                log.error("Ray worker %s did not start (%s): trying again", self.name, _why(exc))
                self._replace()
            return
        self._pid, self.node, self._scratch = hello["pid"], hello["node"], hello["scratch"]
        self.gpu = ",".join(hello["gpus"]) or "cpu"
        with self._guard:
            if self._state == "starting":
                self._state = "idle"
        log.info("Ray worker %s on %s (GPU %s, PID %d) ready", self.name, self.node, self.gpu, self._pid)
        self._watch_idle(actor, generation)

    def _watch_idle(self, actor, generation: int) -> None:
        import ray

        while generation == self._generation and not self._stopping:
            time.sleep(IDLE_CHECK_SECONDS)
            if self._state != "idle":
                continue
            try:
                ray.get(actor.hello.remote(), timeout=ANSWER_SECONDS)
            except Exception as exc:  # noqa: BLE001 - died or unreachable while idle: replaced, no job is charged
                if generation == self._generation and self._state == "idle" and not self._stopping:
                    log.error("Ray worker %s %s without a job: replacing it", self.name, _why(exc))
                    self._replace()
                return

    def _load(self, actor, request: GenerationRequest) -> None:
        import ray

        try:
            self._resident, self._held_bytes = ray.get(actor.load.remote(request))
        except Exception as exc:  # noqa: BLE001 - a dead actor is replaced by the idle check or the next job
            log.warning("Ray worker %s could not load the model: %s", self.name, _why(exc))


def _why(exc: BaseException) -> str:
    """The reason for the job's notice: what Ray said, in one line."""
    import ray.exceptions as errors

    if isinstance(exc, errors.GetTimeoutError):
        return f"did not answer for {ANSWER_SECONDS:g} s"
    if isinstance(exc, errors.RayActorError):  # ActorDiedError is one
        return "died (its process was killed or crashed, or its node was lost)"
    first = (str(exc).splitlines() or [""])[0][:200]
    return f"failed in Ray ({type(exc).__name__}: {first})"

"""``ProcessWorker``: the app's side of one worker process (``child.py``).

A thread reads everything the child sends (log lines go straight to the app's log; ``ready`` and ``resident`` update
what the worker shows) and notices at once when the pipe closes. ``_run`` sends a job and follows it: progress to
the job manager, cancel to the child's shared event, the outcome back. A child that dies, breaks its CUDA context or
reports no step for ``watchdog_s`` is ended by its PID (and its process group: an ffmpeg it started), started again,
and the job comes back ``lost`` with the reason."""
from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time

from i2v.engine.progress import CancelToken, ProgressCallback
from i2v.engine.request import GenerationRequest
from i2v.workers.child import WorkerConfig, serve
from i2v.workers.log_relay import write_to_app_log
from i2v.workers.outcome import RunOutcome
from i2v.workers.worker import Worker

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a running job's cancel flag and watchdog are looked at
STOP_SECONDS = 5.0  # a worker asked to stop gets this long before it is killed
GONE_SECONDS = 5.0  # how long to wait for the killed worker's processes to disappear
QUICK_RESTARTS_SECONDS = 60.0  # restarts closer than this back off (a worker that dies at start, over and over)
MAX_BACKOFF_SECONDS = 30.0
SIGNAL_HINTS = {
    signal.SIGKILL: "killed (SIGKILL: the kernel's out-of-memory killer does this when the machine runs out of RAM)",
    signal.SIGSEGV: "crashed (SIGSEGV: a segmentation fault in native code)",
    signal.SIGABRT: "aborted (SIGABRT)",
    signal.SIGBUS: "crashed (SIGBUS)",
}


class ProcessWorker(Worker):
    def __init__(self, config: WorkerConfig, *, watchdog_s: float | None = None):
        super().__init__(config.name, "cpu" if config.gpu is None else str(config.gpu))
        self.config = config
        self.watchdog_s = watchdog_s or None  # 0: off
        self._context = multiprocessing.get_context("spawn")  # never fork: see child.py
        self._process = None
        self._conn = None
        self._cancel = None
        self._inbox: queue.Queue = queue.Queue()
        self._resident: str | None = None
        self._held_bytes = 0
        self._last_restart = 0.0
        self._quick_restarts = 0
        self._stopping = False  # set by stop(): a child that dies now is not restarted
        self._life = threading.Lock()  # held while the child is ended and started again
        self._model_request: GenerationRequest | None = None  # what a restarted child loads to have its model back

    @property
    def where(self) -> str:
        return "the CPU" if self.config.gpu is None else f"GPU {self.config.gpu}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def resident_model(self) -> str | None:
        return self._resident

    @property
    def held_bytes(self) -> int:
        return self._held_bytes

    @property
    def ready(self) -> bool:
        return self._state in ("idle", "starting")  # a starting child takes its first job once it has imported

    # -- life ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        parent_conn, child_conn = self._context.Pipe()
        self._cancel = self._context.Event()
        self._inbox = queue.Queue()
        self._resident, self._held_bytes = None, 0
        self._set_state("starting")
        process = self._context.Process(target=serve, args=(self.config, child_conn, self._cancel),
                                        name=f"i2v-worker-{self.name}", daemon=True)
        process.start()
        child_conn.close()  # only the child holds its end: its death closes the pipe
        self._process, self._conn = process, parent_conn
        threading.Thread(target=self._read, args=(parent_conn, self._inbox), name=f"i2v-read-{self.name}",
                         daemon=True).start()
        log.info("worker %s on %s started (PID %d)", self.name, self.where, process.pid)
        if self._model_request is not None:  # a restart: the model it had is loaded again before any job
            self.warm_up(self._model_request)

    def stop(self) -> None:
        """Ask the child to finish, then end it by its PID if it does not."""
        self._stopping = True
        if self._process is None:
            return
        try:
            self._conn.send(("stop",))
        except (OSError, ValueError):  # already gone
            pass
        self._process.join(STOP_SECONDS)
        self._end_process()
        self._set_state("stopped")

    def warm_up(self, request: GenerationRequest) -> None:
        self._model_request = request
        try:
            self._conn.send(("load", request))
        except (OSError, ValueError) as exc:  # the worker died: its next job restarts it
            log.warning("worker %s could not be asked to load the model: %s", self.name, exc)

    # -- one job ---------------------------------------------------------------------------------------------
    def _run(self, job_id: str, request: GenerationRequest, on_progress: ProgressCallback,
             cancel: CancelToken) -> RunOutcome:
        with self._life:  # a restart after the child died idle finishes first; the job goes to the new child
            self._set_state("busy")
        self._cancel.clear()
        self._model_request = request
        try:
            self._conn.send(("run", job_id, request))
        except (OSError, ValueError):
            return self._lost("could not be reached")
        last_step: float | None = None  # the watchdog starts at the first step after loading (a download is slow)
        while True:
            if cancel.cancelled and not self._cancel.is_set():
                self._cancel.set()
            try:
                message = self._inbox.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if last_step is not None and self.watchdog_s and time.monotonic() - last_step > self.watchdog_s:
                    return self._lost(f"reported no step for {self.watchdog_s / 60:g} minutes (the watchdog's "
                                      "limit: --watchdog-minutes)")
                continue
            if message[0] == "progress":
                if message[1].stage != "load":
                    last_step = time.monotonic()
                on_progress(message[1])
            elif message[0] == "finished":
                outcome = message[1]
                if outcome.state == "lost":  # the child exits by itself; a new one takes the next job
                    return self._lost(outcome.message or "broke its CUDA context")
                return outcome
            elif message[0] == "gone":
                return self._lost(self._exit_reason())

    def _lost(self, reason: str) -> RunOutcome:
        pid = self.pid
        log.error("worker %s on %s (PID %s) %s: ending and restarting it", self.name, self.where, pid, reason)
        with self._life:
            self._set_state("restarting")
            self._end_process()
            if not self._stopping:
                self._restart()
        return RunOutcome("lost", "fatal", f"The worker process on {self.where} (PID {pid}) {reason}.")

    def _restart(self) -> None:
        now = time.monotonic()
        self._quick_restarts = self._quick_restarts + 1 if now - self._last_restart < QUICK_RESTARTS_SECONDS else 0
        if self._quick_restarts:
            time.sleep(min(2.0 ** self._quick_restarts, MAX_BACKOFF_SECONDS))
        self._last_restart = time.monotonic()
        self.restarts += 1
        self.start()

    def _exit_reason(self) -> str:
        self._process.join(GONE_SECONDS)
        code = self._process.exitcode
        if code is None:
            return "closed its connection to the app"
        if code < 0:
            number = -code
            hint = SIGNAL_HINTS.get(number)
            return f"was {hint}" if hint else f"was ended by signal {signal.Signals(number).name}"
        return f"exited with code {code}"

    def _end_process(self) -> None:
        """End the child by its PID, and its process group (an ffmpeg it started), and wait until they are gone, so
        no one writes the job's files after the job manager sweeps them."""
        process = self._process
        if process is None:
            return
        if process.is_alive():
            process.kill()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # the child leads its group (child.py): its ffmpeg goes too
        except (ProcessLookupError, PermissionError):  # no group left: nothing else to end
            pass
        process.join(GONE_SECONDS)
        deadline = time.monotonic() + GONE_SECONDS
        while time.monotonic() < deadline and _group_alive(process.pid):
            time.sleep(0.05)
        if self._conn is not None:
            self._conn.close()

    def _restarted_while_idle(self, inbox: queue.Queue) -> bool:
        """A child that died without a job (killed while idle, or while it loaded the model at start) is started
        again here, so no job pays for it with its one retry. False when a job is running (or the worker stops)."""
        with self._life:
            with self._guard:
                if inbox is not self._inbox or self._stopping or self._state not in ("idle", "starting"):
                    return False
                self._state = "restarting"  # not ready: the dispatcher gives it no job meanwhile
            log.error("worker %s on %s (PID %s) %s without a job: restarting it", self.name, self.where, self.pid,
                      self._exit_reason())
            self._end_process()
            self._restart()
        return True

    def _read(self, conn, inbox: queue.Queue) -> None:
        """Everything the child sends, until its pipe closes."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):  # the child died, or this pipe was closed on a restart
                if not self._restarted_while_idle(inbox):
                    inbox.put(("gone",))  # a job is running: _run ends and restarts the worker, and says why
                return
            kind = message[0]
            if kind == "log":
                write_to_app_log(message[1])
            elif kind == "ready":
                with self._guard:
                    if self._state == "starting":
                        self._state = "idle"
            elif kind == "resident":
                self._resident, self._held_bytes = message[1], message[2]
            else:
                inbox.put(message)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True

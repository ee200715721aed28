"""Idle auto-stop: a rented GPU costs money by the hour, so the app can stop itself after N minutes without jobs.

"Without jobs" means nothing queued, nothing running, and no job started or finished for the whole period. Page
views and GPU polling do not count: an open, forgotten browser tab must not keep a paid machine alive.
The watcher is a ``JobListener`` (every job start and finish resets the clock) and asks the job manager whether
anything is waiting or running before it stops anything.
"""
from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable

from i2v.service.jobs import JobListener

log = logging.getLogger(__name__)

IDLE_COMMAND_TIMEOUT_S = 120


class IdleWatcher(JobListener):
    """Calls ``on_idle`` once, from its own thread, when ``minutes`` pass with ``busy()`` false and no job event.

    ``minutes`` 0 turns it off (``seconds_left()`` is then None). ``clock`` and ``check_every`` are for tests.
    """

    def __init__(self, minutes: float, *, busy: Callable[[], bool], on_idle: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic, check_every: float | None = None):
        self.period = minutes * 60.0
        self._busy = busy
        self._on_idle = on_idle
        self._clock = clock
        # Checking a tenth of the period (5..30 s) stops within ~10 % of the promise at negligible cost.
        self._check_every = check_every if check_every is not None else min(30.0, max(5.0, self.period / 10))
        self._last_activity = clock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.period > 0

    def seconds_left(self) -> float | None:
        """Seconds until the idle stop, or None when it is off. While a job runs or waits, the full period."""
        if not self.enabled:
            return None
        if self._busy():
            return self.period
        return max(0.0, self.period - (self._clock() - self._last_activity))

    def touch(self) -> None:
        self._last_activity = self._clock()

    # -- JobListener -------------------------------------------------------------------------------------------
    def job_started(self, job_id: str) -> None:
        self.touch()

    def job_finished(self, job_id: str, state: str, *, kind, result, seconds: float) -> None:
        self.touch()

    # -- the watching thread -------------------------------------------------------------------------------------
    def start(self) -> "IdleWatcher":
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="i2v-idle-watch", daemon=True)
            self._thread.start()
            log.info("idle auto-stop on: the app stops after %s without a job", _minutes_text(self.period))
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._check_every):
            if self.seconds_left() == 0.0 and not self._busy():
                log.warning("no job for %s: stopping the app (idle auto-stop, I2V_IDLE_STOP_MINUTES)",
                            _minutes_text(self.period))
                self._on_idle()
                return


def run_idle_command(command: str) -> int | None:
    """Run the operator's after-idle command (``sudo poweroff``, a cloud CLI's "stop this machine"). Returns its
    exit status, None when it could not run; never raises, as the app is stopping anyway."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        log.error("I2V_IDLE_COMMAND %r cannot be split into words (%s): not run", command, exc)
        return None
    if not argv:
        return None
    log.warning("running the idle command: %s", command)
    try:
        finished = subprocess.run(argv, timeout=IDLE_COMMAND_TIMEOUT_S, check=False, capture_output=True, text=True)
    except (OSError, subprocess.SubprocessError) as exc:
        log.error("the idle command %r failed to run: %s", command, exc)
        return None
    output = (finished.stdout + finished.stderr).strip()
    (log.info if finished.returncode == 0 else log.error)(
        "the idle command exited with status %d%s", finished.returncode, f": {output[-500:]}" if output else "")
    return finished.returncode


def _minutes_text(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")

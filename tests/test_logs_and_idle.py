"""Operations on a long-running box: every run gets its own log file that rotates and old runs are pruned; the
idle auto-stop counts only jobs, and its command runs after the stop."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time

from i2v.service.idle import IdleWatcher, run_idle_command
from i2v.logs import configure_logging, job_context, new_run_log


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- log files -------------------------------------------------------------------------------------------------


def test_each_run_gets_a_new_file_and_latest_points_at_it(tmp_path):
    first = new_run_log(tmp_path, keep=5)
    second = new_run_log(tmp_path, keep=5)  # same second: must not share the file
    assert first != second and first.exists() and second.exists()
    assert first.name.startswith("app_") and first.suffix == ".log"
    assert (tmp_path / "latest.log").resolve() == second.resolve()


def test_old_runs_are_pruned_with_their_rotated_parts(tmp_path):
    old = []
    for age in range(4):
        path = tmp_path / f"app_2020010{age}_000000.log"
        path.write_text("old run\n")
        (tmp_path / f"{path.name}.1").write_text("rotated part\n")
        os.utime(path, (1_600_000_000 + age, 1_600_000_000 + age))
        old.append(path)
    unrelated = tmp_path / "notes.txt"
    unrelated.write_text("mine")
    current = new_run_log(tmp_path, keep=3)
    kept = sorted(p.name for p in tmp_path.glob("app_*.log"))
    assert kept == sorted([current.name, old[3].name, old[2].name])
    assert not (tmp_path / f"{old[0].name}.1").exists() and not (tmp_path / f"{old[1].name}.1").exists()
    assert (tmp_path / f"{old[3].name}.1").exists() and unrelated.exists()


def test_a_long_run_rotates_its_file_and_keeps_job_ids(tmp_path):
    log_file = new_run_log(tmp_path, keep=5)
    configure_logging(log_file=log_file, stream=None, max_bytes=4096)
    try:
        logger = logging.getLogger("i2v.test.rotation")
        with job_context("cafe0042"):
            for line in range(400):
                logger.info("denoising step %d of a long job", line)
    finally:
        configure_logging(stream=sys.stderr)  # back to the test session's handlers only
    parts = sorted(tmp_path.glob(f"{log_file.name}.*"))
    assert [p.name.rsplit(".", 1)[1] for p in parts] == ["1", "2", "3", "4", "5"]  # five older parts, no more
    for path in [log_file, *parts]:
        assert path.stat().st_size <= 4096 + 200
        lines = path.read_text().splitlines()
        assert lines and all("[job cafe0042]" in line for line in lines)
    assert "step 399 " in log_file.read_text()  # the live file has the newest lines


# -- idle auto-stop --------------------------------------------------------------------------------------------


def test_off_by_default():
    watcher = IdleWatcher(0, busy=lambda: False, on_idle=lambda: None)
    assert not watcher.enabled and watcher.seconds_left() is None


def test_counts_down_only_while_nothing_is_queued_or_running():
    clock, busy = Clock(), [False]
    watcher = IdleWatcher(10, busy=lambda: busy[0], on_idle=lambda: None, clock=clock)
    clock.now += 240
    assert watcher.seconds_left() == 360
    busy[0] = True
    clock.now += 600
    assert watcher.seconds_left() == 600  # a job waiting or running: never idle
    busy[0] = False
    watcher.job_finished("j1", "done", kind=None, result=None, seconds=5.0)  # the job's end restarts the clock
    clock.now += 60
    assert watcher.seconds_left() == 540
    clock.now += 10_000
    assert watcher.seconds_left() == 0


def test_the_watcher_stops_once_when_idle_and_not_while_busy():
    busy, stops = [True], []
    stopped = threading.Event()
    watcher = IdleWatcher(0.002, busy=lambda: busy[0], check_every=0.02,  # 0.12 s
                          on_idle=lambda: (stops.append(time.monotonic()), stopped.set()))
    watcher.start()
    try:
        assert not stopped.wait(0.5)  # a long job: no stop however long it takes
        busy[0] = False
        watcher.job_finished("j1", "done", kind=None, result=None, seconds=0.5)
        assert stopped.wait(5)
        time.sleep(0.2)
        assert len(stops) == 1
    finally:
        watcher.stop()


def test_the_idle_command_runs_and_a_broken_one_only_logs(tmp_path, caplog):
    marker = tmp_path / "powered off"
    assert run_idle_command(f"touch '{marker}'") == 0 and marker.exists()
    assert run_idle_command("false") == 1
    with caplog.at_level(logging.ERROR):
        assert run_idle_command("/no/such/poweroff --now") is None
        assert run_idle_command("echo 'unbalanced") is None
    assert "failed to run" in caplog.text and "cannot be split" in caplog.text

"""./start_app.sh on a copy of the project (sharing this .venv): start, status, restart with a new PID, stop
leaving no process, the log files, and a clear failure when the app cannot start."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from web_support import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path) -> Path:
    copy = tmp_path / "studio"
    copy.mkdir()
    for name in ("start_app.sh", "app.py", "requirements.txt", "requirements-dev.txt"):
        shutil.copy2(REPO / name, copy / name)
    for folder in ("i2v", "presets"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".venv").symlink_to(REPO / ".venv")
    return copy


def script(project: Path, *args: str, port: int, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "I2V_PORT": str(port), "I2V_MODEL": "tiny", "I2V_OUTPUT_DIR": str(project / "outputs")}
    return subprocess.run([str(project / "start_app.sh"), *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def test_start_status_restart_stop(project):
    port = free_port()
    started = script(project, port=port)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"I2V Studio is running: http://127.0.0.1:{port}/" in started.stdout
        first = int((project / "logs" / "app.pid").read_text())
        assert alive(first)
        logs = list((project / "logs").glob("app_*.log"))
        assert len(logs) == 1 and (project / "logs" / "latest.log").resolve() == logs[0].resolve()

        status = script(project, "status", port=port)
        assert status.returncode == 0
        assert f"PID:  {first}" in status.stdout and re.search(r"model: (none|tiny) in memory \(configured: tiny\)", status.stdout)
        assert f"http://127.0.0.1:{port}/" in status.stdout and "GPU:   none" in status.stdout
        # Without a GPU (and without --cpu-workers) the app's own process is the one worker.
        assert "worker in-process: the CPU of " in status.stdout and f"PID {first}, " in status.stdout

        time.sleep(1.1)  # the next log file gets its own second
        again = script(project, port=port)
        assert again.returncode == 0, again.stdout + again.stderr
        second = int((project / "logs" / "app.pid").read_text())
        assert second != first and alive(second) and not alive(first)
        assert len(list((project / "logs").glob("app_*.log"))) == 2
    finally:
        stopped = script(project, "stop", port=port)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not alive(second)
    assert not (project / "logs" / "app.pid").exists()
    after = script(project, "status", port=port)
    assert after.returncode == 3 and "not running" in after.stdout
    assert script(project, "stop", port=port).returncode == 0  # twice is fine


def test_a_start_that_fails_shows_the_log_and_leaves_nothing_running(project):
    port = free_port()
    env_model = script(project, "--model", "no/such-model-folder/at all", port=port)
    assert env_model.returncode != 0
    assert "Last log lines" in env_model.stderr and "cannot start: Model 'no/such-model-folder/at all'" in env_model.stderr
    assert "Traceback" not in env_model.stderr
    assert not (project / "logs" / "app.pid").exists()


def test_it_never_kills_a_process_it_did_not_start(project):
    """A PID file pointing at someone else's process (PID reuse) is ignored, not signalled."""
    port = free_port()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        (project / "logs").mkdir()
        (project / "logs" / "app.pid").write_text(str(bystander.pid))
        assert "not running" in script(project, "stop", port=port).stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()


def test_idle_auto_stop_stops_the_app_and_runs_the_idle_command(project, tmp_path):
    """A rented box: after the idle period without jobs the app stops itself, runs the configured command
    (here: touch a file, standing in for `sudo poweroff`) and leaves no process; status showed the countdown."""
    port = free_port()
    marker = tmp_path / "machine powered off"
    started = script(project, "--idle-stop-minutes", "0.1", "--idle-command", f"touch '{marker}'", port=port)
    pid = int((project / "logs" / "app.pid").read_text())
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        status = script(project, "status", port=port)
        assert "idle:  stops itself in" in status.stdout and "after 0 min 06 s without one" in status.stdout
        deadline = time.monotonic() + 60
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not alive(pid)
        assert marker.exists()
        log = (project / "logs" / "latest.log").read_text()
        assert "no job for 0.1 minutes: stopping the app" in log and "the idle command exited with status 0" in log
        # In the background every line goes to the rotating log file, none to the console file.
        assert "stopping the app" not in (project / "logs" / "console.log").read_text()
        assert script(project, "status", port=port).returncode == 3
    finally:
        if alive(pid):
            os.kill(pid, 9)

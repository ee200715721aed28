"""Jobs survive a crash: ``kill -9`` of the real ``app.py`` in the middle of a job, then a fresh start on the same
outputs folder. The killed job is shown as interrupted, the job finished before it and its files are untouched,
nothing half-written (nor any video of the killed job) is left anywhere under the outputs folder, and the
restarted app runs a new job.

The kill is timed to the worst moment: the long job has two candidates, and the server is killed while the
second one is being encoded, so on disk there is both a finished video the job never recorded (candidate 1) and
ffmpeg's partial file (candidate 2).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from i2v.engine.engine import Engine
from i2v.service.jobs import JobManager
from i2v.service.jobstore import FILE_NAME as JOBS_DB
from i2v.service.jobstore import JobRecord, JobStore
from i2v.engine.video import probe_mp4
from i2v.web import render

from conftest import photo_like
from web_support import free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
PYTHON = REPO / ".venv" / "bin" / "python"
PROMPT = "a red ball rolling slowly to the left"
SHORT = {"preset": "fast-check", "resolution": 128, "frames": 4, "steps": 2}
# Long enough on the tiny model that the kill lands mid-job; two candidates so one video is already written.
LONG = {"preset": "fast-check", "resolution": 128, "frames": 64, "steps": 2, "candidates": 2, "seed": 7}
START_TIMEOUT_S = 180
POLL_S = 0.005  # the encode window being watched for is a few hundred milliseconds


# -- the app as a process ----------------------------------------------------------------------------------------


class App:
    """``python app.py`` on a port and an outputs folder, its log in a file."""

    def __init__(self, outputs: Path, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log_path = log_path
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("I2V_AUTH", None)  # the test talks to the app without credentials
        python = PYTHON if PYTHON.exists() else Path(sys.executable)
        with open(log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [str(python), "app.py", "--port", str(self.port), "--model", "tiny", "--output-dir", str(outputs),
                 "--log-dir", str(outputs.parent / "logs")],
                cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"app.py exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        pytest.fail(f"app.py did not answer /healthz within {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ask politely, then insist; wait either way so no server outlives the test."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=20)


def processes_writing(job_id: str) -> list[int]:
    """Processes whose command line names one of the job's files: the ffmpeg encoder the killed app left."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if f"_{job_id}_".encode() in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
        except OSError:
            continue  # gone meanwhile
    return found


def running(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def wait_gone(pids: list[int], timeout: float = 30) -> None:
    """An orphaned ffmpeg sees its input close and finishes its partial file; let it, so the restart's sweep is
    not racing it. Killed if it takes too long (it is ours: the app under test started it)."""
    deadline = time.monotonic() + timeout
    while any(running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


# -- reading the outputs folder ----------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def jobs(outputs: Path) -> dict[str, JobRecord]:
    return {record.id: record for record in JobStore.in_folder(outputs).recent(100)}


def states(outputs: Path) -> dict[str, str]:
    """Job states through a read-only connection: polled often, so it must not write (JobStore's constructor
    does) while the app is writing."""
    db = sqlite3.connect(f"file:{outputs / JOBS_DB}?mode=ro", uri=True, timeout=10)
    try:
        return dict(db.execute("SELECT id, state FROM jobs").fetchall())
    finally:
        db.close()


def job_files(outputs: Path, job_id: str) -> list[Path]:
    return sorted(p for p in outputs.rglob("*") if p.is_file() and f"_{job_id}_" in p.name)


def wait_for_running_job(outputs: Path, known: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [job_id for job_id, state in states(outputs).items() if job_id not in known and state == "running"]
        if found:
            return found[0]
        time.sleep(0.1)
    pytest.fail(f"the long job was not running within {timeout} s: {states(outputs)}")


def wait_for_second_encode(outputs: Path, job_id: str, timeout: float) -> list[Path]:
    """Until candidate 1's video is in place and candidate 2's partial file is being written."""
    deadline = time.monotonic() + timeout
    next_state_check = 0.0
    while time.monotonic() < deadline:
        files = job_files(outputs, job_id)
        first_done = any(p.name.endswith(".mp4") and "_01_" in p.name and ".partial" not in p.name for p in files)
        second_partial = any(".partial" in p.name and "_02_" in p.name and p.name.endswith(".mp4") for p in files)
        if first_done and second_partial:
            return files
        if time.monotonic() > next_state_check:
            state = states(outputs)[job_id]
            if state != "running":
                pytest.fail(f"the long job ended ({state}) before the kill; files: {files}")
            next_state_check = time.monotonic() + 0.5
        time.sleep(POLL_S)
    pytest.fail(f"candidate 2 of job {job_id} was not encoding within {timeout} s: {job_files(outputs, job_id)}")


def recorded_videos(records: dict[str, JobRecord]) -> set[Path]:
    return {Path(video["path"]).resolve() for record in records.values() if record.state == "done"
            for video in record.result["videos"]}


# -- the test ----------------------------------------------------------------------------------------------------


def test_kill_9_mid_job_then_restart_shows_it_interrupted_and_keeps_finished_work(tmp_path):
    outputs = (tmp_path / "outputs").resolve()
    image = tmp_path / "input.png"
    photo_like(320, 256).save(image)
    apps: list[App] = []
    clients: list[Client] = []
    figures: dict[str, object] = {}
    try:
        first_app = App(outputs, tmp_path / "app-1.log")
        apps.append(first_app)
        first_app.wait_ready()
        client = Client(first_app.url, verbose=False)
        clients.append(client)

        # 1. A short job runs to completion: the work that must survive.
        video, _files, result = client.predict(handle_file(str(image)), PROMPT, api_name="/generate", **SHORT)
        finished_id = result["job_id"]
        finished = jobs(outputs)[finished_id]
        assert finished.state == "done"
        kept = {Path(p).resolve(): sha256(p) for v in finished.result["videos"]
                for p in (v["path"], v["sidecar"], v["poster"]) if p}
        assert len(kept) == 3, kept  # video, its record, its poster

        # 2. A long job, killed while its second video is being encoded.
        submitted = time.monotonic()
        client.submit(handle_file(str(image)), PROMPT, api_name="/generate", **LONG)
        long_id = wait_for_running_job(outputs, {finished_id}, timeout=60)
        before_kill = wait_for_second_encode(outputs, long_id, timeout=300)
        os.kill(first_app.pid, signal.SIGKILL)
        killed_after = time.monotonic() - submitted
        first_app.process.wait(timeout=30)
        encoders = processes_writing(long_id)
        wait_gone(encoders)
        states_before = {job_id: record.state for job_id, record in jobs(outputs).items()}
        assert states_before == {finished_id: "done", long_id: "running"}
        left_by_kill = sorted(p.name for p in job_files(outputs, long_id))
        # The sweep has work to do: candidate 1's finished but unrecorded video, and (unless the encode finished in
        # the few milliseconds between seeing its partial file and the kill) candidate 2's partial file.
        assert any(name.endswith(".mp4") and "_01_" in name and ".partial" not in name for name in left_by_kill)
        if not any(".partial" in name for name in left_by_kill):
            log.warning("candidate 2 was encoded just before the kill; no partial file to sweep this time")
        figures.update(killed_after_s=round(killed_after, 1), states_before=states_before,
                       files_at_kill=[p.name for p in before_kill], left_by_kill=left_by_kill,
                       orphan_encoders=len(encoders))

        # 3. Start again on the same folder.
        second_app = App(outputs, tmp_path / "app-2.log")
        apps.append(second_app)
        second_app.wait_ready()
        records = jobs(outputs)
        states_after = {job_id: record.state for job_id, record in records.items()}
        figures["states_after"] = states_after
        assert states_after == {finished_id: "done", long_id: "interrupted"}
        assert records[long_id].error_kind == "interrupted"
        assert "stopped before this job finished" in records[long_id].error_message
        assert f"job {long_id} " in second_app.log_tail(200) and "interrupted" in second_app.log_tail(200)

        # What the page's history shows (the rows Studio.history renders from JobManager.history).
        history = JobManager(Engine(output_dir=outputs), JobStore.in_folder(outputs)).history()
        assert {status.id: status.state for status in history} == states_after
        table = render.history_table(history)
        assert f'data-job="{long_id}" data-state="interrupted"' in table
        assert f'data-job="{finished_id}" data-state="done"' in table

        # The earlier job's files are intact, byte for byte.
        for path, digest in kept.items():
            assert path.is_file() and sha256(path) == digest, path
        probe = probe_mp4(Path(video))
        assert probe["frames"] == SHORT["frames"] and probe["codec"].startswith("h264"), probe

        # Nothing half-written, and no video the history does not know, anywhere under the outputs folder.
        everything = sorted(p for p in outputs.rglob("*") if p.is_file())
        assert not [p for p in everything if ".partial" in p.name], everything
        unrecorded = [p for p in everything if p.suffix == ".mp4" and p.resolve() not in recorded_videos(records)]
        assert not unrecorded, unrecorded
        assert not job_files(outputs, long_id), job_files(outputs, long_id)
        figures["files_after"] = [str(p.relative_to(outputs)) for p in everything]

        # 4. The restarted app takes a new job.
        again = Client(second_app.url, verbose=False)
        clients.append(again)
        new_video, _files, new_result = again.predict(handle_file(str(image)), PROMPT, api_name="/generate",
                                                      **SHORT)
        assert jobs(outputs)[new_result["job_id"]].state == "done"
        assert probe_mp4(Path(new_video))["frames"] == SHORT["frames"]
        assert httpx.get(second_app.url + "healthz", timeout=30).json()["ok"] is True
        print(f"\ncrash figures: {json.dumps(figures)}")  # for the reliability notes (pytest -s)
    finally:
        for open_client in clients:
            try:
                open_client.close()
            except Exception:  # noqa: BLE001 - the first client's server is dead by design
                log.debug("closing a client failed", exc_info=True)
        for app in apps:
            app.stop()

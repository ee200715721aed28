"""What the worker tests (processes: test_workers.py; Ray actors: test_ray_workers.py) look at: the workers as
``GET /api/workers`` lists them, when jobs ran, and the files a job left in the outputs folder."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest


def workers(server) -> list[dict]:
    response = httpx.get(server.url + "api/workers", timeout=30)
    assert response.status_code == 200
    return response.json()["workers"]


def wait_until(condition, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(every)
    pytest.fail(f"timed out waiting for {what}")


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def job_files(outputs: Path, job_id: str) -> list[Path]:
    return [path for path in outputs.rglob(f"*{job_id}*") if path.is_file()]


def kill_mid_job_and_check_nothing_is_lost(server, outputs: Path, victim: str, bystander: str, said: str) -> dict:
    """SIGKILL the worker running ``victim`` (two candidates, seeds 7 and 8) once it denoises, and check what a user
    and an operator see: the page answers throughout, the job runs again once and finishes with the notice (naming
    the PID and ``said``), the bystander finishes, no partial file, only that worker restarted. Returns the killed
    worker as ``/api/workers`` listed it."""
    jobs = server.app.jobs
    wait_until(lambda: (jobs.status(victim).progress or {}).get("stage") == "denoise", 120, "the job to denoise")
    worker = next(w for w in workers(server) if w["job"] == victim)
    other = next(w for w in workers(server) if w["name"] != worker["name"])

    os.kill(worker["pid"], signal.SIGKILL)  # a crash, or what the kernel's out-of-memory killer does
    answered = []
    while not jobs.status(victim).finished:  # the page keeps answering while the worker comes back
        answered.append(httpx.get(server.url + "healthz", timeout=10).status_code)
        time.sleep(0.2)

    done = jobs.status(victim)
    assert done.state == "done", done.error_message
    assert [v["seed"] for v in done.result["videos"]] == [7, 8]
    ran_again = [n["message"] for n in done.result["notices"] if n["code"] == "worker.job_ran_again"]
    assert len(ran_again) == 1 and f"PID {worker['pid']}" in ran_again[0] and said in ran_again[0]
    assert jobs.wait(bystander, timeout=300).state == "done"
    assert answered and set(answered) == {200}
    names = sorted(path.name for path in job_files(outputs, victim))
    assert len(names) == 6 and not [n for n in names if "partial" in n]  # 2 videos, records, posters: nothing else
    after = {w["name"]: w for w in workers(server)}
    assert after[worker["name"]]["restarts"] == 1 and after[worker["name"]]["pid"] != worker["pid"]
    assert after[other["name"]]["restarts"] == 0 and after[other["name"]]["pid"] == other["pid"]
    assert after[worker["name"]]["jobs"]["lost"] == 1
    return worker

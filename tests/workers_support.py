"""What the worker tests (processes: test_workers.py; Ray actors: test_ray_workers.py) look at: the workers as
``GET /api/workers`` lists them, when jobs ran, and the files a job left in the outputs folder."""
from __future__ import annotations

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

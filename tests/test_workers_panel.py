"""The workers panel's HTML (``workers_panel.workers_html``) for the cases the page tests cannot stage cheaply: a
worker that is restarting, GPU workers, and names that must show as text. The page itself is tested in headless
Chromium in test_workers.py (two worker processes) and test_web_page.py (the app's own process)."""
from __future__ import annotations

import html
import re

from i2v.web.workers_panel import workers_html
from i2v.workers.outcome import WorkerInfo

APP = ("box", 100)
NO_JOBS = {"done": 0, "failed": 0, "cancelled": 0, "lost": 0}


def info(name: str, gpu: str, pid: int | None, state: str, *, model: str | None = "wan", job: str | None = None,
         restarts: int = 0, node: str = "box", held_gib: float = 0) -> WorkerInfo:
    return WorkerInfo(name=name, node=node, gpu=gpu, pid=pid, state=state, resident_model=model, job=job,
                      restarts=restarts, jobs=NO_JOBS, held_bytes=int(held_gib * 2**30))


def row_text(page: str, worker: str) -> str:
    row = re.search(rf'<tr data-worker="{worker}"[^>]*>(.*?)</tr>', page).group(1)
    return html.unescape(re.sub(r"<[^>]+>", " ", row))


def test_gpu_workers_show_their_gpu_pid_model_job_and_restarts():
    page = workers_html([info("gpu0", "0", 201, "busy", job="ab12cd34"),
                         info("gpu1", "1", None, "restarting", model=None, restarts=3)], app=APP)
    assert "2 workers, 1 busy" in page
    assert row_text(page, "gpu0").split() == ["gpu0", "box", "GPU", "0", "201", "wan", "busy", "ab12cd34", "0"]
    restarting = row_text(page, "gpu1")
    assert "GPU 1" in restarting and "restarting" in restarting and "none yet" in restarting
    assert restarting.split()[-1] == "3"
    assert 'data-state="restarting"' in page and 'data-restarts="3"' in page


def test_a_gpu_worker_shows_the_memory_it_holds_for_its_model():
    page = workers_html([info("gpu0", "0", 201, "idle", model="wan2.2-ti2v-5b", held_gib=14.25)], app=APP)
    assert "wan2.2-ti2v-5b (14.2 GiB)" in row_text(page, "gpu0")


def test_the_apps_own_process_is_one_line_and_another_hosts_worker_is_not_taken_for_it():
    line = workers_html([info("in-process", "cpu", 100, "idle", model=None)], app=APP)
    assert "<table" not in line and "in the app's process" in line and "no model loaded yet" in line
    elsewhere = workers_html([info("gpu0", "0", 100, "idle", node="other-box")], app=APP)
    assert "<table" in elsewhere and "in the app's process" not in elsewhere


def test_a_model_name_or_host_with_markup_shows_as_text():
    page = workers_html([info("gpu0", "0", 5, "idle", model="<img src=x onerror=alert(1)>"),
                         info("gpu1", "1", 6, "idle", node='"><script>alert(1)</script>')], app=APP)
    assert "<img" not in page and "<script" not in page
    assert "<img src=x onerror=alert(1)>" in row_text(page, "gpu0")

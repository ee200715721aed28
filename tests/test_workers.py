"""Worker processes, with two CPU workers standing in for two GPUs (``--cpu-workers 2``) and the tiny model: the
real app in-process, its workers spawned as on a GPU box. Jobs come through the public ``/generate`` API; what is
checked is what a user or an operator sees: the jobs' history (when each ran), ``GET /api/workers``, ``/healthz``
and the files in the outputs folder. One app serves the whole module (a worker process takes seconds to start).
"""
from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from i2v.engine.request import GenerationRequest
from i2v.engine.video import probe_mp4
from i2v.web.ui import placeholder_request

from conftest import photo_like
from web_support import running_app
from workers_support import kill_mid_job_and_check_nothing_is_lost, most_at_once, wait_until, workers

PROMPT = "a red ball rolling slowly to the left"
SMALL = {"preset": "fast-check", "resolution": 128, "frames": 4, "steps": 4}
WATCHDOG_MINUTES = 0.25  # 15 s without a step: long for a tiny step on a busy CPU, short for a test
START_S = 240  # two workers importing torch and building the tiny model on two shared cores
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
SHOTS = Path("/tmp/shots-workers")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("workers-outputs").resolve()


@pytest.fixture(scope="module")
def server(outputs):
    with running_app(outputs, extra_args=["--cpu-workers", "2", "--watchdog-minutes", str(WATCHDOG_MINUTES)]) as app:
        app.app.jobs.warm_up(placeholder_request("tiny"))  # as app.py does at start
        wait_until(lambda: all(w["resident_model"] == "tiny" for w in workers(app)), START_S, "workers warm")
        yield app


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("workers-input") / "input.png"
    photo_like(320, 256).save(path)
    return path


def test_two_workers_show_themselves_with_their_process_and_model(server):
    listed = workers(server)
    assert [w["name"] for w in listed] == ["cpu0", "cpu1"]
    assert all(w["state"] == "idle" and w["gpu"] == "cpu" and w["node"] for w in listed)
    pids = [w["pid"] for w in listed]
    assert len(set(pids)) == 2 and os.getpid() not in pids  # processes of their own, not the web server's
    metrics = httpx.get(server.url + "metrics", timeout=30).text
    assert 'i2v_worker_up{gpu="cpu",node="' in metrics and 'worker="cpu1"} 1.0' in metrics


def test_the_page_lists_both_workers_and_marks_the_one_running_a_job_busy(server, image, browser):
    """What a user sees in the workers panel, at desktop and phone width (screenshots in SHOTS)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    listed = workers(server)
    desktop = open_workers_panel(browser, server, DESKTOP)
    phone = None
    try:
        for worker in listed:
            row = desktop.locator(f"#workers-panel tr[data-worker='{worker['name']}']")
            assert row.get_attribute("data-state") == "idle"
            text = row.inner_text()
            assert all(str(value) in text for value in (worker["name"], worker["node"], worker["pid"], "tiny"))
        jobs = server.app.jobs
        job_id = jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, model="tiny", preset="fast-check",
                                               resolution=128, frames=16, steps=40, seeds=(3,)))
        busy = desktop.wait_for_selector(f"#workers-panel tr[data-state=busy][data-job='{job_id}']")
        assert "busy" in busy.inner_text()
        assert desktop.locator("#workers-panel tr[data-state=idle]").count() == 1  # the other one waits for work
        desktop.locator("#workers").scroll_into_view_if_needed()
        desktop.screenshot(path=str(SHOTS / "workers-1400x900.png"))

        phone = open_workers_panel(browser, server, PHONE)
        phone.wait_for_selector(f"#workers-panel tr[data-state=busy][data-job='{job_id}']")
        phone.locator("#workers").scroll_into_view_if_needed()
        phone.screenshot(path=str(SHOTS / "workers-390x844.png"))
        panel = phone.locator("#workers-panel")
        assert panel.evaluate("el => el.scrollWidth <= el.clientWidth")  # nothing runs off the side
        for cell in phone.locator("#workers-panel td").all():  # every line of every card is on the screen
            box = cell.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], cell.inner_text()

        assert jobs.cancel(job_id)
        assert jobs.wait(job_id, timeout=120).state == "cancelled"
        desktop.wait_for_selector("#workers-panel table.workers:not(:has(tr[data-state=busy]))")
    finally:
        for page in (desktop, phone):
            if page is not None:
                page.context.close()


def open_workers_panel(browser, server, viewport: dict):
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.wait_for_selector("#workers-panel table.workers[data-workers='2']")
    return page


def test_four_jobs_from_the_api_run_two_at_a_time_on_two_workers(server, image, outputs):
    def generate(seed: int) -> str:
        client = Client(server.url, verbose=False)
        try:
            _video, _files, result = client.predict(handle_file(str(image)), PROMPT, seed=seed, api_name="/generate",
                                                    **SMALL)
        finally:
            client.close()
        return result["job_id"]

    with ThreadPoolExecutor(4) as pool:
        job_ids = list(pool.map(generate, [11, 12, 13, 14]))

    ended = [server.app.jobs.status(job_id) for job_id in job_ids]
    assert [status.state for status in ended] == ["done"] * 4
    for status in ended:
        assert probe_mp4(Path(status.result["videos"][0]["path"]))["frames"] == 4
    assert most_at_once([(status.started_at, status.finished_at) for status in ended]) == 2
    done = {w["name"]: w["jobs"]["done"] for w in workers(server)}
    assert sum(done.values()) >= 4 and all(count >= 1 for count in done.values())


def test_a_worker_killed_mid_job_loses_nothing_and_the_other_keeps_working(server, image, outputs):
    jobs = server.app.jobs
    long = GenerationRequest(image=str(image), prompt=PROMPT, model="tiny", preset="fast-check", resolution=128,
                             frames=16, steps=40, candidates=2, seeds=(7, 8))
    victim = jobs.submit(long)
    bystander = jobs.submit(long)
    worker = kill_mid_job_and_check_nothing_is_lost(server, outputs, victim, bystander, said="SIGKILL")
    metrics = httpx.get(server.url + "metrics", timeout=30).text
    assert f'i2v_worker_restarts_total{{gpu="cpu",node="{worker["node"]}",worker="{worker["name"]}"}} 1.0' in metrics


def test_a_hung_worker_is_ended_by_the_watchdog_and_its_job_runs_again(server, image):
    jobs = server.app.jobs
    job_id = jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, model="tiny", preset="fast-check",
                                           resolution=128, frames=16, steps=40, seeds=(9,)))
    wait_until(lambda: (jobs.status(job_id).progress or {}).get("stage") == "denoise", 120, "the job to denoise")
    worker = next(w for w in workers(server) if w["job"] == job_id)
    os.kill(worker["pid"], signal.SIGSTOP)  # alive but never another step, like a GPU kernel that never returns

    done = jobs.wait(job_id, timeout=WATCHDOG_MINUTES * 60 + START_S)
    assert done.state == "done", done.error_message
    ran_again = [n["message"] for n in done.result["notices"] if n["code"] == "worker.job_ran_again"]
    assert ran_again and "reported no step for 0.25 minutes" in ran_again[0]
    assert not Path(f"/proc/{worker['pid']}").exists() or "Z" in Path(f"/proc/{worker['pid']}/stat").read_text()


def test_a_worker_killed_while_idle_comes_back_with_its_model_and_no_job_pays_for_it(server, image):
    before = workers(server)[0]
    assert before["state"] == "idle"
    os.kill(before["pid"], signal.SIGKILL)

    def back():
        now = workers(server)[0]
        return now if now["restarts"] == before["restarts"] + 1 and now["resident_model"] == "tiny" else None

    after = wait_until(back, START_S, "the worker to come back with its model", every=0.2)
    assert after["pid"] != before["pid"] and after["jobs"] == before["jobs"]  # no job was lost with it
    job_id = server.app.jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, model="tiny", seeds=(21,),
                                                      **SMALL))
    done = server.app.jobs.wait(job_id, timeout=START_S)
    assert done.state == "done" and not [n for n in done.result["notices"] if n["code"] == "worker.job_ran_again"]

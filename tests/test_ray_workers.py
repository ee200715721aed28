"""``--executor ray`` on a local Ray instance the app starts itself, with two actors on the CPU standing in for two
GPUs (``--cpu-workers 2``) and the tiny model. The real app runs in this process; its jobs run in Ray actors, which
write into scratch folders of their own and send the finished files back through Ray. Checked as a user or an
operator sees it: the jobs' history, ``GET /api/workers``, ``/healthz`` and the files in the outputs folder. One app
(one Ray instance) serves the whole module. Needs Ray (``requirements-cluster.txt``; ``./start_app.sh test``
installs it); skipped without it unless ``I2V_REQUIRE_RAY=1``."""
from __future__ import annotations

import json
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
from workers_support import job_files, kill_mid_job_and_check_nothing_is_lost, most_at_once, wait_until, workers

if os.environ.get("I2V_REQUIRE_RAY") != "1":
    pytest.importorskip("ray", reason="Ray is not installed (./start_app.sh setup --cluster)")

PROMPT = "a red ball rolling slowly to the left"
SMALL = {"preset": "fast-check", "resolution": 128, "frames": 4, "steps": 4}
START_S = 300  # Ray starting, two actors importing torch and building the tiny model on two shared cores
LONG = {"model": "tiny", "preset": "fast-check", "resolution": 128, "frames": 16, "steps": 40}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-outputs").resolve()


@pytest.fixture(scope="module")
def server(outputs):
    import ray

    try:
        with running_app(outputs, extra_args=["--executor", "ray", "--cpu-workers", "2"]) as app:
            app.app.jobs.warm_up(placeholder_request("tiny"))  # as app.py does at start
            wait_until(lambda: [w["resident_model"] for w in workers(app)] == ["tiny", "tiny"], START_S,
                       "both actors ready with the model", every=0.5)
            yield app
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray-input") / "input.png"
    photo_like(320, 256).save(path)
    return path


def scratch_paths(text: str) -> bool:
    return "/i2v-ray-cpu" in text


def test_two_actors_show_themselves_with_their_process_node_and_model(server):
    listed = workers(server)
    assert [w["name"] for w in listed] == ["ray-cpu0", "ray-cpu1"]
    assert all(w["state"] == "idle" and w["gpu"] == "cpu" and w["node"] for w in listed)
    pids = [w["pid"] for w in listed]
    assert len(set(pids)) == 2 and os.getpid() not in pids  # Ray's worker processes, not the web server
    metrics = httpx.get(server.url + "metrics", timeout=30).text
    assert 'worker="ray-cpu1"} 1.0' in metrics and "i2v_worker_up{" in metrics
    health = httpx.get(server.url + "healthz", timeout=30).json()  # what ./start_app.sh status prints
    assert (health["resident_model"], health["resident_models"]) == ("tiny", ["tiny"])  # the actors', not the app's
    status = httpx.get(server.url + "gpu_status", timeout=30).json()
    nodes = status["nodes"]  # the one box, read by an actor (no GPU on it: said, as the app's own panel says)
    assert [node["node"] for node in nodes] == [listed[0]["node"]] == [status["node"]]
    assert nodes[0]["gpu_present"] is False and nodes[0]["reason"]


def test_four_jobs_run_two_at_a_time_and_their_files_come_back_to_the_outputs_folder(server, image, outputs):
    def generate(seed: int) -> str:
        client = Client(server.url, verbose=False)
        try:
            _video, _files, result = client.predict(handle_file(str(image)), PROMPT, seed=seed, api_name="/generate",
                                                    **SMALL)
        finally:
            client.close()
        return result["job_id"]

    with ThreadPoolExecutor(4) as pool:
        job_ids = list(pool.map(generate, [31, 32, 33, 34]))

    ended = [server.app.jobs.status(job_id) for job_id in job_ids]
    assert [status.state for status in ended] == ["done"] * 4, [s.error_message for s in ended]
    assert most_at_once([(status.started_at, status.finished_at) for status in ended]) == 2
    for status in ended:
        video = status.result["videos"][0]
        path, record, poster = Path(video["path"]), Path(video["sidecar"]), Path(video["poster"])
        assert path.parent.parent == outputs and probe_mp4(path)["frames"] == 4
        assert record.exists() and poster.exists()
        sidecar = record.read_text()
        assert json.loads(sidecar)["job_id"] == status.id and not scratch_paths(sidecar)
        assert str(outputs / "inputs") in json.loads(sidecar)["reproduce"]  # the picture as the app keeps it
        assert not scratch_paths(json.dumps(status.result))
    done = {w["name"]: w["jobs"]["done"] for w in workers(server)}
    assert sum(done.values()) >= 4 and all(count >= 1 for count in done.values())


def test_progress_with_previews_and_a_cancel_reach_the_actor_within_a_step(server, image, outputs):
    jobs = server.app.jobs
    job_id = jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, seeds=(41,), **{**LONG, "steps": 250}))
    wait_until(lambda: (jobs.status(job_id).progress or {}).get("step", 0) >= 2, 120, "two steps")
    preview = httpx.get(f"{server.url}api/jobs/{job_id}/preview", timeout=30)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/webp"
    jobs.cancel(job_id)
    ended = jobs.wait(job_id, timeout=60)
    assert ended.state == "cancelled" and job_files(outputs, job_id) == []


def test_an_actor_killed_mid_job_loses_nothing_and_the_other_keeps_working(server, image, outputs):
    jobs = server.app.jobs
    victim = jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, candidates=2, seeds=(7, 8), **LONG))
    bystander = jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, seeds=(9,), **LONG))
    kill_mid_job_and_check_nothing_is_lost(server, outputs, victim, bystander, said="died")


def test_an_actor_killed_while_idle_is_replaced_with_its_model_and_no_job_pays_for_it(server, image):
    before = workers(server)[1]
    wait_until(lambda: workers(server)[1]["state"] == "idle", START_S, "the actor to be idle")
    os.kill(before["pid"], signal.SIGKILL)

    def back():
        now = workers(server)[1]
        return now if now["restarts"] == before["restarts"] + 1 and now["resident_model"] == "tiny" else None

    after = wait_until(back, START_S, "the actor to come back with its model", every=0.5)
    assert after["pid"] != before["pid"] and after["jobs"] == before["jobs"]
    job_id = server.app.jobs.submit(GenerationRequest(image=str(image), prompt=PROMPT, model="tiny", seeds=(51,),
                                                      **SMALL))
    done = server.app.jobs.wait(job_id, timeout=START_S)
    assert done.state == "done" and not [n for n in done.result["notices"] if n["code"] == "worker.job_ran_again"]

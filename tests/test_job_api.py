"""The JSON job API (README "Job API") against the real app on the tiny model, over plain HTTP and beside
``gradio_client``: a script's job is listed with its progress, detailed with its files, cancelled only by its
submitter, and an unknown id is a 404 with words. One app serves the module."""
from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

from i2v.engine.engine import device_lock
from i2v.web.auth import basic_auth_header

from test_jobs import tiny
from web_support import running_app

PROMPT = "a red ball rolling slowly to the left"
SMALL = {"preset": "fast-check", "resolution": 128, "frames": 4}
LISTED = {"id", "state", "position", "model", "prompt", "stage", "step", "steps", "elapsed_s", "eta_s",
          "preview_step", "may_cancel"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("job-api-outputs")) as running:
        yield running


@pytest.fixture(scope="module")
def image(shared_photo_path) -> str:
    return str(shared_photo_path)


@pytest.fixture
def script(server):
    """A fresh gradio_client: a Gradio session of its own, so its jobs belong to it."""
    client = Client(server.url, verbose=False)
    yield client
    client.close()


def api(server, path: str, method: str = "GET", **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path.lstrip("/"), timeout=30, **kwargs)


def active_job(server, timeout: float = 60, **wanted) -> dict:
    """The first listed job that is not finished and matches ``wanted`` (field: value), polling the list."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for job in api(server, "/api/jobs").json()["jobs"]:
            if job["state"] in ("queued", "running") and all(job.get(k) == v for k, v in wanted.items()):
                return job
        time.sleep(0.2)
    raise AssertionError(f"no active job with {wanted}: {api(server, '/api/jobs').json()}")


def until(server, job_id: str, check, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api(server, f"/api/jobs/{job_id}").json()
        if check(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never got there: {job}")


def test_an_unknown_job_is_a_404_with_a_message_on_every_route(server):
    for method, path in (("GET", "/api/jobs/nope"), ("GET", "/api/jobs/nope/preview"),
                         ("POST", "/api/jobs/nope/cancel"), ("GET", "/api/jobs/nope/files/a.mp4")):
        answer = api(server, path, method)
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/json", path
        assert answer.json()["error"] == "not_found" and "GET /api/jobs lists" in answer.json()["message"], path


def test_a_scripts_job_is_listed_with_its_progress_then_detailed_with_its_files(server, script, image):
    future = script.submit(handle_file(image), PROMPT, steps=12, api_name="/generate", **SMALL)
    listed = active_job(server, prompt=PROMPT, steps=12)
    assert LISTED <= listed.keys() and listed["model"] == "tiny"
    job_id = listed["id"]
    stepping = until(server, job_id, lambda job: (job["step"] or 0) >= 3 or job["state"] == "done")
    if stepping["state"] == "running":  # measured while it runs: the step, its pace, its time so far
        assert stepping["steps"] == 12 and stepping["position"] == 0 and stepping["elapsed_s"] > 0
        assert stepping["eta_s"] is not None and stepping["eta_s"] > 0  # two steps seen: an estimate, not 0
    *_, result = future.result(timeout=180)
    assert result["job_id"] == job_id  # the page, the API and gradio_client speak of the same job

    detail = api(server, f"/api/jobs/{job_id}").json()
    assert detail["state"] == "done" and detail["eta_s"] is None and detail["elapsed_s"] > 0
    assert isinstance(detail["notices"], list) and isinstance(detail["warnings"], list)
    assert detail["error"] is None and detail["settings"]["prompt"] == PROMPT
    (files,) = detail["files"]
    assert files["seed"] == result["videos"][0]["seed"]
    video = api(server, files["video"])
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4" and len(video.content) > 1000
    record = api(server, files["record"])
    assert record.status_code == 200 and record.headers["content-type"] == "application/json"
    assert api(server, f"/api/jobs/{job_id}/files/..%2Fjobs.sqlite3").status_code == 404  # only the job's files
    assert job_id in [job["id"] for job in api(server, "/api/jobs").json()["jobs"]]  # listed among the recent


def test_a_later_job_knows_its_model_is_resident_and_its_time_left_from_the_start(server, script, image):
    script.predict(handle_file(image), PROMPT, steps=2, api_name="/generate", **SMALL)  # the model is in memory
    future = script.submit(handle_file(image), "waves crashing on the rocks", steps=6, api_name="/generate", **SMALL)
    job = active_job(server, prompt="waves crashing on the rocks")
    started = until(server, job["id"], lambda j: j["stage"] is not None or j["state"] == "done")
    if started["state"] == "running":
        assert started["model_resident"] is True
        assert started["eta_s"] is not None  # learned from the earlier jobs on this machine, before any step
    future.result(timeout=180)


def test_preview_is_404_before_the_first_one(server, script, image):
    device = server.app.jobs.prepare(tiny(Path(image))).plan.device
    with device_lock(device):  # held here, the job cannot reach its first step
        future = script.submit(handle_file(image), "snow falling slowly", steps=2, api_name="/generate", **SMALL)
        job = active_job(server, prompt="snow falling slowly")
        answer = api(server, f"/api/jobs/{job['id']}/preview")
        assert answer.status_code == 404 and answer.json()["error"] == "no_preview"
        assert "no preview yet" in answer.json()["message"]
    future.result(timeout=180)


def test_the_preview_is_an_image_that_changes_while_a_tiny_job_runs(server, script, image):
    future = script.submit(handle_file(image), "leaves falling", steps=40, api_name="/generate", **SMALL)
    job_id = active_job(server, prompt="leaves falling")["id"]
    seen: dict[str, bytes] = {}
    deadline = time.monotonic() + 120
    while len(seen) < 2 and time.monotonic() < deadline:
        answer = api(server, f"/api/jobs/{job_id}/preview")
        if answer.status_code == 200:
            assert answer.headers["content-type"].startswith("image/")
            seen[answer.headers["x-preview-step"]] = answer.content
        time.sleep(0.3)
    assert len(seen) == 2, f"fewer than two previews during the run: steps {list(seen)}"
    first, second = seen.values()
    assert first != second
    future.result(timeout=180)


def test_only_the_submitter_cancels_through_the_api(server, script, image):
    future = script.submit(handle_file(image), "a dolly shot of a quiet street", steps=250, resolution=256,
                           frames=16, preset="fast-check", api_name="/generate")
    job_id = active_job(server, prompt="a dolly shot of a quiet street")["id"]
    refused = api(server, f"/api/jobs/{job_id}/cancel", "POST")
    assert refused.status_code == 403 and "only the browser that started it" in refused.json()["message"]
    assert "X-I2V-Owner" in refused.json()["message"]
    other = api(server, f"/api/jobs/{job_id}/cancel", "POST", headers={"X-I2V-Owner": "someone-else"})
    assert other.status_code == 403
    owned = api(server, f"/api/jobs/{job_id}", headers={"X-I2V-Owner": script.session_hash}).json()
    assert owned["may_cancel"] is True and api(server, f"/api/jobs/{job_id}").json()["may_cancel"] is False

    answer = api(server, f"/api/jobs/{job_id}/cancel", "POST", headers={"X-I2V-Owner": script.session_hash})
    assert answer.status_code == 200 and answer.json()["cancelled"] is True
    assert answer.json()["job"]["cancel_requested"] or answer.json()["job"]["state"] == "cancelled"
    assert until(server, job_id, lambda job: job["state"] != "running", timeout=60)["state"] == "cancelled"
    again = api(server, f"/api/jobs/{job_id}/cancel", "POST", headers={"X-I2V-Owner": script.session_hash})
    assert again.status_code == 409 and again.json()["error"] == "finished"
    with pytest.raises(Exception, match="cancelled"):
        future.result(timeout=60)
    assert not list(Path(server.app.jobs.engine.output_dir).rglob(f"*{job_id}*.mp4"))


def test_with_auth_the_job_api_needs_the_password(tmp_path):
    with running_app(tmp_path / "outputs", extra_args=["--auth", "team:s3cret"]) as server:
        assert api(server, "/api/jobs").status_code == 401
        assert api(server, "/api/jobs/nope").status_code == 401  # not even whether a job exists
        assert api(server, "/api/jobs/nope/cancel", "POST").status_code == 401
        assert api(server, "/healthz").status_code == 200
        logged_in = api(server, "/api/jobs", headers=basic_auth_header("team", "s3cret"))
        assert logged_in.status_code == 200 and logged_in.json() == {"jobs": []}

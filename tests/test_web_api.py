"""The app's programmatic surface, against the real server on the tiny model: the ``/generate`` endpoint through
``gradio_client`` (what a script sees), the JSON routes ``/gpu_status`` and ``/healthz``, and which files the
Gradio file route will hand out."""
from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import handle_file

from i2v.gpu.fake_monitor import FakeGpuMonitor
from i2v.engine.video import probe_mp4

from conftest import photo_like
from web_support import running_app

PROMPT = "a red ball rolling slowly to the left"
SMALL = {"preset": "fast-check", "resolution": 128, "frames": 4}

# The documented /gpu_status schema (i2v/gpu/monitor.py, Snapshot docstring).
SNAPSHOT_KEYS = {"gpu_present", "reason", "gpus", "torch_allocated_bytes", "torch_reserved_bytes",
                 "system_ram_total_bytes", "system_ram_available_bytes", "taken_at", "warning_level", "app",
                 "node", "nodes"}
GPU_KEYS = {"index", "name", "uuid", "memory_total_bytes", "memory_used_bytes", "memory_free_bytes",
            "memory_used_fraction", "utilization_percent", "temperature_c", "power_draw_w", "power_limit_w",
            "compute_capability", "supports_bf16", "processes", "this_process_used_bytes", "warning_level"}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api-outputs").resolve()


@pytest.fixture(scope="module")
def server(outputs):
    """The app with the real GPU monitor of this machine."""
    with running_app(outputs) as running:
        yield running


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("api-input") / "input.png"
    photo_like(320, 256).save(path)
    return path


@pytest.fixture(scope="module")
def generated(client, image):
    """One small job through the public API: (video, files, result)."""
    return client.predict(handle_file(str(image)), PROMPT, steps=3, api_name="/generate", **SMALL)


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=30)


# -- /generate -----------------------------------------------------------------------------------------------
def test_generate_with_audio_off_on_a_model_with_sound_writes_no_sound_track(client, image):
    from i2v.engine.video import audio_streams

    video, _files, result = client.predict(handle_file(str(image)), PROMPT, steps=2, frames=9, model="tiny-ltx2",
                                           audio=False, api_name="/generate")
    assert audio_streams(Path(video)) == [] and result["params"]["audio"] is False



def test_generate_through_gradio_client_returns_a_playable_video_and_its_record(server, generated):
    video, files, result = generated

    assert Path(video).suffix == ".mp4"
    probe = probe_mp4(Path(video))
    assert probe["codec"].startswith("h264"), probe
    assert probe["pix_fmt"].startswith("yuv420p"), probe
    assert probe["frames"] == 4, probe
    assert probe["size"] == (128, 128), probe

    suffixes = sorted(Path(f).suffix for f in files)
    assert suffixes == [".json", ".mp4"], files
    sidecar_file = next(f for f in files if f.endswith(".json"))
    sidecar = json.loads(Path(sidecar_file).read_text(encoding="utf-8"))
    assert sidecar["params"]["frames"] == 4
    assert sidecar["params"]["steps"] == 3
    assert sidecar["params"]["prompt"] == PROMPT
    assert sidecar["video"]["frames"] == 4

    job_id = result["job_id"]
    assert job_id
    seeds = result["params"]["seeds"]
    assert len(seeds) == 1 and isinstance(seeds[0], int)
    assert sidecar["params"]["seed"] == seeds[0]
    # each video is described by its seed and the names of the downloaded files
    assert result["videos"] == [{"seed": seeds[0], "video": Path(video).name,
                                 "record": Path(sidecar_file).name}]
    assert result["params"]["frames"] == 4 and result["params"]["steps"] == 3

    history = {status.id: status for status in server.app.jobs.history()}
    assert job_id in history, f"job {job_id} is not in the server's history"
    assert history[job_id].state == "done"


def test_generate_requires_only_image_and_prompt_and_only_the_script_endpoints_are_public(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/generate", "/requeue"], "the page's own events must stay private"
    assert not api["unnamed_endpoints"]

    parameters = api["named_endpoints"]["/generate"]["parameters"]
    names = [p["parameter_name"] for p in parameters]
    assert names[:2] == ["image", "prompt"]
    required = [p["parameter_name"] for p in parameters if not p["parameter_has_default"]]
    assert required == ["image", "prompt"]
    # last_image, audio, loras, then framing and the crop position came last, with defaults, so scripts that pass
    # the others by position keep working.
    assert names[-7:] == ["model", "last_image", "audio", "loras", "framing", "crop_x", "crop_y"]
    assert [p["parameter_default"] for p in parameters[-5:]] == [True, None, "crop", 0.5, 0.5]


def test_a_seed_given_through_the_api_is_used(client, image):
    _video, files, result = client.predict(handle_file(str(image)), PROMPT, steps=2, seed=1234,
                                           api_name="/generate", **SMALL)
    assert result["params"]["seeds"] == [1234]
    sidecar = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text(encoding="utf-8"))
    assert sidecar["params"]["seed"] == 1234
    assert sidecar["params"]["steps"] == 2


def test_bad_input_gets_an_actionable_message_and_the_server_keeps_serving(client, image):
    with pytest.raises(Exception) as empty:
        client.predict(handle_file(str(image)), "   ", steps=2, api_name="/generate", **SMALL)
    message = str(empty.value)
    assert "prompt is empty" in message
    assert "Traceback" not in message

    with pytest.raises(Exception) as too_many:
        client.predict(handle_file(str(image)), PROMPT, steps=1000, api_name="/generate", **SMALL)
    message = str(too_many.value)
    assert "steps" in message and "1000" in message
    assert "range" in message and "1.." in message, message  # says what to use instead
    assert "Traceback" not in message

    with pytest.raises(Exception) as fractional:
        client.predict(handle_file(str(image)), PROMPT, steps=2.5, api_name="/generate", **SMALL)
    assert "whole number" in str(fractional.value)

    video, _files, _result = client.predict(handle_file(str(image)), PROMPT, steps=2, api_name="/generate",
                                            **SMALL)
    assert probe_mp4(Path(video))["frames"] == 4


# -- /gpu_status ---------------------------------------------------------------------------------------------


def test_gpu_status_without_a_gpu_says_why(server):
    response = get(server.url + "gpu_status")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    status = response.json()
    assert set(status) == SNAPSHOT_KEYS
    assert status["gpu_present"] is False
    assert isinstance(status["reason"], str) and status["reason"].strip()
    assert status["gpus"] == []
    assert status["nodes"] == []  # no Ray: the GPUs above are all there is
    assert status["warning_level"] == "ok"
    assert isinstance(status["taken_at"], float)
    for key in ("system_ram_total_bytes", "system_ram_available_bytes"):
        assert status[key] is None or (isinstance(status[key], int) and status[key] > 0)
    app = status["app"]
    assert app["uptime_s"] >= 0 and app["queue"] == 0
    assert app["idle_stop_after_s"] is None and app["idle_stop_in_s"] is None  # idle auto-stop is off by default


def test_gpu_status_counts_down_to_the_idle_stop_and_honours_the_warning_setting(tmp_path):
    monitor = FakeGpuMonitor.single(total_gib=80, used_gib=60)  # 75 %: fine at the default 80 %, not at 70 %
    with running_app(tmp_path / "outputs", monitor=monitor,
                     extra_args=["--idle-stop-minutes", "90", "--warn-percent", "70"]) as app:
        time.sleep(1.1)
        status = get(app.url + "gpu_status").json()
    assert status["warning_level"] == "warning" and status["gpus"][0]["warning_level"] == "warning"
    assert status["app"]["idle_stop_after_s"] == 5400
    assert 5390 <= status["app"]["idle_stop_in_s"] < 5400  # counting down from the start
    assert status["app"]["uptime_s"] >= 1


def test_gpu_status_reports_a_gpu_nearly_full_as_a_warning(tmp_path):
    monitor = FakeGpuMonitor.single(total_gib=80, used_gib=68)  # 85 %
    with running_app(tmp_path / "outputs", monitor=monitor) as fake:
        response = get(fake.url + "gpu_status")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        status = response.json()

        monitor.set_used(0, 79 * 2**30)  # the fake is not cached: the next reading shows the change
        critical = get(fake.url + "gpu_status").json()

    assert set(status) == SNAPSHOT_KEYS
    assert status["gpu_present"] is True
    assert status["reason"] is None
    assert len(status["gpus"]) == 1
    gpu = status["gpus"][0]
    assert set(gpu) == GPU_KEYS
    assert gpu["index"] == 0
    assert isinstance(gpu["name"], str) and gpu["name"]
    for key in ("memory_total_bytes", "memory_used_bytes", "memory_free_bytes"):
        assert isinstance(gpu[key], int) and not isinstance(gpu[key], bool), key
    assert gpu["memory_total_bytes"] == 80 * 2**30
    assert gpu["memory_used_bytes"] == 68 * 2**30
    assert gpu["memory_free_bytes"] == 12 * 2**30
    assert isinstance(gpu["memory_used_fraction"], float) and 0.0 <= gpu["memory_used_fraction"] <= 1.0
    assert gpu["memory_used_fraction"] == pytest.approx(0.85, abs=1e-6)
    assert gpu["compute_capability"] == [8, 9]
    assert isinstance(gpu["supports_bf16"], bool)
    assert isinstance(gpu["processes"], list)
    assert gpu["warning_level"] == "warning"
    assert status["warning_level"] == "warning"

    assert critical["gpus"][0]["warning_level"] == "critical"
    assert critical["warning_level"] == "critical"


# -- /healthz ------------------------------------------------------------------------------------------------


def test_healthz(server):
    response = get(server.url + "healthz")
    assert response.status_code == 200
    health = response.json()
    assert health["ok"] is True
    assert health["model"] == "tiny"
    assert isinstance(health["uptime_s"], (int, float)) and health["uptime_s"] >= 0
    assert health["queue"] == 0


# -- files ---------------------------------------------------------------------------------------------------


def test_the_job_database_is_not_downloadable_but_videos_are(server, outputs, generated):
    _video, _files, result = generated
    database = outputs / "jobs.sqlite3"
    assert database.read_bytes().startswith(b"SQLite format 3")  # the file exists and is what we guard

    for path in (str(database), f"{outputs}//jobs.sqlite3", f"{outputs}/inputs/../jobs.sqlite3"):
        response = get(f"{server.url}gradio_api/file={path}")
        assert response.status_code != 200 or not response.content.startswith(b"SQLite format 3"), path

    status = server.app.jobs.status(result["job_id"])
    mp4 = Path(status.result["videos"][0]["path"]).resolve()
    assert mp4.is_relative_to(outputs)
    response = get(f"{server.url}gradio_api/file={mp4}")
    assert response.status_code == 200
    assert response.content == mp4.read_bytes()


def test_building_the_app_does_not_import_the_model_stack(tmp_path):
    """The page must answer within seconds of start: torch/diffusers/transformers load with the first job (or the
    background warm-up), not while the server is built. A fresh interpreter, since this one imported them."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from i2v.settings import load_settings\n"
        "from i2v.web.server import create_app\n"
        f"create_app(load_settings(['--model', 'tiny', '--output-dir', {str(tmp_path)!r}], environ={{}}))\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"

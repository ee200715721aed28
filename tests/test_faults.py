"""Faults while the app serves jobs, injected at the lowest level we can reach, and checked as the user sees them:
the job's state and message (gradio_client ``/generate``, the job layer, the page's HTML), ``/gpu_status`` and
``/metrics``; no half-written file anywhere under the outputs folder; and the next job still works.

Faults: a full disk (ffmpeg's own writes hit ENOSPC; Python's writes store part of their data, then ENOSPC), an
unwritable video folder, NVML losing the GPU mid-run, out-of-memory and NaN injected into the model, and a video
encoder that fails.
"""
from __future__ import annotations

import builtins
import contextlib
import errno
import html
import io
import os
import re
import sqlite3
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from gradio_client import Client, handle_file

from i2v.engine.engine import Engine
from i2v.errors import OutputWriteError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.keywords import load_keyword_library
from i2v.gpu.fake_monitor import FakeGpuMonitor
from i2v.gpu.monitor import GpuMonitor
from i2v.paths import cache_dir
from i2v.engine.presets import load_presets
from i2v.engine.request import GenerationRequest
from i2v.settings import load_settings
from i2v.engine.video import probe_mp4, write_mp4
from i2v.web import render
from i2v.web.server import ServerThread, create_app

from conftest import photo_like
from test_numeric_safety import nan_output
from test_oom_recovery import out_of_memory
from web_support import free_port, running_app

PROMPT = "a paper boat drifting slowly to the right"
SMALL = {"preset": "fast-check", "resolution": 128, "frames": 4}
JOB_TIMEOUT_S = 120
DATED = re.compile(r"^\d{8}$")  # outputs/YYYYMMDD/, where videos, records and posters go


# -- the app under test (one for most tests: a fault must not spoil the next job anyway) ------------------------


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault-outputs").resolve()


@pytest.fixture(scope="module")
def server(outputs):
    """The app on the tiny model, planning for the CPU even on a GPU machine (the fake monitor has no GPU)."""
    with running_app(outputs, monitor=FakeGpuMonitor.none()) as running:
        yield running


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fault-input") / "input.png"
    photo_like(320, 256).save(path)
    return path


@pytest.fixture(scope="module")
def warm(client, image):
    """One good job first: the model is loaded (the injections hook into it) and the input picture is kept."""
    return generate(client, image)


def generate(client: Client, image: Path, **changes):
    """One job through the public API, as a script would run it: (video, files, result)."""
    return client.predict(handle_file(str(image)), PROMPT, **{"steps": 2, **SMALL, **changes}, api_name="/generate")


def generate_fails(server, client: Client, image: Path):
    """A job through the public API that must fail: (the API's error message, the job's status)."""
    with pytest.raises(Exception) as failure:
        generate(client, image)
    message = str(failure.value)
    assert "Traceback" not in message, message
    found = re.search(r"Job ([0-9a-f]+) failed: ", message)
    assert found, f"the API error does not say which job failed: {message}"
    return message, server.app.jobs.status(found.group(1))


def assert_still_serving(client: Client, image: Path) -> None:
    video, _files, _result = generate(client, image)
    assert probe_mp4(Path(video))["frames"] == 4


def files_under(folder: Path) -> set[Path]:
    """Every file but the job database (which changes with every job by design)."""
    return {p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("jobs.sqlite3")}


def assert_nothing_left(outputs: Path, before: set[Path]) -> None:
    new = files_under(outputs) - before
    assert not new, f"a failed job left files behind: {sorted(map(str, new))}"
    partials = [p for p in outputs.rglob("*") if "partial" in p.name]
    assert not partials, f"half-written files under the outputs folder: {partials}"


def assert_failed_clearly(status, message: str, *needles: str) -> None:
    """The job layer, the API and the page all carry the same clear message."""
    assert status is not None and status.state == "failed", status
    assert status.error_kind == "fatal", status.error_message
    assert not status.error_message.startswith("Internal error"), status.error_message
    for needle in needles:
        assert needle in status.error_message, status.error_message
    # Over HTTP the outputs folder is "outputs/…": the server's own paths are for its log (red-team item 10).
    assert not re.search(r"/(tmp|home|root|var|work|srv)/", status.error_message), status.error_message
    assert status.error_message in message  # what gradio_client raised
    page = render.status_html(status)
    assert 'data-state="failed"' in page and html.escape(status.error_message) in page
    assert "ready for the next job" in page


def metric(server, name: str) -> float:
    text = httpx.get(server.url + "metrics", timeout=30).text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    assert found, f"{name} is not in /metrics"
    return float(found.group(1))


# -- injecting faults into the file system -----------------------------------------------------------------------


class _FullDiskFile:
    """A file on a disk that fills up: the first write stores half its data (what a full disk lets through), then
    fails with ENOSPC, as ``write(2)`` does."""

    def __init__(self, real, path: str):
        self._real = real
        self._path = path

    def write(self, data):
        self._real.write(data[: len(data) // 2])
        self._real.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._path)

    def fileno(self):
        # Writers that would write to the descriptor directly (Pillow's encoders) fall back to write() without one.
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._real.close()


def break_python_writes(monkeypatch, where, number: int) -> None:
    """Files opened for writing where ``where(path)`` is true fail with ``number``: ENOSPC on the first write
    (after half of it reached the disk), anything else (EACCES) at the open, as the kernel reports them. Patched
    at ``open`` itself (io.open is what pathlib calls, builtins.open what the rest calls), so every writer in the
    process meets the fault; ffmpeg, a separate process, is given its own (see ``encoder``)."""
    real_open = io.open

    def faulty_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(flag in mode for flag in "wax+") and where(Path(file)):
            if number != errno.ENOSPC:
                raise OSError(number, os.strerror(number), os.fspath(file))
            return _FullDiskFile(real_open(file, mode, *args, **kwargs), os.fspath(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(io, "open", faulty_open)
    monkeypatch.setattr(builtins, "open", faulty_open)


def in_dated_folder(outputs: Path):
    return lambda path: path.absolute().parent.parent == outputs and DATED.match(path.absolute().parent.name)


def encoder(monkeypatch, tmp_path: Path, body: str) -> Path:
    """Make the video writer run a stand-in for ffmpeg (IMAGEIO_FFMPEG_EXE is how imageio-ffmpeg, and so the
    writer, finds it). ``body`` is Python with ``args`` (ffmpeg's arguments; the output file is last) and
    ``real`` (the real ffmpeg)."""
    script = tmp_path / "ffmpeg"
    header = f"#!{sys.executable}\nimport os, sys\nargs = sys.argv[1:]\nreal = {imageio_ffmpeg.get_ffmpeg_exe()!r}\n"
    script.write_text(f"{header}{body}\n", encoding="utf-8")
    script.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(script))
    return script


# The real ffmpeg on a full disk: /dev/full refuses every write with ENOSPC, so ffmpeg fails and reports it in
# its own words. What a full disk leaves at the output path (the start of a file) is written there first.
FFMPEG_ON_A_FULL_DISK = """
with open(args[-1], "wb") as out:
    out.write(b"\\x00\\x00\\x00\\x20ftypisom" + bytes(4000))
os.execv(real, [real, *args[:-1], "-f", "mp4", "/dev/full"])
"""


# -- 1. disk full ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to give ffmpeg a full disk")
def test_disk_full_while_the_video_is_written(server, client, image, outputs, warm, monkeypatch, tmp_path):
    before = files_under(outputs)
    encoder(monkeypatch, tmp_path, FFMPEG_ON_A_FULL_DISK)
    # The same full disk holds the app's cache (step timings are saved before the video): that bookkeeping must
    # not be what the user hears about.
    cache = cache_dir().resolve()
    break_python_writes(monkeypatch, lambda p: in_dated_folder(outputs)(p) or p.absolute().is_relative_to(cache),
                        errno.ENOSPC)

    message, status = generate_fails(server, client, image)

    assert_failed_clearly(status, message, "disk is full", "the video", "saved in outputs/", "Free some space",
                          "--output-dir")
    assert_nothing_left(outputs, before)
    monkeypatch.undo()
    assert_still_serving(client, image)


def test_disk_full_while_the_record_is_written(server, client, image, outputs, warm, monkeypatch):
    before = files_under(outputs)
    dated = in_dated_folder(outputs)
    break_python_writes(monkeypatch, lambda p: dated(p) and p.name.endswith(".json.partial"), errno.ENOSPC)

    message, status = generate_fails(server, client, image)

    assert_failed_clearly(status, message, "disk is full", "record", "saved in outputs/", "Free some space")
    # The mp4 was complete, but a video without its record is half a result: it goes too.
    assert_nothing_left(outputs, before)
    monkeypatch.undo()
    assert_still_serving(client, image)


def test_disk_full_while_the_poster_is_written(server, image, outputs, warm, monkeypatch):
    """The poster is only the history's thumbnail: without it the job should still be done (the gallery falls
    back to the input picture), or at worst failed with the disk-full message. Through the job layer, because
    the API call would wait for ever on the stuck job."""
    jobs = server.app.jobs
    dated = in_dated_folder(outputs)
    break_python_writes(monkeypatch, lambda p: dated(p) and p.name.endswith(".jpg.partial"), errno.ENOSPC)
    job_id = jobs.submit(GenerationRequest(image=image, prompt=PROMPT, model="tiny", width=64, height=64, frames=4,
                                           steps=2, seeds=(3,)))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not jobs.status(job_id).finished and jobs.serving() and time.monotonic() < deadline:
        time.sleep(0.1)
    monkeypatch.undo()
    status = jobs.status(job_id)
    alive = jobs.serving()
    assert status.state == "done", f"the job is {status.state} ({status.error_message}); worker alive: {alive}"
    assert status.result["videos"][0]["poster"] is None  # the gallery shows the input picture instead
    assert not list(outputs.rglob("*.jpg.partial"))


def test_disk_full_while_the_upload_is_kept(server, client, outputs, warm, monkeypatch, tmp_path):
    picture = tmp_path / "new-picture.png"  # not kept yet, so submitting copies it
    photo_like(320, 256, seed=7).save(picture)
    inputs = outputs / "inputs"
    break_python_writes(monkeypatch, lambda p: p.absolute().parent == inputs, errno.ENOSPC)
    try:
        with pytest.raises(Exception) as refused:
            generate(client, picture)
        left = [p.name for p in inputs.iterdir() if "partial" in p.name]
    finally:
        monkeypatch.undo()
        for partial in inputs.glob("*partial*"):  # so the other tests' "nothing left" checks stay meaningful
            partial.unlink()
    assert "disk is full" in str(refused.value) and "saved in outputs/inputs" in str(refused.value), str(refused.value)
    assert str(outputs) not in str(refused.value)  # the server's folders are not the caller's business
    assert not left, left


def database_full(monkeypatch, store) -> None:
    """The job database refuses to record how jobs end, as SQLite does on a full disk (reads still work)."""
    real_update = store._update

    def update(job_id, **columns):
        if columns.get("state") in ("done", "failed", "cancelled"):
            raise sqlite3.OperationalError("database or disk is full")
        return real_update(job_id, **columns)

    monkeypatch.setattr(store, "_update", update)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to give ffmpeg a full disk")
def test_disk_full_for_the_video_and_the_database_still_ends_the_job(server, client, image, outputs, warm,
                                                                     monkeypatch, tmp_path):
    """ffmpeg hits ENOSPC, then recording the failure hits "database or disk is full". The caller, the job layer
    and the page must still learn how the job ended (before: it stayed "running" for ever and the API call never
    returned), and the database must catch up once there is space again."""
    jobs = server.app.jobs
    encoder(monkeypatch, tmp_path, FFMPEG_ON_A_FULL_DISK)
    database_full(monkeypatch, jobs.store)

    call = client.submit(handle_file(str(image)), PROMPT, steps=2, **SMALL, api_name="/generate")
    with pytest.raises(Exception) as failure:
        call.result(timeout=JOB_TIMEOUT_S)  # a TimeoutError here is the bug: the caller never hears back
    message = str(failure.value)
    found = re.search(r"Job ([0-9a-f]+) failed: ", message)
    assert found, f"the caller never heard how the job ended: {failure.typename} {message}"
    job_id = found.group(1)
    status = jobs.status(job_id)
    assert_failed_clearly(status, message, "disk is full", "the video")
    assert jobs.store.get(job_id).state == "running"  # not recorded yet: the database is still full

    monkeypatch.undo()  # space comes back
    deadline = time.monotonic() + 60
    while jobs.store.get(job_id).state != "failed" and time.monotonic() < deadline:
        time.sleep(0.5)
    recorded = jobs.store.get(job_id)
    assert recorded.state == "failed" and recorded.error_message == status.error_message
    assert jobs.status(job_id).state == "failed"
    assert_still_serving(client, image)


# -- 2. outputs folder not writable ------------------------------------------------------------------------------


def test_unwritable_video_folder(server, client, image, outputs, warm, monkeypatch):
    """Today's folder exists but this app may not write in it (e.g. made by another user or a sudo run)."""
    today = outputs / datetime.now().strftime("%Y%m%d")
    today.mkdir(exist_ok=True)
    before = files_under(outputs)
    if mode_bits_do_not_stop_us(outputs):
        # Root (with CAP_DAC_OVERRIDE) writes through any mode bits: refuse at the open, with the kernel's error.
        break_python_writes(monkeypatch, in_dated_folder(outputs), errno.EACCES)
    else:
        today.chmod(0o555)
    try:
        message, status = generate_fails(server, client, image)
    finally:
        today.chmod(0o755)
        monkeypatch.undo()

    assert_failed_clearly(status, message, f"The folder outputs/{today.name} is not writable", "chmod u+w",
                          "--output-dir")
    assert_nothing_left(outputs, before)
    assert_still_serving(client, image)


def mode_bits_do_not_stop_us(near: Path) -> bool:
    """Whether this process can write in a folder whose mode says no. Asked rather than read from os.geteuid():
    root without CAP_DAC_OVERRIDE (some containers) is refused like anyone else."""
    probe = near / "mode-probe"
    probe.mkdir()
    probe.chmod(0o555)
    try:
        (probe / "x").touch()
    except PermissionError:
        return False
    else:
        (probe / "x").unlink()
        return True
    finally:
        probe.chmod(0o755)
        probe.rmdir()


def test_output_folder_that_cannot_be_created_is_named(tmp_path, monkeypatch):
    """The dated folder cannot be made: the message names the folder that refused (the one that exists)."""
    parent = tmp_path / "outputs"
    parent.mkdir()
    real_mkdir = os.mkdir

    def refuse(path, *args, **kwargs):
        if Path(path).parent == parent:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", refuse)
    with pytest.raises(OutputWriteError, match=f"The folder {re.escape(str(parent))} is not writable"):
        write_mp4(np.zeros((2, 64, 64, 3), np.uint8), parent / "20250101" / "a.mp4", 8)
    assert list(parent.iterdir()) == []


# -- 3. NVML fails mid-run ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def app_with(outputs: Path, *, monitor, engine: Engine):
    port = free_port()
    # --gpus none: the job runs on the given engine in this process (the fake NVML's GPU cannot host a worker).
    settings = load_settings(["--port", str(port), "--model", "tiny", "--output-dir", str(outputs), "--gpus", "none"],
                             environ={})
    server = ServerThread(create_app(settings, monitor=monitor, engine=engine), port=port).start()
    try:
        yield server
    finally:
        server.stop()


def flaky_nvml():
    """The fake NVML of test_monitor.py; once ``lost`` is set, every query fails the way NVML fails for a GPU that
    fell off the bus, until it is cleared."""
    pynvml = pytest.importorskip("pynvml")
    from test_monitor import FakeNvml, gpu

    class FlakyNvml(FakeNvml):
        lost = False

        def _enter(self, function, index=None):
            super()._enter(function, index)
            if self.lost and function not in ("nvmlInit", "nvmlShutdown"):
                raise pynvml.NVMLError_GpuIsLost()

    return FlakyNvml([gpu(name="NVIDIA L4", total=24 * 2**30, used=2 * 2**30)])


def test_nvml_failing_mid_run_leaves_the_job_running_and_says_why(tmp_path, image):
    nvml = flaky_nvml()
    monitor = GpuMonitor(nvml=nvml, cache_seconds=0)
    outputs = tmp_path / "outputs"
    # The planner sees no GPU (the tiny model runs on the CPU), so the only thing NVML feeds is what users read.
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs, presets=load_presets(),
                    keywords=load_keyword_library())
    request = GenerationRequest(image=image, prompt=PROMPT, model="tiny", width=64, height=64, frames=4, steps=3,
                                seeds=(5,))
    engine.load(request)
    denoising, go_on = threading.Event(), threading.Event()

    def lose_gpu_mid_run(module, args):
        if not denoising.is_set():
            nvml.lost = True
            denoising.set()
            go_on.wait(60)  # hold the job here while the test reads the status

    with app_with(outputs, monitor=monitor, engine=engine) as server:
        assert httpx.get(server.url + "gpu_status", timeout=30).json()["gpu_present"] is True
        hook = engine.backend.pipeline.unet.register_forward_pre_hook(lose_gpu_mid_run)
        try:
            job_id = server.app.jobs.submit(request)
            assert denoising.wait(JOB_TIMEOUT_S), "the job never reached the model"
            response = httpx.get(server.url + "gpu_status", timeout=30)
            scrape = httpx.get(server.url + "metrics", timeout=30)
            running = server.app.jobs.status(job_id)
        finally:
            go_on.set()
            hook.remove()
        finished = server.app.jobs.wait(job_id, timeout=JOB_TIMEOUT_S)

        nvml.lost = False  # the driver answers again
        recovered = httpx.get(server.url + "gpu_status", timeout=30).json()

    assert response.status_code == 200
    status = response.json()
    assert status["gpu_present"] is False and status["gpus"] == []
    assert "GPU is lost" in status["reason"] and "nvidia-smi" in status["reason"], status["reason"]
    assert status["app"]["queue"] == 0
    assert scrape.status_code == 200 and "i2v_gpu_memory_used_bytes{" not in scrape.text
    assert running.state == "running"

    assert finished.state == "done", finished.error_message
    video = Path(finished.result["videos"][0]["path"])
    assert probe_mp4(video)["frames"] == 4
    assert recovered["gpu_present"] is True and recovered["gpus"][0]["name"] == "NVIDIA L4"


# -- 4. out of memory on the server ------------------------------------------------------------------------------


def test_out_of_memory_on_the_server_is_recovered_and_shown(server, client, image, warm):
    engine = server.app.jobs.engine
    recoveries = metric(server, "i2v_oom_recoveries_total")
    # The VAE decode runs out of memory once: the same latents are decoded again with less memory.
    with out_of_memory(engine.backend.pipeline.vae.decoder, times=1) as calls:
        video, _files, result = generate(client, image)
    assert calls["n"] == 1

    assert probe_mp4(Path(video))["frames"] == 4
    retry = [n for n in result["notices"] if n["code"] == "plan.oom_retry"]
    assert retry and "ran out of memory" in retry[0]["message"], result["notices"]
    status = server.app.jobs.status(result["job_id"])
    assert status.state == "done"
    page = render.job_findings_html(status)  # the "What the app changed" box the page shows with the video
    assert 'data-code="plan.oom_retry"' in page and "ran out of memory" in page
    assert metric(server, "i2v_oom_recoveries_total") == recoveries + 1


# -- 5. NaN on the server ----------------------------------------------------------------------------------------


def bf16_request(image: Path) -> GenerationRequest:
    return GenerationRequest(image=image, prompt=PROMPT, model="tiny", width=64, height=64, frames=4, steps=3,
                             seeds=(11,), dtype="bfloat16")


def test_nan_on_the_server_is_retried_in_a_safer_precision_and_shown(server, image, outputs, warm):
    jobs, engine = server.app.jobs, server.app.jobs.engine
    engine.load(bf16_request(image))  # the hook goes on the model as the job will run it
    retries = metric(server, "i2v_nan_retries_total")
    with nan_output(engine.backend.pipeline.unet, only_dtype=torch.bfloat16) as calls:
        status = jobs.wait(jobs.submit(bf16_request(image)), timeout=JOB_TIMEOUT_S)
    assert calls["n"] == 1

    assert status.state == "done", status.error_message
    assert probe_mp4(Path(status.result["videos"][0]["path"]))["frames"] == 4
    assert status.result["plan"]["dtype"] == "bfloat16"
    retried = [n for n in status.result["notices"] if n["code"] == "numerics.run_retried"]
    assert retried and "float32" in retried[0]["message"], status.result["notices"]
    page = render.job_findings_html(status)
    assert 'data-code="numerics.run_retried"' in page
    assert metric(server, "i2v_nan_retries_total") == retries + 1


def test_nan_in_every_precision_fails_clearly_and_writes_nothing(server, client, image, outputs, warm):
    jobs, engine = server.app.jobs, server.app.jobs.engine
    engine.load(bf16_request(image))
    before = files_under(outputs)
    with nan_output(engine.backend.pipeline.unet):
        status = jobs.wait(jobs.submit(bf16_request(image)), timeout=JOB_TIMEOUT_S)

    assert status.state == "failed" and status.error_kind == "recoverable"
    message = status.error_message
    assert "NaN/Inf in bfloat16 and again after retrying in float32" in message
    assert "no video was written" in message and "Try another seed" in message
    page = render.status_html(status)
    assert 'data-state="failed"' in page and html.escape(message) in page
    assert_nothing_left(outputs, before)  # above all, no black video
    assert_still_serving(client, image)


# -- 6. the video encoder fails ----------------------------------------------------------------------------------


ENCODERS = {
    # ffmpeg takes every frame, writes the start of the file and fails: the old writer kept that truncated mp4
    # as a success.
    "crashes mid-file": """
sys.stdin.buffer.read()
with open(args[-1], "wb") as out:
    out.write(b"\\x00\\x00\\x00\\x20ftypisom" + bytes(2000))
sys.stderr.write("[libx264 @ 0x5581] x264_encoder_encode failed (injected)\\nConversion failed!\\n")
sys.exit(1)
""",
    "refuses to start": """
sys.stderr.write("Unknown encoder 'libx264' (injected)\\n")
sys.exit(1)
""",
}


@pytest.mark.parametrize("behaviour", [*ENCODERS, "is missing"])
def test_video_encoder_failure_is_explained(server, client, image, outputs, warm, monkeypatch, tmp_path, behaviour):
    before = files_under(outputs)
    if behaviour == "is missing":
        monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(tmp_path / "no-such-ffmpeg"))
        expected = ("The video encoder could not be started", "no-such-ffmpeg")
    else:
        encoder(monkeypatch, tmp_path, ENCODERS[behaviour])
        last_line = "Conversion failed!" if behaviour == "crashes mid-file" else "Unknown encoder 'libx264'"
        expected = ("The video encoder (ffmpeg) failed with exit code 1", last_line)

    message, status = generate_fails(server, client, image)

    assert_failed_clearly(status, message, *expected, "imageio-ffmpeg", "IMAGEIO_FFMPEG_EXE")
    assert_nothing_left(outputs, before)
    monkeypatch.undo()
    assert_still_serving(client, image)

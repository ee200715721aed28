"""One generation per device at a time, whoever calls, and a full queue answers "busy" at once.

The real app runs in-process with a small job queue. Twelve gradio_client users submit at the same moment, one
more request comes through Gradio's plain REST route (``POST /gradio_api/call/generate`` + its event stream), and
two in-process callers use ``Engine.generate`` directly (the server's engine, and a second engine built the way
the CLI builds one). The engine is instrumented, not replaced: ``JobRun.execute`` and the backend's ``denoise``
are wrapped by counters that record every generation's start and end and the most that were ever in flight.
"""
from __future__ import annotations

import functools
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file

import i2v.engine.engine as engine_module
from i2v.backends.i2vgen_xl.backend import I2VGenXLBackend
from i2v.engine.engine import Engine
from i2v.engine.request import GenerationRequest
from i2v.engine.run import JobRun
from i2v.engine.video import probe_mp4

from conftest import photo_like
from web_support import running_app

log = logging.getLogger(__name__)

PROMPT = "a red ball rolling slowly to the left"
SMALL = {"preset": "fast-check", "resolution": 128, "frames": 4, "steps": 2}
QUEUE_SIZE = 4
USERS = 12
# Each instrumented generation is held this long inside the device lock: a second generation that got past a
# broken lock would overlap it for sure, even though a tiny job alone takes a fraction of a second.
HOLD_S = 0.4
BUSY = re.compile(r"busy: (\d+) jobs are waiting")


@dataclass
class InFlight:
    """Counts calls of a wrapped method that are running right now; keeps the peak and every interval."""

    hold_s: float = 0.0
    active: int = 0
    peak: int = 0
    intervals: list[tuple[float, float, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, method, label=lambda args: threading.current_thread().name):
        tracker = self

        @functools.wraps(method)
        def counted(*args, **kwargs):
            started = tracker._enter()
            try:
                time.sleep(tracker.hold_s)
                return method(*args, **kwargs)  # the real method: the instrument must not replace what is tested
            finally:
                tracker._leave(started, label(args))

        return counted

    def _enter(self) -> float:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            return time.monotonic()

    def _leave(self, started: float, label: str) -> None:
        with self._lock:
            self.active -= 1
            self.intervals.append((started, time.monotonic(), label))

    def overlaps(self) -> list[tuple]:
        ordered = sorted(self.intervals)
        return [(a, b) for a, b in zip(ordered, ordered[1:]) if b[0] < a[1]]


@pytest.fixture
def instrumented(monkeypatch):
    """Wrap the whole generation (JobRun.execute) and the denoising loop of the backend every model uses."""
    runs = InFlight(hold_s=HOLD_S)
    denoises = InFlight()
    monkeypatch.setattr(JobRun, "execute", runs.wrap(JobRun.execute, label=lambda args: args[0].job_id))
    monkeypatch.setattr(I2VGenXLBackend, "denoise", denoises.wrap(I2VGenXLBackend.denoise))
    return runs, denoises


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "input.png"
    photo_like(320, 256).save(path)
    return path


def direct_request(image: Path) -> GenerationRequest:
    return GenerationRequest(image=str(image), prompt=PROMPT, model="tiny", **SMALL)


# -- the callers -------------------------------------------------------------------------------------------------


def client_call(url: str, image: Path, ready: threading.Barrier) -> dict:
    """One user: own client, waits for the others, then one /generate. Returns what happened."""
    client = Client(url, verbose=False)
    try:
        ready.wait(timeout=120)
        started = time.monotonic()
        try:
            video, _files, result = client.predict(handle_file(str(image)), PROMPT, api_name="/generate", **SMALL)
        except Exception as exc:  # noqa: BLE001 - a rejection arrives as the client's AppError; kept for asserts
            return {"via": "gradio_client", "error": str(exc), "seconds": time.monotonic() - started}
        return {"via": "gradio_client", "video": video, "job_id": result["job_id"],
                "seconds": time.monotonic() - started}
    finally:
        client.close()


def rest_call(url: str, image: Path, ready: threading.Barrier) -> dict:
    """Gradio's REST protocol: upload, POST /gradio_api/call/generate, then read the event stream."""
    with httpx.Client(base_url=url + "gradio_api/", timeout=180) as http:
        uploaded = http.post("upload", files={"files": (image.name, image.read_bytes(), "image/png")})
        uploaded.raise_for_status()
        data = [{"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}, PROMPT, "",
                SMALL["preset"], SMALL["resolution"], SMALL["frames"], SMALL["steps"], 0, 0, -1, 1, False, "", None, True,
                None]  # no last frame, sound on, no LoRAs
        ready.wait(timeout=120)
        started = time.monotonic()
        posted = http.post("call/generate", json={"data": data})
        posted.raise_for_status()
        event, payload = read_event_stream(http, f"call/generate/{posted.json()['event_id']}")
    seconds = time.monotonic() - started
    if event == "complete":
        video, _files, result = payload
        return {"via": "rest", "video": video["path"], "job_id": result["job_id"], "seconds": seconds}
    return {"via": "rest", "error": json.dumps(payload), "seconds": seconds}


def read_event_stream(http: httpx.Client, path: str) -> tuple[str, object]:
    """The final event ("complete" or "error") and its data."""
    event = None
    with http.stream("GET", path) as stream:
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ").strip()
            elif line.startswith("data: ") and event in ("complete", "error"):
                return event, json.loads(line.removeprefix("data: "))
    raise AssertionError(f"the event stream {path} ended without a result (last event {event!r})")


def engine_call(engine: Engine, image: Path, ready: threading.Barrier, via: str) -> dict:
    """In-process, no queue: what the CLI does, and any script that imports the engine."""
    ready.wait(timeout=120)
    started = time.monotonic()
    result = engine.generate(direct_request(image))
    return {"via": via, "video": str(result.videos[0].path), "job_id": result.job_id,
            "seconds": time.monotonic() - started}


def run_all(callers: list) -> list[dict]:
    """Run each caller in its own thread; every one must come back (a hang fails here, not forever)."""
    results: list[dict | None] = [None] * len(callers)

    def run(index: int, call) -> None:
        try:
            results[index] = call()
        except Exception as exc:  # noqa: BLE001 - reported by the assert below with the caller's name
            log.exception("caller %d failed", index)
            results[index] = {"via": "crashed", "error": repr(exc)}

    threads = [threading.Thread(target=run, args=(i, call), name=f"caller-{i}", daemon=True)
               for i, call in enumerate(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a caller hung"
    return results


# -- the tests ---------------------------------------------------------------------------------------------------


def test_twelve_users_rest_and_in_process_callers_never_run_two_generations_at_once(tmp_path, image,
                                                                                    instrumented):
    runs, denoises = instrumented
    outputs = (tmp_path / "outputs").resolve()
    with running_app(outputs, queue_size=QUEUE_SIZE) as server:
        cli_engine = Engine(output_dir=outputs / "cli")  # a second engine in the same process, as the CLI makes
        ready = threading.Barrier(USERS + 3)
        callers = [functools.partial(client_call, server.url, image, ready) for _ in range(USERS)]
        callers.append(functools.partial(rest_call, server.url, image, ready))
        callers.append(functools.partial(engine_call, server.app.jobs.engine, image, ready, "engine"))
        callers.append(functools.partial(engine_call, cli_engine, image, ready, "cli-engine"))

        started = time.monotonic()
        results = run_all(callers)
        wall_s = time.monotonic() - started

        crashed = [r for r in results if r["via"] == "crashed"]
        assert not crashed, crashed
        accepted = [r for r in results if "video" in r]
        rejected = [r for r in results if "error" in r]
        queued = [r for r in results if r["via"] in ("gradio_client", "rest")]
        log.info("%d callers in %.1f s: %d accepted, %d rejected, peak %d", len(results), wall_s, len(accepted),
                 len(rejected), runs.peak)
        summary = {"wall_s": round(wall_s, 1), "accepted": len(accepted), "rejected": len(rejected),
                   "accepted_via_queue": sum(1 for r in queued if "video" in r), "peak": runs.peak,
                   "generations": len(runs.intervals),
                   "slowest_rejection_s": round(max((r["seconds"] for r in rejected), default=0), 2),
                   "by_caller": {via: [("video" if "video" in r else "busy") for r in results if r["via"] == via]
                                 for via in ("rest", "engine", "cli-engine")}}
        print(f"\nconcurrency figures: {json.dumps(summary)}")  # for the reliability notes (pytest -s)

        # Never two generations at once, across the queue, the REST route and both engines.
        assert runs.peak == 1, runs.overlaps()
        assert denoises.peak == 1, denoises.overlaps()
        assert not runs.overlaps()
        assert len(runs.intervals) == len(accepted)

        # Everyone got an answer: a video or the busy message.
        assert len(accepted) + len(rejected) == USERS + 3
        assert len(queued) == USERS + 1
        # A rejection needs QUEUE_SIZE jobs waiting behind a running one, so at least that many got in.
        assert sum(1 for r in queued if "video" in r) >= QUEUE_SIZE + 1
        assert rejected, "13 simultaneous submissions into a queue of 4 should have turned some away"
        for rejection in rejected:
            found = BUSY.search(rejection["error"])
            assert found, rejection
            assert int(found.group(1)) == QUEUE_SIZE, rejection
            assert "Traceback" not in rejection["error"]
            assert rejection["seconds"] < 60, f"a rejection must come at once, not after a wait: {rejection}"

        for result in accepted:
            probe = probe_mp4(Path(result["video"]))
            assert probe["frames"] == SMALL["frames"], (result, probe)
            assert probe["codec"].startswith("h264"), probe
            assert probe["size"] == (128, 128), probe

        states = {status.id: status.state for status in server.app.jobs.history(100)}
        for result in accepted:
            if result["via"] in ("gradio_client", "rest"):
                assert states[result["job_id"]] == "done", result
        assert sum(1 for state in states.values() if state == "done") == sum(1 for r in queued if "video" in r)
        assert not [s for s in states.values() if s in ("queued", "running")]

        # Still up, queue empty, and it takes the next job.
        health = httpx.get(server.url + "healthz", timeout=30).json()
        assert health["ok"] is True and health["queue"] == 0
        client = Client(server.url, verbose=False)
        try:
            video, _files, _result = client.predict(handle_file(str(image)), PROMPT, api_name="/generate", **SMALL)
        finally:
            client.close()
        assert probe_mp4(Path(video))["frames"] == SMALL["frames"]
        assert runs.peak == 1


def test_the_instrument_sees_overlap_when_the_device_lock_is_missing(tmp_path, image, instrumented, monkeypatch):
    """The control: with a fresh lock per call (no serialisation) two in-process generations do overlap, so a
    peak of 1 above is the lock's doing and not a blind instrument."""
    runs, _denoises = instrumented
    monkeypatch.setattr(engine_module, "device_lock", lambda device: threading.Lock())
    engines = [Engine(output_dir=tmp_path / f"control-{i}") for i in range(2)]
    for engine in engines:
        # Loaded one after the other first: concurrent from_pretrained calls in one process are not thread-safe
        # (the empty-weights context is process-wide), and the control is about the runs.
        engine.load(direct_request(image))
    ready = threading.Barrier(2)
    results = run_all([functools.partial(engine_call, engine, image, ready, f"control-{i}")
                       for i, engine in enumerate(engines)])
    assert all("video" in r for r in results), results
    assert runs.peak == 2, runs.intervals

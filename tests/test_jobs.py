"""Jobs on the server: queue, progress, cancel, results, history that survives a new manager (= an app restart)."""
from __future__ import annotations

import io
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from i2v.engine.engine import Engine
from i2v.errors import BadInputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.service.jobs import JobManager, QueueFullError, fingerprint, request_from_settings
from i2v.service.jobstore import JobRecord, JobStore
from i2v.engine.request import GenerationRequest

from conftest import photo_like


@pytest.fixture
def manager(tmp_path) -> JobManager:
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "outputs")
    jobs = JobManager(engine, max_queue=2)
    yield jobs
    jobs.shutdown()


def tiny(photo_path: Path, **changes) -> GenerationRequest:
    values = dict(image=str(photo_path), prompt="a red ball rolling slowly to the left", model="tiny",
                  preset="fast-check", resolution=128, frames=4, steps=2)
    values.update(changes)
    return GenerationRequest(**values)


def long_job(photo_path: Path) -> GenerationRequest:
    """Seconds of work on the tiny model: time to look at it queued or running, and to cancel it."""
    return tiny(photo_path, resolution=256, frames=16, steps=250)


def wait_for_step(manager: JobManager, job_id: str, step: int, timeout: float = 60):
    deadline = time.monotonic() + timeout
    status = manager.status(job_id)
    while time.monotonic() < deadline:
        progress = status.progress or {}
        if status.finished or (progress.get("stage") == "denoise" and progress.get("step", 0) >= step):
            return status
        status = manager.wait(job_id, timeout=1, until_change_from=fingerprint(status))
    raise AssertionError(f"job {job_id} did not reach step {step}: {status}")


def test_a_job_runs_to_a_playable_video_with_poster_and_fixed_seed(manager, photo_path):
    job_id = manager.submit(tiny(photo_path))
    queued = manager.status(job_id)
    assert queued.settings["seeds"] and len(queued.settings["seeds"]) == 1  # seed known before it runs
    done = manager.wait(job_id, timeout=120)
    assert done.state == "done", done.error_message
    (video,) = done.result["videos"]
    assert Path(video["path"]).stat().st_size > 0 and Path(video["sidecar"]).is_file()
    assert video["seed"] == queued.settings["seeds"][0]
    with Image.open(video["poster"]) as poster:
        assert poster.format == "JPEG"
    assert done.result["params"]["frames"] == 4


def test_the_input_picture_is_kept_so_the_upload_may_vanish(manager, photo_path):
    job_id = manager.submit(tiny(photo_path))
    kept = Path(manager.status(job_id).image_path)
    photo_path.unlink()
    assert manager.wait(job_id, timeout=120).state == "done"
    assert kept.is_file() and kept.parent.name == "inputs"


def test_bad_input_is_refused_at_submit_and_nothing_is_queued(manager, photo_path):
    with pytest.raises(BadInputError, match="prompt is empty"):
        manager.submit(tiny(photo_path, prompt="  "))
    with pytest.raises(BadInputError, match="steps"):
        manager.submit(tiny(photo_path, steps=0))
    assert manager.history() == [] and manager.active() == []


def test_queue_positions_then_full_queue_is_refused_with_a_count(manager, photo_path):
    first = manager.submit(long_job(photo_path))
    wait_for_step(manager, first, 1)
    second = manager.submit(tiny(photo_path))
    third = manager.submit(tiny(photo_path))
    assert [manager.status(j).position for j in (second, third)] == [1, 2]
    with pytest.raises(QueueFullError, match="2 jobs are waiting"):
        manager.submit(tiny(photo_path))
    assert [s.id for s in manager.active()] == [first, second, third]
    manager.cancel(first)
    assert manager.wait(third, timeout=120).state == "done"
    assert manager.status(second).state == "done"


def test_cancel_stops_a_running_job_within_steps_and_leaves_no_video(manager, photo_path):
    job_id = manager.submit(long_job(photo_path))
    wait_for_step(manager, job_id, 2)
    assert manager.cancel(job_id)
    ended = manager.wait(job_id, timeout=60)
    assert ended.state == "cancelled"
    assert ended.progress is None or ended.progress["step"] < 250
    assert not list(manager.engine.output_dir.glob("*/*.mp4"))


def test_cancel_a_queued_job_before_it_starts(manager, photo_path):
    running = manager.submit(long_job(photo_path))
    waiting = manager.submit(tiny(photo_path))
    assert manager.cancel(waiting)
    assert manager.status(waiting).state == "cancelled"
    manager.cancel(running)
    assert manager.wait(running, timeout=60).state == "cancelled"
    assert manager.cancel(waiting) is False  # already over


def test_progress_reports_steps_elapsed_and_an_eta(manager, photo_path):
    job_id = manager.submit(tiny(photo_path, steps=60))
    status = wait_for_step(manager, job_id, 5)
    assert status.state == "running" and status.progress["total_steps"] == 60
    assert status.eta_s is not None and status.eta_s >= 0
    manager.wait(job_id, timeout=120)


def test_a_failed_job_keeps_the_error_and_the_worker_keeps_serving(manager, photo_path, monkeypatch):
    def broken_load(request):
        raise MemoryError("simulated host memory exhaustion")

    original = manager.engine.generate
    monkeypatch.setattr(manager.engine, "generate", lambda *a, **k: broken_load(a[0]))
    failed = manager.submit(tiny(photo_path))
    status = manager.wait(failed, timeout=60)
    assert status.state == "failed" and status.error_kind == "internal"
    assert "MemoryError" in status.error_message and failed in status.error_message
    monkeypatch.setattr(manager.engine, "generate", original)
    assert manager.wait(manager.submit(tiny(photo_path)), timeout=120).state == "done"


def test_history_survives_a_new_manager_and_unfinished_jobs_become_interrupted(tmp_path, photo_path):
    outputs = tmp_path / "outputs"
    first = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs))
    done_id = first.submit(tiny(photo_path, prompt="waves crashing on rocks"))
    assert first.wait(done_id, timeout=120).state == "done"
    first.shutdown()
    # A job the crashed process left running, with a half-written file.
    store = JobStore.in_folder(outputs)
    store.add(JobRecord(id="deadbeef", state="queued", created_at=time.time(), settings={"prompt": "x"}))
    store.mark_running("deadbeef")
    partial = outputs / "20260101" / ".000000_deadbeef_01_seed1.abc123.partial.mp4"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")

    again = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs))
    assert [r.id for r in again.recover()] == ["deadbeef"]
    history = again.history()
    assert [h.id for h in history] == ["deadbeef", done_id]
    assert history[0].state == "interrupted" and "stopped before" in history[0].error_message
    assert history[1].settings["prompt"] == "waves crashing on rocks"
    assert Path(history[1].result["videos"][0]["path"]).is_file()
    assert not partial.exists()
    # "load these settings": the stored settings and kept picture make the same request again
    again_request = request_from_settings(history[1].settings, history[1].image_path)
    assert again_request.seeds == tuple(history[1].settings["seeds"]) and again_request.frames == 4
    assert again.wait(again.submit(again_request), timeout=120).state == "done"
    again.shutdown()


# -- what a submission writes (red-team items 1 and 2) ---------------------------------------------------------

PAGE = b"<!doctype html><html><body><script>fetch('/gradio_api/info')</script></body></html>\n"


def refused_files(folder: Path) -> list[Path]:
    """Every kind of file the engine refuses, plus an HTML page sent as "the picture"."""
    import hostile_corpus as corpus

    files = [folder / item.filename for item in corpus.REFUSED]
    for item, path in zip(corpus.REFUSED, files):
        path.write_bytes(item.build())
    page = folder / "page.html"
    page.write_bytes(PAGE)
    return [*files, page]


def test_a_refused_submission_writes_nothing_under_outputs(tmp_path, photo_path):
    """Bombs, truncated, text, SVG, HTML, empty files, and a job refused for lack of disk space: each is refused
    and leaves no copy of its upload behind (the copies were served from the app's origin, and on a nearly full
    disk refused jobs filled it past the reserve)."""
    outputs = tmp_path / "outputs"
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs), max_queue=2)
    tight = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs, min_free_bytes=2**60), max_queue=2)
    try:
        for path in refused_files(tmp_path):
            with pytest.raises(BadInputError):
                jobs.submit(tiny(path))
        for seed in range(4):  # four distinct pictures refused for the disk reserve
            picture = tmp_path / f"photo{seed}.png"
            Image.effect_noise((256, 256), 40 + seed).convert("RGB").save(picture)
            with pytest.raises(BadInputError, match="Not enough free disk space"):
                tight.submit(tiny(picture))
    finally:
        jobs.shutdown()
        tight.shutdown()
    written = sorted(p.relative_to(outputs).as_posix() for p in outputs.rglob("*") if p.is_file())
    assert [name for name in written if not name.startswith("jobs.sqlite3")] == []
    assert jobs.history() == []


def test_the_kept_picture_is_named_by_its_detected_format_not_by_the_upload(manager, tmp_path, photo_path):
    """A valid PNG with a page appended, named .html, is a picture: it runs, and its copy is a .png, which the
    file route serves as an image, never as a page of the app's origin."""
    disguised = tmp_path / "page.html"
    disguised.write_bytes(photo_path.read_bytes() + PAGE)
    as_gif = tmp_path / "photo.gif"
    Image.open(photo_path).convert("RGB").save(as_gif, format="JPEG")

    kept = [Path(manager.status(manager.submit(tiny(path))).image_path) for path in (disguised, as_gif)]

    assert [path.suffix for path in kept] == [".png", ".jpg"]
    assert kept[0].read_bytes() == disguised.read_bytes()  # the very bytes that were checked
    assert not list(kept[0].parent.glob("*.html")) and not list(kept[0].parent.glob("*.gif"))


# -- a job database that cannot be written (red-team item 3) ----------------------------------------------------


def full_database(monkeypatch, store: JobStore, *, writes=("add", "_update")) -> None:
    """Writes fail as SQLite fails on a full disk; reads work."""
    def refuse(*_args, **_kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    for name in writes:
        monkeypatch.setattr(store, name, refuse)


def test_an_outcome_the_database_never_took_is_shown_then_marked_interrupted_at_the_next_start(tmp_path, photo_path,
                                                                                               monkeypatch):
    outputs = tmp_path / "outputs"
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs))
    job_id = jobs.submit(tiny(photo_path))
    full_database(monkeypatch, jobs.store, writes=("_update",))  # from here on: mark_running, mark_done fail

    ended = jobs.wait(job_id, timeout=60)

    assert ended.state == "failed" and "job database could not be written" in ended.error_message
    assert "database or disk is full" in ended.error_message and "Free some space" in ended.error_message
    assert [h.state for h in jobs.history()] == ["failed"]  # the page's history says the same
    jobs.shutdown()  # the disk is still full: the outcome never reached the database
    monkeypatch.undo()
    again = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs))
    assert [r.id for r in again.recover()] == [job_id]
    assert again.status(job_id).state == "interrupted"
    again.shutdown()


def test_a_submission_the_database_cannot_take_is_refused_and_writes_nothing(manager, photo_path, monkeypatch):
    full_database(monkeypatch, manager.store, writes=("add",))
    with pytest.raises(BadInputError, match="job database could not be written .* so the job was not queued"):
        manager.submit(tiny(photo_path))
    assert not (manager.engine.output_dir / "inputs").exists() or not any(
        (manager.engine.output_dir / "inputs").iterdir())


def test_the_history_stays_readable_when_a_full_disk_stops_sqlite_opening_it(tmp_path, photo_path, monkeypatch):
    """Measured on a real full 20 MB disk: SQLite could not even open the WAL database for reading ("disk I/O
    error", it must create -wal and -shm), so the page's history and the job states raised as well."""
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "outputs"))
    done = jobs.wait(jobs.submit(tiny(photo_path)), timeout=120)
    jobs.shutdown()
    real_connect = sqlite3.connect

    def full_disk(target, *args, **kwargs):
        if kwargs.get("uri"):
            return real_connect(target, *args, **kwargs)
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorcode = 10  # SQLITE_IOERR, as SQLite reports it
        raise error

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    assert [h.state for h in jobs.history()] == ["done"]
    assert jobs.status(done.id).result["videos"] == done.result["videos"]
    with pytest.raises(sqlite3.Error):  # writes still fail, and the job layer keeps them in memory
        jobs.store.mark_cancelled(done.id)


def test_the_same_picture_uploaded_by_several_people_at_once_is_kept_for_all_of_them(tmp_path):
    """Four people sending the same photo at the same moment: every job is accepted (two copies being written
    under one name must not make one of them fail with "No such file or directory")."""
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "outputs"))
    data = io.BytesIO()
    photo_like(96, 64).save(data, format="PNG")
    kept_by_round: list[set[str]] = []
    for _ in range(25):
        start = threading.Barrier(8)

        def keep():
            start.wait()
            return jobs._keep_input(data.getvalue(), "PNG")[0]

        with ThreadPoolExecutor(8) as pool:
            kept = [future.result() for future in [pool.submit(keep) for _ in range(8)]]
        kept_by_round.append({path.name for path in kept})
        for path in set(kept):
            assert path.read_bytes() == data.getvalue()
            path.unlink()
    assert all(len(names) == 1 for names in kept_by_round)
    assert not list((tmp_path / "outputs" / "inputs").iterdir())  # no partial file left behind
    jobs.shutdown()

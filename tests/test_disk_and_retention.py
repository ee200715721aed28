"""Disk: a job is refused before it starts when the disk would fill, with the figures; optional retention deletes
old outputs (and says so in the log), never jobs in flight, never files outside the outputs folder."""
from __future__ import annotations

import logging
import os
import shutil
import time
from collections import namedtuple
from pathlib import Path

import pytest

from i2v.engine import disk
from i2v.engine.engine import Engine
from i2v.errors import NotEnoughDiskSpaceError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.service.jobs import JobManager
from i2v.service.jobstore import JobRecord, JobStore
from i2v.engine.request import GenerationRequest
from i2v.service.retention import prune_outputs

Usage = namedtuple("Usage", "total used free")
DAY = 86400


def tiny(photo_path: Path, **changes) -> GenerationRequest:
    values = dict(image=str(photo_path), prompt="a red ball rolling slowly to the left", model="tiny",
                  preset="fast-check", resolution=128, frames=4, steps=2)
    values.update(changes)
    return GenerationRequest(**values)


@pytest.fixture
def free_bytes(monkeypatch):
    """The disk's free space as the engine sees it (shutil.disk_usage), set by the test."""
    free = {"bytes": 100 * 2**30}
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: Usage(200 * 2**30, 0, free["bytes"]))
    return free


def test_the_estimate_grows_with_the_job():
    small = disk.job_bytes(128, 128, 4, 1)
    assert disk.job_bytes(512, 512, 16, 1) > small
    assert disk.job_bytes(128, 128, 4, 3) == 3 * small


def test_a_job_that_would_fill_the_disk_is_refused_before_it_starts(tmp_path, photo_path, free_bytes):
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "outputs", min_free_bytes=1024 * 2**20)
    engine.prepare(tiny(photo_path))  # plenty of space: fine
    free_bytes["bytes"] = 900 * 2**20
    with pytest.raises(NotEnoughDiskSpaceError) as refused:
        engine.prepare(tiny(photo_path))
    message = str(refused.value)
    assert "900 MB free" in message and "1.00 GB must stay free" in message and "I2V_MIN_FREE_MB" in message
    assert str(tmp_path) in message  # where: the nearest existing folder of the outputs
    assert not (tmp_path / "outputs").exists()  # nothing was written
    jobs = JobManager(engine)
    try:
        with pytest.raises(NotEnoughDiskSpaceError):
            jobs.submit(tiny(photo_path))  # the app refuses at submit: no job queued that would fail later
        assert jobs.history() == [] and jobs.queue_length() == 0
    finally:
        jobs.shutdown()


def test_the_real_disk_is_read(tmp_path, photo_path):
    """No fake: a reserve larger than any disk refuses, naming the real free space."""
    engine = Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path, min_free_bytes=2**60)
    with pytest.raises(NotEnoughDiskSpaceError) as refused:
        engine.prepare(tiny(photo_path))
    free_gb = shutil.disk_usage(tmp_path).free / 2**30
    assert f"{free_gb:.1f}" in str(refused.value) or f"{free_gb:.2f}" in str(refused.value)


# -- retention -------------------------------------------------------------------------------------------------


def _job(store: JobStore, outputs: Path, job_id: str, state: str, finished_days_ago: float | None, now: float):
    folder = outputs / "20261001"
    folder.mkdir(parents=True, exist_ok=True)
    video, sidecar, poster = (folder / f"{job_id}.mp4", folder / f"{job_id}.json", folder / f"{job_id}.jpg")
    for path in (video, sidecar, poster):
        path.write_bytes(b"x" * 1000)
    picture = outputs / "inputs" / f"{job_id}.png"
    picture.parent.mkdir(exist_ok=True)
    picture.write_bytes(b"png")
    old = now - (finished_days_ago or 0) * DAY
    for path in (video, sidecar, poster, picture):
        os.utime(path, (old, old))
    store.add(JobRecord(id=job_id, state="queued", created_at=old, settings={"prompt": job_id},
                        image_path=str(picture)))
    if state == "done":
        store.mark_done(job_id, {"videos": [{"path": str(video), "sidecar": str(sidecar), "poster": str(poster)}]})
    elif state == "running":
        store.mark_running(job_id)
    if finished_days_ago is not None:
        with store._connect() as db:  # the finish time the job would have had that many days ago
            db.execute("UPDATE jobs SET finished_at = ? WHERE id = ?", (old, job_id))
    return video, picture


def test_retention_deletes_only_old_finished_outputs_and_logs_each(tmp_path, caplog):
    outputs, now = tmp_path / "outputs", time.time()
    store = JobStore.in_folder(outputs)
    old_video, old_picture = _job(store, outputs, "old", "done", 40, now)
    new_video, new_picture = _job(store, outputs, "recent", "done", 2, now)
    running_video, running_picture = _job(store, outputs, "busy", "running", None, now - 40 * DAY)
    stray_cli_video = outputs / "20260901" / "from_the_cli.mp4"
    stray_cli_video.parent.mkdir()
    stray_cli_video.write_bytes(b"y" * 500)
    os.utime(stray_cli_video, (now - 50 * DAY,) * 2)
    outside = tmp_path / "not-ours.mp4"
    outside.write_bytes(b"z")
    os.utime(outside, (now - 99 * DAY,) * 2)
    (outputs / "20260901" / "link.mp4").symlink_to(outside)

    with caplog.at_level(logging.INFO, logger="i2v.service.retention"):
        report = prune_outputs(outputs, store, 30, now=now)

    assert report.jobs == ["old"]
    assert not old_video.exists() and not old_picture.exists() and not stray_cli_video.exists()
    assert new_video.exists() and new_picture.exists()
    assert running_video.exists() and running_picture.exists()  # a job in flight is never touched
    assert outside.exists()  # a symlink in outputs/ does not reach outside
    assert store.get("old") is None and store.get("recent") is not None and store.get("busy") is not None
    assert "retention: deleted job old" in caplog.text and "from_the_cli.mp4" in caplog.text
    assert "retention (30 days): deleted 1 jobs and" in caplog.text


def test_retention_off_deletes_nothing(tmp_path):
    outputs, now = tmp_path / "outputs", time.time()
    store = JobStore.in_folder(outputs)
    video, _ = _job(store, outputs, "ancient", "done", 3000, now)
    assert prune_outputs(outputs, store, 0, now=now).jobs == []
    assert video.exists() and store.get("ancient") is not None


def test_the_app_refuses_without_showing_server_paths_and_logs_them(tmp_path, photo_path, caplog):
    """Whoever reaches the app over HTTP learns what to do, not where the server keeps its files; the operator
    finds the folder in the log."""
    outputs = tmp_path / "srv" / "outputs"
    outputs.mkdir(parents=True)
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs, min_free_bytes=2**60))
    try:
        with caplog.at_level(logging.WARNING, logger="i2v.service.jobs"):
            with pytest.raises(NotEnoughDiskSpaceError) as refused:
                jobs.submit(tiny(photo_path))
        with pytest.raises(NotEnoughDiskSpaceError) as verdict:
            jobs.prepare(tiny(photo_path))  # the page's verdict on the settings
    finally:
        jobs.shutdown()
    for message in (str(refused.value), str(verdict.value)):
        assert str(tmp_path) not in message and "/srv" not in message, message
        assert "Not enough free disk space for this job in the outputs folder:" in message, message
        assert "I2V_MIN_FREE_MB" in message and "Free some space" in message
    assert any(str(outputs) in record.getMessage() for record in caplog.records)

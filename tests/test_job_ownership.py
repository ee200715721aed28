"""Red-team item 4: job ids are public (the history shows them), so knowing one must not let anyone steer the job.
A job is cancelled, promoted and followed as one's own only by the browser (its secret in local storage) or API
caller that submitted it; everyone else sees it. ``--shared-control`` gives every visitor control again."""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import pytest

from i2v.engine.engine import Engine, device_lock
from i2v.gpu.hardware import FixedGpuInfo
from i2v.service.jobs import JobManager
from i2v.service.jobstore import JobStore
from i2v.settings import load_settings
from i2v.web.server import create_app

from test_jobs import tiny
from web_support import running_app
from test_page_events import JOB_TIMEOUT_S, SMALL, form, picture, wired_outputs  # noqa: F401 - picture: a fixture

BROWSER_A, BROWSER_B = "secret-of-browser-a", "secret-of-browser-b"
NOT_YOURS = "only the browser that started it can cancel it"


def studio(tmp_path_factory, *flags: str):
    outputs = tmp_path_factory.mktemp("ownership-outputs")
    return create_app(load_settings(["--model", "tiny", "--output-dir", str(outputs), *flags], environ={}))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    app = studio(tmp_path_factory)
    yield app
    app.close()


@pytest.fixture(scope="module")
def shared_app(tmp_path_factory):
    app = studio(tmp_path_factory, "--shared-control", "on")
    yield app
    app.close()


@contextmanager
def held_job(app, picture: str, owner: str) -> Iterator[str]:
    """A tiny job submitted on the page by ``owner`` that cannot finish while the block runs: the device it needs is
    held here, so it stays queued or running whatever the machine's speed."""
    events, _ = wired_outputs(app.blocks)
    device = app.jobs.prepare(tiny(Path(picture))).plan.device
    with device_lock(device):
        job_id = events.submit(*form(events, image=picture, **SMALL), owner)[events.page.job_id]
        yield job_id
        app.jobs.cancel(job_id, owner)  # whatever the test did, the job ends when the device is let go


def test_another_browser_cannot_cancel_a_job_and_is_told_why(app, picture):
    events, _ = wired_outputs(app.blocks)
    with held_job(app, picture, BROWSER_A) as job_id:
        refused = events.cancel(job_id, BROWSER_B)[events.page.status]
        assert NOT_YOURS in refused
        assert events.cancel(job_id, None)[events.page.status] == refused  # no secret at all is not a key either
        assert app.jobs.status(job_id).state in ("queued", "running")
        cancelled = events.cancel(job_id, BROWSER_A)  # queued: cancelled now; running: stops at the device
        assert NOT_YOURS not in cancelled[events.page.status]
        assert cancelled[events.page.cancel_button].interactive is False  # nothing left to cancel, or cancelling
    assert app.jobs.wait(job_id, timeout=JOB_TIMEOUT_S).state == "cancelled"


def test_restore_shows_another_browsers_job_but_hands_over_no_job_id(app, picture):
    events, _ = wired_outputs(app.blocks)
    page = events.page
    assert len(events.claim_owner(None)) >= 32 and events.claim_owner(BROWSER_A) == BROWSER_A  # made once, kept
    with held_job(app, picture, BROWSER_A) as job_id:
        watched = events.restore(job_id, BROWSER_B)  # B put A's id (from the history) in its storage
        assert watched[page.job_id] is None
        assert f'data-job="{job_id}"' in watched[page.status] and "another browser" in watched[page.status]
        assert watched[page.cancel_button].interactive is False  # greyed: this browser's Cancel has nothing to act on
        assert page.status not in events.cancel(watched[page.job_id], BROWSER_B)  # and a click changes nothing
        assert app.jobs.status(job_id).state in ("queued", "running")
        assert events.restore(job_id, BROWSER_A)[page.job_id] == job_id  # its own browser takes it up again


def test_promote_of_another_browsers_run_is_refused_and_submits_nothing(app, picture):
    events, _ = wired_outputs(app.blocks)
    page = events.page
    job_id = events.submit(*form(events, image=picture, **SMALL), BROWSER_A)[page.job_id]
    assert app.jobs.wait(job_id, timeout=JOB_TIMEOUT_S).state == "done"
    shown = events.poll(job_id, None)[page.shown]
    with pytest.raises(gr.Error, match="only that browser can promote it"):
        events.promote(shown, BROWSER_B, index=0)
    assert events.promote(shown, BROWSER_A, index=0)[page.seed] == shown["videos"][0]["seed"]
    assert app.jobs.active() == []  # Promote fills the next tier in; only Generate starts it


def test_with_shared_control_any_browser_steers_any_job(shared_app, picture):
    events, _ = wired_outputs(shared_app.blocks)
    with held_job(shared_app, picture, BROWSER_A) as job_id:
        assert events.restore(job_id, BROWSER_B)[events.page.job_id] == job_id
        assert NOT_YOURS not in events.cancel(job_id, BROWSER_B)[events.page.status]
    assert shared_app.jobs.wait(job_id, timeout=JOB_TIMEOUT_S).state == "cancelled"


def test_a_job_sent_through_the_api_belongs_to_the_calling_session(tmp_path_factory, picture):
    from gradio_client import Client, handle_file

    with running_app(tmp_path_factory.mktemp("api-owner-outputs")) as server:
        client = Client(server.url, verbose=False)
        try:
            *_, result = client.predict(handle_file(picture), SMALL["prompt"], steps=2, resolution=128, frames=4,
                                        preset="fast-check", api_name="/generate")
            session = client.session_hash
        finally:
            client.close()
        jobs = server.app.jobs
        assert jobs.store.get(result["job_id"]).owner is not None  # owned: no page may steer it
        assert not jobs.may_control(result["job_id"], BROWSER_A) and jobs.may_control(result["job_id"], session)


@pytest.fixture
def manager(tmp_path):
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path / "outputs"))
    yield jobs
    jobs.shutdown()


def test_the_job_manager_refuses_a_cancel_from_anyone_but_the_submitter(manager, photo_path):
    device = manager.prepare(tiny(photo_path)).plan.device
    with device_lock(device):
        job_id = manager.submit(tiny(photo_path), owner=BROWSER_A)
        waiting = manager.submit(tiny(photo_path), owner=BROWSER_A)
        assert not manager.cancel(waiting, BROWSER_B) and not manager.cancel(waiting)
        assert manager.status(waiting).state == "queued"
        assert not manager.may_control(job_id, BROWSER_B) and manager.may_control(job_id, BROWSER_A)
        assert manager.cancel(waiting, BROWSER_A) and manager.status(waiting).state == "cancelled"
        assert manager.cancel(job_id, BROWSER_A)
    assert manager.wait(job_id, timeout=JOB_TIMEOUT_S).state == "cancelled"
    stored = manager.store.get(job_id).owner
    assert stored and BROWSER_A not in stored  # a digest, never the secret


OLD_SCHEMA = """
CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT NOT NULL, created_at REAL NOT NULL, started_at REAL,
                   finished_at REAL, settings TEXT NOT NULL, image_path TEXT, result TEXT, error_kind TEXT,
                   error_message TEXT);
CREATE INDEX jobs_created ON jobs (created_at);
PRAGMA user_version = 1;
"""


def test_a_database_from_before_owners_opens_and_its_jobs_stay_listed_and_open_to_all(tmp_path, photo_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    with sqlite3.connect(outputs / "jobs.sqlite3") as db:
        db.executescript(OLD_SCHEMA)
        db.execute("INSERT INTO jobs (id, state, created_at, finished_at, settings, result) VALUES "
                   "('old00001', 'done', ?, ?, '{\"prompt\": \"waves\"}', '{\"videos\": []}')",
                   (time.time() - 60, time.time() - 30))
    db.close()
    jobs = JobManager(Engine(gpu_info=FixedGpuInfo.none(), output_dir=outputs), JobStore.in_folder(outputs))
    try:
        assert [s.id for s in jobs.history()] == ["old00001"]
        assert jobs.store.get("old00001").owner is None and jobs.may_control("old00001", BROWSER_B)
        new = jobs.submit(tiny(photo_path), owner=BROWSER_A)  # the old file takes new jobs, with their owner
        assert jobs.wait(new, timeout=JOB_TIMEOUT_S).state == "done"
        assert [s.id for s in jobs.history()] == [new, "old00001"]
        assert not jobs.may_control(new, BROWSER_B)
    finally:
        jobs.shutdown()


def test_the_same_form_sent_twice_at_once_by_one_browser_is_one_job(app, picture):
    """A double click on Generate: the second submit gets the first one's job. Another browser's identical form is
    its own job, and so is the same form sent again after a Cancel."""
    events, _ = wired_outputs(app.blocks)
    page = events.page
    with held_job(app, picture, BROWSER_A) as first:
        assert events.submit(*form(events, image=picture, **SMALL), BROWSER_A)[page.job_id] == first
        theirs = events.submit(*form(events, image=picture, **SMALL), BROWSER_B)[page.job_id]
        assert theirs != first
        events.cancel(first, BROWSER_A)
        after_cancel = events.submit(*form(events, image=picture, **SMALL), BROWSER_A)[page.job_id]
        assert after_cancel not in (first, theirs)
        for job_id, owner in ((theirs, BROWSER_B), (after_cancel, BROWSER_A)):
            app.jobs.cancel(job_id, owner)
    for job_id in (first, theirs, after_cancel):
        assert app.jobs.wait(job_id, timeout=JOB_TIMEOUT_S).state == "cancelled"

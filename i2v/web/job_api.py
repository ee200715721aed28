"""The JSON job API beside Gradio's (README "Job API"): what runs, what waits, what ended, each job's live preview,
its files, and cancel.

The routes read the same ``JobManager`` as the page and ``/generate``, so a job started anywhere is seen everywhere.
They sit on the FastAPI app inside the auth middleware (``server.py``): with ``--auth`` they need the password
like every route but ``/healthz``.

Cancel follows the page's rule (``JobManager.may_control``): only the job's submitter, unless the app runs with
shared control. The API caller proves it submitted a job by sending the submitter's secret in the
``X-I2V-Owner`` header: for a job sent with ``gradio_client`` that is the client's ``session_hash`` (the job
belongs to that Gradio session, ``ui.Studio.api_generate``); a page's secret never leaves its browser, so a page's
job is cancelled from that page (or by anyone with shared control).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from i2v.logs import job_context
from i2v.service.jobs import NOT_YOURS, JobManager, JobStatus

log = logging.getLogger(__name__)

OWNER_HEADER = "X-I2V-Owner"
RECENT_JOBS = 20  # finished jobs listed after the active ones
NO_STORE = {"Cache-Control": "no-store"}
# The files a finished job offers, by the key its result summary keeps them under.
RESULT_FILES = {"video": "path", "record": "sidecar", "poster": "poster"}
PATH_SETTINGS = ("last_image", "transformer_file")  # server paths: the API names the file only


def add_job_routes(api: FastAPI, jobs: JobManager) -> None:
    """``/api/jobs`` and ``/api/jobs/{id}[/preview|/cancel|/files/{name}]`` on ``api``."""

    @api.get("/api/jobs")
    def list_jobs(request: Request) -> JSONResponse:
        """Running first, then the queue in order, then the most recent finished jobs, newest first."""
        active = jobs.active()
        listed = {status.id for status in active}
        recent = [s for s in jobs.history(RECENT_JOBS + len(active)) if s.id not in listed and s.finished]
        owner = request.headers.get(OWNER_HEADER)
        return JSONResponse({"jobs": [job_summary(s, jobs, owner) for s in [*active, *recent[:RECENT_JOBS]]]},
                            headers=NO_STORE)

    @api.get("/api/jobs/{job_id}")
    def job_detail(job_id: str, request: Request) -> JSONResponse:
        status = jobs.status(job_id)
        if status is None:
            return unknown_job(job_id)
        return JSONResponse(job_details(status, jobs, request.headers.get(OWNER_HEADER)), headers=NO_STORE)

    @api.get("/api/jobs/{job_id}/preview")
    def job_preview(job_id: str, step: int | None = None) -> Response:
        """``?step=N`` (what the page asks): the answer may be cached while N is the newest step; without it, or
        once a newer preview exists, never."""
        if jobs.status(job_id) is None:
            return unknown_job(job_id)
        preview = jobs.latest_preview(job_id)
        if preview is None:
            return _error(404, "no_preview", f"Job {job_id} has no preview yet: the first comes after its first "
                                             "denoising steps (and none is kept for a job that ended long ago).")
        caching = {"Cache-Control": "private, max-age=600"} if step == preview.step else NO_STORE
        headers = {**caching, "X-Preview-Step": str(preview.step), "X-Preview-Candidate": str(preview.candidate),
                   "X-Preview-Total-Steps": str(preview.total_steps)}
        return Response(preview.data, media_type=preview.media_type, headers=headers)

    @api.get("/api/jobs/{job_id}/files/{name}")
    def job_file(job_id: str, name: str) -> Response:
        """A finished job's video, record or poster, by file name: only files its result lists are served."""
        status = jobs.status(job_id)
        if status is None:
            return unknown_job(job_id)
        path = _result_files(status).get(name)
        if path is None or not Path(path).is_file():
            return _error(404, "no_such_file", f"Job {job_id} has no file {name!r}; GET /api/jobs/{job_id} lists "
                                               "its files.")
        return FileResponse(path, headers={"X-Content-Type-Options": "nosniff"})

    @api.post("/api/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, request: Request) -> JSONResponse:
        status = jobs.status(job_id)
        if status is None:
            return unknown_job(job_id)
        if status.finished:
            return _error(409, "finished", f"Job {job_id} has already ended ({status.state}): nothing to cancel.")
        owner = request.headers.get(OWNER_HEADER)
        if not jobs.may_control(job_id, owner):
            return _error(403, "not_yours", f"{NOT_YOURS} Over the API, send the submitter's secret in the "
                                            f"{OWNER_HEADER} header (a gradio_client's session_hash).")
        cancelled = jobs.cancel(job_id, owner)
        with job_context(job_id):
            log.info("cancel over the job API: %s", "accepted" if cancelled else "too late, it had ended")
        status = jobs.status(job_id)
        return JSONResponse({"cancelled": cancelled, "job": job_details(status, jobs, owner)}, headers=NO_STORE)


def unknown_job(job_id: str) -> JSONResponse:
    return _error(404, "not_found", f"There is no job {job_id!r}. GET /api/jobs lists the jobs this app knows.")


def _error(status_code: int, error: str, message: str) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status_code=status_code, headers=NO_STORE)


def job_summary(status: JobStatus, jobs: JobManager, owner: str | None = None) -> dict[str, Any]:
    """One job as ``GET /api/jobs`` lists it (README "Job API" names every field)."""
    settings, progress = status.settings, status.progress or {}
    return {
        "id": status.id,
        "state": status.state,
        "position": 0 if status.state == "running" else status.position,
        "model": settings.get("model"),
        "prompt": settings.get("prompt", ""),
        "preset": settings.get("preset"),
        "stage": progress.get("stage"),
        "step": progress.get("step", 0) if progress.get("stage") == "denoise" else None,
        "steps": progress.get("total_steps") if progress.get("stage") == "denoise" else settings.get("steps"),
        "candidate": progress.get("candidate"),
        "candidates": progress.get("candidates") or settings.get("candidates"),
        "fraction": progress.get("fraction"),
        "elapsed_s": _elapsed(status),
        "eta_s": status.eta_s,
        "model_resident": status.model_resident,
        "cancel_requested": status.cancel_requested,
        "preview_step": progress.get("preview_step"),
        "created_at": status.created_at,
        "started_at": status.started_at,
        "finished_at": status.finished_at,
        "may_cancel": not status.finished and jobs.may_control(status.id, owner),
    }


def job_details(status: JobStatus, jobs: JobManager, owner: str | None = None) -> dict[str, Any]:
    """``job_summary`` plus what the job's result says: notices, warnings, files, its error."""
    result = status.result or {}
    base = f"/api/jobs/{status.id}/files/"
    files = [{"seed": video.get("seed"),
              **{kind: base + Path(video[key]).name for kind, key in RESULT_FILES.items() if video.get(key)}}
             for video in result.get("videos", [])]
    return {
        **job_summary(status, jobs, owner),
        "preview_url": f"/api/jobs/{status.id}/preview",
        "settings": {k: Path(v).name if k in PATH_SETTINGS and v else v for k, v in status.settings.items()},
        "params": result.get("params"),
        "notices": result.get("notices", []),
        "warnings": result.get("warnings", []),
        "model_warnings": result.get("model_warnings", []),
        "files": files,
        "error": {"kind": status.error_kind, "message": status.error_message} if status.error_message else None,
    }


def _elapsed(status: JobStatus) -> float | None:
    if status.started_at is None:
        return None
    return round((status.finished_at or time.time()) - status.started_at, 1)


def _result_files(status: JobStatus) -> dict[str, str]:
    """File name -> path, for the files the job's result lists."""
    videos = (status.result or {}).get("videos", []) if status.state == "done" else []
    return {Path(video[key]).name: video[key] for video in videos for key in RESULT_FILES.values() if video.get(key)}

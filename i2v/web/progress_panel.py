"""The panel under Generate: what the job is doing, a progress bar, the time left and the live preview, and the
state of the Cancel button. Pure functions from a ``JobStatus`` (no Gradio state); ``static/progress.js`` reads the
``data-*`` attributes for the tab's title and the notification at the end.

Time left is said only when there is an estimate (``service.eta``): "estimating…" before, "finishing…" when a job
runs past it, never "about 0 s left". "Loading the model" is said only when the model was not in memory.
"""
from __future__ import annotations

import html

import gradio as gr

from i2v.service.jobs import JobStatus

STAGE_WORDS = {"decode": "decoding frames", "encode": "writing the video", "done": "finishing"}


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def status_html(status: JobStatus | None, *, error: str | None = None) -> str:
    if error is not None:
        return f'<div class="job job-error" data-state="refused" role="alert"><strong>✖</strong> {esc(error)}</div>'
    if status is None:
        return '<div class="job" data-state="idle">No job yet: upload an image, describe the motion, Generate.</div>'
    head = f'<div class="job job-{status.state}" data-state="{status.state}" data-job="{esc(status.id)}"'
    if status.state == "queued":
        ahead = status.position or 0
        body = (f"<strong>Waiting in the queue</strong>: {ahead} job{'s' if ahead != 1 else ''} ahead "
                f"(position {ahead + 1}). It keeps its place if you close this tab.")
        return f"{head}>{body}</div>"
    if status.state == "running":
        percent = round(100 * (status.progress or {}).get("fraction", 0.0))
        cancelling = ' data-cancelling="true"' if status.cancel_requested else ""
        return (f'{head} data-percent="{percent}"{cancelling}>{_running_label(status)}{_bar(percent)}'
                f"{_preview(status)}</div>")
    took = (status.finished_at or 0) - (status.started_at or status.finished_at or 0)
    if status.state == "done":
        videos = (status.result or {}).get("videos", [])
        return (f'{head} data-took-s="{round(took)}"><strong>✔ Done</strong>: {len(videos)} '
                f"video{'s' if len(videos) != 1 else ''} in {duration(took)}.</div>")
    if status.state == "cancelled":
        return f"{head}><strong>Cancelled.</strong> Nothing was saved from this job.</div>"
    if status.state == "interrupted":
        return f"{head}><strong>Interrupted</strong>: {esc(status.error_message or '')}</div>"
    return (f'{head} data-took-s="{round(took)}"><span role="alert"><strong>✖ Failed</strong>: '
            f'{esc(status.error_message or "unknown error")}</span> The app is ready for the next job.</div>')


def _running_label(status: JobStatus) -> str:
    progress = status.progress
    if status.cancel_requested:
        return ('<div class="progress-label"><strong>Cancelling…</strong> the job stops at its next step; nothing '
                "is saved.</div>")
    if progress is None:
        return '<div class="progress-label"><strong>Starting…</strong> · estimating time left…</div>'
    stage = progress["stage"]
    candidate = f"video {progress['candidate']} of {progress['candidates']}, " if progress["candidates"] > 1 else ""
    if stage == "load" and status.model_resident:
        what = "preparing (the model is already in memory)"
    elif stage == "load":
        what = "loading the model (the first job after start takes longest)"
    elif stage == "denoise":
        what = f"{candidate}step {progress['step']} of {progress['total_steps']}"
    else:
        what = f"{candidate}{STAGE_WORDS.get(stage, stage)}"
    return (f'<div class="progress-label"><strong>Generating</strong>: {esc(what)} · '
            f"{duration(progress['elapsed_s'])} elapsed · {_time_left(status, loading=stage == 'load')}</div>")


def _time_left(status: JobStatus, *, loading: bool) -> str:
    if status.eta_s is None:
        return '<span data-eta="estimating">estimating time left…</span>'
    if status.eta_s < 1:
        return '<span data-eta="finishing">finishing…</span>'
    if loading and not status.model_resident:
        # The load's own length is unknown: the estimate is what comes after it.
        return f'<span data-eta="{round(status.eta_s)}">then about {duration(status.eta_s)}</span>'
    return f'<span data-eta="{round(status.eta_s)}">about {duration(status.eta_s)} left</span>'


def _bar(percent: int) -> str:
    return (f'<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" '
            f'aria-valuenow="{percent}"><div class="progress-fill" style="width:{percent}%"></div></div>')


def _preview(status: JobStatus) -> str:
    """The newest live preview, fetched from the job API (same origin, so the browser sends the login too). The
    step in its address makes a new preview a new image and the same one a cached one."""
    progress = status.progress or {}
    step = progress.get("preview_step")
    if step is None:
        return ('<div class="live-preview live-preview-waiting">The preview appears after the first denoising '
                "steps.</div>")
    candidate = progress.get("candidate", 1)
    return (f'<img class="live-preview" id="live-preview" data-step="{step}" alt="Live preview at step {step}" '
            f'src="api/jobs/{esc(status.id)}/preview?candidate={candidate}&amp;step={step}">')


def cancel_button(status: JobStatus | None, *, owned: bool = True) -> gr.Button:
    """Cancel is clickable only while this page's own job waits or runs, and says so once it was asked."""
    if status is not None and status.cancel_requested:
        return gr.Button("Cancelling…", interactive=False)
    active = status is not None and not status.finished
    return gr.Button("Cancel", interactive=active and owned)

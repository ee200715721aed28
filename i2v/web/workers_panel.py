"""The workers panel: where jobs run. One row per worker with its node, GPU, PID, resident model (and the GPU
memory its process holds for it), state, job and restarts (``JobManager.workers()``, the data of
``GET /api/workers``), refreshed every ``POLL_SECONDS``. On a box without worker processes the app's own process runs
the jobs, and the panel says so in one line instead of a table of one row. On a phone each worker is a small card
of labelled lines (studio.css), as the history's runs are.
"""
from __future__ import annotations

import os
import socket

import gradio as gr

from i2v.service.jobs import JobManager
from i2v.web.progress_panel import esc
from i2v.workers.outcome import WorkerInfo

POLL_SECONDS = 3.0  # workers change state per job, not per step; the queue panel shows the steps
COLUMNS = ("worker", "node", "GPU", "PID", "model in memory", "state", "job", "restarts")
STATE_WORDS = {"starting": "starting (importing the libraries)", "idle": "idle", "busy": "busy",
               "restarting": "restarting", "stopped": "stopped"}


class WorkersPanel:
    """Built inside ``gr.Blocks`` where the panel should appear; ``wire`` connects it once the page exists."""

    def __init__(self):
        self.jobs: JobManager | None = None  # given by ``wire``: the page's layout is built before its services
        with gr.Accordion("Workers: where jobs run", open=True, elem_id="workers"):
            self.html = gr.HTML(workers_html([]), elem_id="workers-panel")
        self.timer = gr.Timer(POLL_SECONDS, active=True)

    def wire(self, demo: gr.Blocks, jobs: JobManager, events: dict) -> None:
        """``events``: the page's settings for quick events."""
        self.jobs = jobs
        self.timer.tick(self.refresh, None, self.html, **events)
        demo.load(self.refresh, None, self.html, **events)

    def refresh(self) -> str:
        return workers_html(self.jobs.workers())


def workers_html(workers: list[WorkerInfo], *, app: tuple[str, int] | None = None) -> str:
    """``app``: (host name, PID) of the app's process (this one unless given), to tell the in-process worker."""
    here = app or (socket.gethostname(), os.getpid())
    if not workers:
        return '<div class="workers-none" data-workers="0">No worker is set up: jobs cannot run.</div>'
    if len(workers) == 1 and (workers[0].node, workers[0].pid) == here:
        return _in_app_line(workers[0])
    rows = "".join(_row(info) for info in workers)
    head = "".join(f"<th>{name}</th>" for name in COLUMNS)
    busy = sum(info.state == "busy" for info in workers)
    return (f'<div class="workers-summary">{len(workers)} workers, {busy} busy: each runs one job at a time.</div>'
            f'<table class="workers" data-workers="{len(workers)}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table>")


def _in_app_line(info: WorkerInfo) -> str:
    """The app's own process runs the jobs (no GPU, or ``--gpus none``): there is one of it and it is never
    restarted, so a line says all a table would."""
    where = "the CPU" if info.gpu == "cpu" else _gpu(info.gpu)
    model = f"{esc(_model(info))} in memory" if info.resident_model else "no model loaded yet"
    doing = esc(_state(info.state)) + (f" with job {esc(info.job)}" if info.job else "")
    return (f'<div class="workers-one" data-workers="1" data-worker="{esc(info.name)}" data-state="{esc(info.state)}"'
            f' data-job="{esc(info.job or "")}">Jobs run in the app\'s process (PID {info.pid}, host {esc(info.node)},'
            f' on {where}), one at a time: <span class="worker-state">{doing}</span> · {model}.</div>')


def _row(info: WorkerInfo) -> str:
    cells = (info.name, info.node, _gpu(info.gpu), "–" if info.pid is None else info.pid,
             _model(info), _state(info.state), info.job or "–", info.restarts)
    tds = "".join(f'<td data-label="{label}">{esc(value)}</td>' for label, value in zip(COLUMNS, cells))
    return (f'<tr data-worker="{esc(info.name)}" data-state="{esc(info.state)}" data-job="{esc(info.job or "")}"'
            f' data-restarts="{info.restarts}">{tds}</tr>')


def _model(info: WorkerInfo) -> str:
    """The resident model and the GPU memory its process holds for it (reused by its next job), when on a GPU."""
    if not info.resident_model:
        return "none yet"
    held = f" ({info.held_bytes / 2**30:.1f} GiB)" if info.held_bytes > 0 else ""
    return info.resident_model + held


def _gpu(gpu: str) -> str:
    return "CPU" if gpu == "cpu" else f"GPU {gpu}"


def _state(state: str) -> str:
    return STATE_WORDS.get(state, state)

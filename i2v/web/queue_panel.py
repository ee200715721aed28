"""The queue panel: every waiting and running job, from every tab and every API client, with its position, model
and prompt, and a Cancel for each (greyed for a job this browser did not start: ``JobManager.may_control``).

It refreshes itself every ``POLL_SECONDS`` whether or not this tab has a job of its own. A row's Cancel is a plain
button inside the HTML; the panel's ``js_on_load`` turns its click into the panel's Gradio ``click`` event with the
job id, so the cancel runs on the server with this browser's secret, as the main Cancel does.
"""
from __future__ import annotations

import gradio as gr

from i2v.service.jobs import NOT_YOURS, JobManager, JobStatus
from i2v.web.progress_panel import duration, esc

POLL_SECONDS = 2.0
PROMPT_CHARS = 80
# Event delegation on the panel's root (its HTML is replaced at every refresh, the root stays).
CANCEL_CLICKS = """
element.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-cancel-job]');
  if (!button || button.disabled) return;
  button.disabled = true;
  button.textContent = 'cancelling…';
  trigger('click', {job_id: button.dataset.cancelJob});
});
"""


class QueuePanel:
    """Built inside ``gr.Blocks`` where the panel should appear; ``wire`` connects it once the page exists."""

    def __init__(self):
        self.jobs: JobManager | None = None  # given by ``wire``: the page's layout is built before its services
        with gr.Accordion("Queue: every job waiting or running on this app", open=True, elem_id="queue"):
            self.html = gr.HTML(queue_html([], {}), elem_id="queue-panel", js_on_load=CANCEL_CLICKS)
        self.timer = gr.Timer(POLL_SECONDS, active=True)

    def wire(self, demo: gr.Blocks, jobs: JobManager, owner_token, events: dict) -> None:
        """``owner_token``: the page's ``BrowserState`` with this browser's secret; ``events``: the page's settings
        for quick events."""
        self.jobs = jobs
        self.timer.tick(self.refresh, owner_token, self.html, **events)
        demo.load(self.refresh, owner_token, self.html, **events)
        self.html.click(self.cancel, owner_token, self.html, **events)

    def refresh(self, owner: str | None) -> str:
        active = self.jobs.active()
        return queue_html(active, {s.id: self.jobs.may_control(s.id, owner) for s in active})

    def cancel(self, owner: str | None, event: gr.EventData) -> str:
        job_id = str(getattr(event, "job_id", "") or "")
        note = ""
        if not job_id or self.jobs.status(job_id) is None:
            note = "That job is no longer in the queue."
        elif not self.jobs.may_control(job_id, owner):
            note = NOT_YOURS
        elif not self.jobs.cancel(job_id, owner):  # it ended meanwhile (JobManager.cancel logs under the job id)
            note = "That job had already ended."
        return self.refresh(owner) + (f'<div class="findings warning" role="alert">{esc(note)}</div>' if note else "")


def queue_html(active: list[JobStatus], yours: dict[str, bool]) -> str:
    if not active:
        return '<div class="queue-empty" data-jobs="0">Nothing is waiting or running.</div>'
    rows = "".join(_row(status, yours.get(status.id, False)) for status in active)
    return (f'<table class="queue" data-jobs="{len(active)}"><thead><tr><th>#</th><th>state</th><th>model</th>'
            f"<th>prompt</th><th></th></tr></thead><tbody>{rows}</tbody></table>")


def _row(status: JobStatus, yours: bool) -> str:
    settings = status.settings
    prompt = settings.get("prompt", "")
    prompt = prompt if len(prompt) <= PROMPT_CHARS else prompt[:PROMPT_CHARS - 1] + "…"
    position = 0 if status.state == "running" else (status.position or 0)
    state = _state_words(status)
    title = "" if yours else ' title="Started in another browser or by a script: only its submitter can cancel it."'
    disabled = "" if yours and not status.cancel_requested else " disabled"
    label = "cancelling…" if status.cancel_requested else "Cancel"
    return (f'<tr data-job="{esc(status.id)}" data-state="{status.state}" data-yours="{str(yours).lower()}">'
            f"<td>{'▶' if position == 0 and status.state == 'running' else position}</td><td>{esc(state)}</td>"
            f"<td>{esc(settings.get('model') or '')}</td><td>{esc(prompt)}</td>"
            f'<td><button class="queue-cancel" data-cancel-job="{esc(status.id)}"{disabled}{title}>{label}</button>'
            "</td></tr>")


def _state_words(status: JobStatus) -> str:
    if status.state != "running":
        return "waiting"
    progress = status.progress or {}
    if progress.get("stage") == "denoise":
        left = f", about {duration(status.eta_s)} left" if status.eta_s and status.eta_s >= 1 else ""
        return f"running: step {progress['step']} of {progress['total_steps']}{left}"
    return f"running: {progress.get('stage') or 'starting'}"

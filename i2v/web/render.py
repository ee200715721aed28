"""HTML and Markdown for the page, from engine objects. Pure functions: no Gradio, no state.

Every block carries ``data-*`` attributes (state, verdict, level) so the browser tests read meaning, not styling.
"""
from __future__ import annotations

import html
import re
import time
from collections.abc import Iterable
from pathlib import PurePosixPath

from i2v.backends import BUILT_IN_MODELS
from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.service.jobs import JobStatus
from i2v.planning.planner import InsufficientMemoryError
from i2v.engine.resolve import PreparedJob
# The job's progress is drawn by the panel under Generate; re-exported for the callers that name it here.
from i2v.web.progress_panel import duration, status_html  # noqa: F401

GIB = 1024**3


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def markdown_text(text: object) -> str:
    """``text`` shown as itself in Markdown: a file name such as ``![x](http://…).safetensors`` stays text."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>&~])", r"\\\1", str(text))


def lora_summary(params: dict) -> str:
    """``style.safetensors ×0.5, detail.safetensors ×1`` for the run's LoRAs (file names: the caption is short), or
    "" without any."""
    return ", ".join(f"{PurePosixPath(str(lora.get('source', ''))).name} ×{lora.get('strength', 1):g}"
                     for lora in params.get("loras") or ())


def findings_markdown(findings: Iterable[Finding], *, icon: str) -> str:
    lines = []
    for finding in findings:
        hint = f" — {finding.hint}" if finding.hint else ""
        lines.append(f"- {icon} {finding.message}{hint}")
    return "\n".join(lines)


def findings_html(findings: Iterable[Finding | dict], *, kind: str) -> str:
    items = []
    for finding in findings:
        data = finding.to_dict() if isinstance(finding, Finding) else finding
        hint = f' <span class="hint">{esc(data["hint"])}</span>' if data.get("hint") else ""
        items.append(f'<li data-code="{esc(data["code"])}">{esc(data["message"])}{hint}</li>')
    if not items:
        return ""
    title = {"notice": "What the app changed", "warning": "Warnings", "model": "Model warnings"}[kind]
    return f'<div class="findings findings-{kind}"><strong>{title}</strong><ul>{"".join(items)}</ul></div>'


# -- the planner's verdict before Generate ---------------------------------------------------------------------
def verdict_html(job: PreparedJob | None, error: BadInputError | None = None, *, assumed_square: bool = False,
                 expected_s: float | None = None, custom: Iterable[str] = ()) -> str:
    """``assumed_square``: no picture yet, so nothing about framing it; ``custom``: the numbers set apart from the
    preset (``forms.preset_differences``)."""
    if error is not None:
        verdict = "cannot" if isinstance(error, InsufficientMemoryError) else "invalid"
        title = "Cannot fit on this GPU" if verdict == "cannot" else "Cannot run these settings"
        return _verdict(verdict, "✖", title, esc(error))
    assert job is not None
    params, plan = job.params, job.plan
    shape = f"{params.width}×{params.height}, {params.frames} frames, {params.steps} steps, {plan.dtype}"
    # Without a picture, the square stand-in's framing would describe a picture nobody chose.
    notes = [n for n in job.notices if n.code.startswith(("plan.", "frames.", "size."))
             and not (assumed_square and n.code.startswith("size.aspect"))]
    details = "".join(f"<li>{esc(n)}</li>" for n in notes)
    extra = f"<ul>{details}</ul>" if details else ""
    if params.resolution and (params.width, params.height) != (params.resolution, params.resolution):
        picture = "a square picture" if assumed_square else "this picture"
        extra += (f"<p data-code='size.tier'>{params.resolution}p is about {params.resolution}² pixels at the "
                  f"picture's shape: {params.width}×{params.height} for {picture}.</p>")
    custom = list(custom)
    if custom:
        extra += f"<p class='custom' data-custom='true'>Custom: {esc(', '.join(custom))}.</p>"
    if expected_s is not None:
        extra += f"<p>Expected: about {duration(expected_s)} of denoising (learned from earlier jobs here).</p>"
    if assumed_square:
        extra += "<p class='hint'>No image yet: a square picture is assumed.</p>"
    if plan.device == "cpu":
        return _verdict("cpu", "ℹ", f"Runs on the CPU: {esc(shape)}", extra)
    estimate = job.decision.estimate if job.decision else None
    peak = f"predicted peak {estimate.peak_bytes / GIB:.1f} GiB" if estimate else "no memory prediction for this model"
    if any(n.code == "plan.downgraded" for n in job.notices):
        return _verdict("downgrade", "⚠", f"Will be downgraded to {esc(shape)} ({peak})", extra)
    return _verdict("fits", "✔", f"Fits on {esc(plan.device)}: {esc(shape)} ({peak})", extra)


def _verdict(kind: str, icon: str, title: str, body: str) -> str:
    return (f'<div class="verdict verdict-{kind}" data-verdict="{kind}"><strong>{icon} {title}</strong>'
            f"{body}</div>")


# -- a job's outcome ------------------------------------------------------------------------------------------
def job_findings_html(status: JobStatus) -> str:
    """The box beside a job's videos: what the app changed, warnings, and what the model's loader reported."""
    result = status.result or {}
    return (findings_html(result.get("notices", []), kind="notice")
            + findings_html(result.get("warnings", []), kind="warning")
            + findings_html(result.get("model_warnings", []), kind="model"))


def video_caption(video: dict, params: dict) -> str:
    random_note = " · random weights: noise" if params.get("model") in BUILT_IN_MODELS else ""
    loras = lora_summary(params)
    lora_note = f" · LoRA {markdown_text(loras)}" if loras else ""
    return (f"**Seed {video['seed']}** · {params.get('model')} · {params.get('width')}×{params.get('height')}, "
            f"{params.get('frames')} frames, "
            f"{params.get('steps')} steps, guidance {params.get('guidance')}, {params.get('fps')} fps{lora_note}"
            f"{random_note}")


# -- history ---------------------------------------------------------------------------------------------------
def history_caption(status: JobStatus) -> str:
    settings = status.settings
    prompt = settings.get("prompt", "")
    prompt = prompt if len(prompt) <= 60 else prompt[:57] + "…"
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(status.created_at))
    return f"{prompt} — {settings.get('model') or ''} {settings.get('preset') or 'custom'}, {when}"


def history_detail(status: JobStatus) -> str:
    """HTML under the gallery for the past run the user selected. The prompt is text, whoever wrote it: rendered as
    Markdown, ``![x](http://…)`` in someone's prompt would load from outside for everyone who opens the run."""
    params = status.result.get("params", {})
    seeds = ", ".join(str(v["seed"]) for v in status.result["videos"])
    return (f"<b>{esc(status.settings.get('prompt', ''))}</b> — {esc(params.get('model'))}, "
            f"{esc(params.get('preset') or 'custom')}, {esc(params.get('width'))}×{esc(params.get('height'))}, "
            f"{esc(params.get('frames'))} frames, {esc(params.get('steps'))} steps, guidance "
            f"{esc(params.get('guidance'))}, {esc(params.get('fps'))} fps, seeds {esc(seeds)}"
            + (f", LoRA {esc(lora_summary(params))}" if params.get("loras") else ""))


def history_table(statuses: list[JobStatus]) -> str:
    if not statuses:
        return '<div class="history-empty">No runs yet. Finished jobs appear here and stay after a restart.</div>'
    rows = []
    for status in statuses:
        params = (status.result or {}).get("params") or status.settings
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status.created_at))
        size = f"{params.get('width')}×{params.get('height')}" if params.get("width") else f"{params.get('resolution')}p"
        note = esc(status.error_message or "") if status.state in ("failed", "interrupted") else ""
        rows.append(
            f'<tr data-job="{esc(status.id)}" data-state="{status.state}"><td data-label="time">{when}</td>'
            f'<td data-label="state">{status.state}</td>'
            f"<td data-label=\"prompt\">{esc(status.settings.get('prompt', ''))}</td>"
            f"<td data-label=\"preset\">{esc(params.get('preset') or 'custom')}</td>"
            f'<td data-label="parameters">{size}, {params.get("frames")} f, {params.get("steps")} st, '
            f'cfg {params.get("guidance")}</td><td data-label="note">{note}</td></tr>'
        )
    return ('<table class="history"><thead><tr><th>time</th><th>state</th><th>prompt</th><th>preset</th>'
            f'<th>parameters</th><th>note</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')

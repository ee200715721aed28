"""Time left and the words under Generate (issue 18, item 5: "the first job's ETA was 4.7× too low", "'loading the
model' shows even when the model is resident", "step 1 of 30 · about 0 s left"). The ETA is fed the engine's own
progress events with the times they would arrive at; the panel is drawn from job statuses as the page gets them."""
from __future__ import annotations

import re

from i2v.engine.progress import ProgressEvent
from i2v.service.eta import FINISH_ALLOWANCE_STEPS, Eta
from i2v.service.jobs import JobStatus
from i2v.web.progress_panel import cancel_button, status_html

STEPS = 30


def event(stage: str, step: int = 0, total: int = STEPS, candidate: int = 1, candidates: int = 1,
          elapsed: float = 0.0) -> ProgressEvent:
    return ProgressEvent("job", stage, candidate, candidates, step, total, elapsed)


def run_first_job(eta: Eta, *, load_s: float, warm_up_s: float, step_s: float, until_step: int) -> float:
    """A first job as the engine reports it: a load, then each step when it has finished (the first one slow).
    Returns the time of the last report."""
    eta.observe(event("load"), 0.0)
    now = load_s + warm_up_s
    eta.observe(event("denoise", 1, elapsed=now), now)
    for step in range(2, until_step + 1):
        now += step_s
        eta.observe(event("denoise", step, elapsed=now), now)
    return now


def test_no_estimate_before_two_steps_without_earlier_jobs_and_never_zero_at_step_one():
    eta = Eta()
    eta.observe(event("load"), 0.0)
    assert eta.remaining(0.5) is None
    eta.observe(event("denoise", 1), 20.0)  # the first report: load and warm-up are behind it, no pace yet
    assert eta.remaining(20.0) is None


def test_the_pace_leaves_out_the_first_steps_warm_up_and_counts_the_decode():
    eta = Eta()
    now = run_first_job(eta, load_s=30.0, warm_up_s=8.0, step_s=2.0, until_step=3)
    expected = 2.0 * (STEPS - 3) + FINISH_ALLOWANCE_STEPS * 2.0
    assert eta.remaining(now) == expected
    # What actually remains (27 steps of 2 s, then the decode) is close: not the old "about 0 s", not 4.7× off.
    assert 0.9 < eta.remaining(now) / (2.0 * (STEPS - 3)) < 1.2


def test_earlier_jobs_give_an_estimate_from_the_start_and_it_counts_down_between_reports():
    eta = Eta(prior_step_s=1.5)
    eta.observe(event("load"), 0.0)
    first = eta.remaining(0.0)
    assert first == 1.5 * STEPS + FINISH_ALLOWANCE_STEPS * 1.5
    assert eta.remaining(10.0) == first - 10.0
    assert eta.remaining(10_000.0) == 0.0  # late on its estimate: finishing, never negative


def test_later_candidates_use_the_measured_decode_of_the_first():
    eta = Eta()
    now = run_first_job(eta, load_s=0.0, warm_up_s=2.0, step_s=1.0, until_step=STEPS)
    eta.observe(event("decode", 0, 1, candidates=2), now)
    now += 7.0  # decode, the file, then the second candidate's first step
    eta.observe(event("denoise", 1, candidate=2, candidates=2), now)
    measured_finish = 7.0 - 1.0
    assert eta.remaining(now) == (STEPS - 1) * 1.0 + measured_finish


def status(state="running", *, stage="denoise", step=1, eta_s=None, resident=None, preview_step=None,
           cancelling=False) -> JobStatus:
    progress = {"stage": stage, "candidate": 1, "candidates": 1, "step": step, "total_steps": STEPS,
                "elapsed_s": 12.0, "fraction": step / STEPS if stage == "denoise" else 0.0,
                "preview_step": preview_step}
    return JobStatus(id="abc123", state=state, settings={"prompt": "p", "model": "tiny"}, created_at=0.0,
                     progress=progress if state == "running" else None, eta_s=eta_s, model_resident=resident,
                     cancel_requested=cancelling)


def text(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup)


def test_step_one_says_estimating_never_about_0_s_left():
    shown = text(status_html(status(step=1, eta_s=None)))
    assert "step 1 of 30" in shown and "estimating time left" in shown and "0 s left" not in shown
    assert "0 s left" not in text(status_html(status(step=29, eta_s=0.3)))  # past its estimate: finishing
    assert "finishing" in text(status_html(status(step=29, eta_s=0.3)))
    assert "about 42 s left" in text(status_html(status(step=5, eta_s=42.0)))


def test_loading_the_model_is_said_only_when_it_is_not_in_memory():
    assert "loading the model" in text(status_html(status(stage="load", step=0, resident=False)))
    resident = text(status_html(status(stage="load", step=0, resident=True)))
    assert "loading the model" not in resident and "already in memory" in resident
    assert "then about 50 s" in text(status_html(status(stage="load", step=0, resident=False, eta_s=50.0)))


def test_the_panel_carries_the_percent_for_the_title_and_the_preview_once_there_is_one():
    waiting = status_html(status(step=3))
    assert 'data-percent="10"' in waiting and "<img" not in waiting and "preview appears" in text(waiting)
    shown = status_html(status(step=6, preview_step=5))
    assert 'src="api/jobs/abc123/preview?candidate=1&amp;step=5"' in shown


def test_cancel_is_clickable_only_while_the_pages_job_is_active_and_says_cancelling():
    assert cancel_button(None).interactive is False
    assert cancel_button(status()).interactive is True
    assert cancel_button(status(), owned=False).interactive is False
    assert cancel_button(status(state="done")).interactive is False
    asked = cancel_button(status(cancelling=True))
    assert asked.interactive is False and asked.value == "Cancelling…"
    assert "Cancelling…" in text(status_html(status(cancelling=True)))

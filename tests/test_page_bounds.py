"""What one visitor can make the page do to the server and to other visitors (red-team items): the page's events
that decode the picture run a few at a time and decode each upload once, and a prompt is shown as text, never
rendered as Markdown (an image in someone's prompt would load from outside for whoever opens the run)."""
from __future__ import annotations

import gradio as gr

from i2v.guidance import images
from i2v.service.jobs import JobStatus
from i2v.web import render
from i2v.web.events import PICTURE_CONCURRENCY, PageEvents

from test_page_events import app, form, picture, wired_outputs  # noqa: F401 - the fixtures are used by name

HOSTILE_PROMPT = '![t](http://127.0.0.1:9/leak.png) <script>alert("x")</script> waves **crashing**'


def picture_events(blocks: gr.Blocks) -> list:
    return [fn for fn in blocks.fns.values()
            if getattr(getattr(fn.fn, "func", fn.fn), "__name__", "") in ("check_settings_newest", "submit")
            and isinstance(getattr(getattr(fn.fn, "func", fn.fn), "__self__", None), PageEvents)]


def test_page_events_that_decode_the_picture_share_one_small_bound(app):
    events = picture_events(app.blocks)
    assert len(events) >= 5  # every control change, model change, load, page load, generate, promote
    assert {(fn.concurrency_limit, fn.concurrency_id) for fn in events} == {(PICTURE_CONCURRENCY, "picture")}
    assert PICTURE_CONCURRENCY <= 2


def test_the_same_upload_is_decoded_once_while_the_user_changes_controls(app, picture, monkeypatch):
    events, _ = wired_outputs(app.blocks)
    decoded = []
    real = images._load_from_stream
    monkeypatch.setattr(images, "_load_from_stream", lambda *a, **k: decoded.append(1) or real(*a, **k))
    for steps in (2, 3, 4):
        events.check_settings(*form(events, image=picture, prompt="a red ball rolling slowly", steps=steps))
    assert len(decoded) == 1


def test_a_changed_file_at_the_same_path_is_decoded_again(tmp_path, monkeypatch):
    from conftest import photo_like

    path = tmp_path / "input.png"
    photo_like(64, 48).save(path)
    cache = images.DecodedImages()
    first = cache.load(path)
    photo_like(80, 48, seed=1).save(path)
    assert cache.load(path).image.size == (80, 48) != first.image.size


def test_a_prompt_in_the_run_details_is_text_not_markdown(app):
    status = JobStatus(id="abc123", state="done", settings={"prompt": HOSTILE_PROMPT}, created_at=0.0,
                       result={"params": {"model": "tiny", "width": 128, "height": 128, "frames": 4, "steps": 2,
                                          "guidance": 9.0, "fps": 8}, "videos": [{"seed": 7}]})
    detail = render.history_detail(status)
    assert "<img" not in detail and "<script" not in detail and "<strong>" not in detail
    assert "![t](http://127.0.0.1:9/leak.png)" in detail and "&lt;script&gt;" in detail
    events, _ = wired_outputs(app.blocks)
    assert isinstance(events.page.history_detail, gr.HTML)  # HTML we escaped, not Markdown Gradio renders

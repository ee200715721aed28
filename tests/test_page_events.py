"""The page's handlers answer with ``{component: value}``, and Gradio refuses a key that is not among the outputs of
the event that called the handler — but only when that branch runs, in a browser. Here every handler of the real
app (tiny model) runs through its branches, and its answer's keys are checked against each event it is wired to."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import fields
from pathlib import Path

import gradio as gr
import pytest
from gradio.blocks import Block

from i2v.settings import load_settings
from i2v.web.events import PageEvents
from i2v.web.forms import FormValues
from i2v.web.server import create_app

from conftest import photo_like
from test_requeue import crashed_job

JOB_TIMEOUT_S = 120
OWNER = "secret-of-this-browser"  # page.owner_token: what the page sends with submit, cancel, restore, promote
SMALL = {"prompt": "a red ball rolling slowly to the left", "preset": "fast-check", "resolution": 128, "frames": 4,
         "steps": 2}


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("events-input") / "input.png"
    photo_like(320, 256).save(path)
    return str(path)


@pytest.fixture(scope="module")
def app(tmp_path_factory, picture):
    outputs = tmp_path_factory.mktemp("events-outputs")
    crashed_job(outputs, Path(picture))  # so the re-queue button has a job to bring back
    app = create_app(load_settings(["--model", "tiny", "--output-dir", str(outputs)], environ={}))
    yield app
    app.close()


def wired_outputs(blocks: gr.Blocks) -> tuple[PageEvents, dict[str, list[set[int]]]]:
    """The page's handlers, and for each handler name the outputs (block ids) of every event that calls it."""
    wired, events = defaultdict(list), None
    for block_fn in blocks.fns.values():
        handler = getattr(block_fn.fn, "func", block_fn.fn)  # the slots' buttons call a functools.partial
        if isinstance(getattr(handler, "__self__", None), PageEvents):
            events = handler.__self__
            wired[handler.__name__].append({block._id for block in block_fn.outputs})
    return events, wired


def form(events: PageEvents, **changes) -> list:
    """The controls' values as the page loads them, with ``changes`` (by ``FormValues`` name) typed in."""
    loaded = {field.name: getattr(events.page, field.name).value for field in fields(FormValues)}
    return list({**loaded, **changes}.values())


def test_every_handler_answers_only_for_the_outputs_of_its_events(app, picture):
    events, wired = wired_outputs(app.blocks)
    answers = defaultdict(list)

    def call(name: str, *args):
        answer = getattr(events, name)(*args)
        answers[name].append(answer)
        return answer

    jobs, page = app.jobs, events.page
    call("fill_preset", "fast-check", "tiny")
    call("choose_framing", "pad")
    call("choose_framing", "crop")
    call("choose_model", "tiny", "no-such-preset")
    call("choose_model", "tiny-wan", "fast-check")  # a model that takes LoRAs: the picker shows
    call("follow_lora_choice", ["style.safetensors"], 0.5, 1.0, 1.0, 1.0, [])
    call("follow_lora_choice", [], 0.5, 1.0, 1.0, 1.0, ["style.safetensors"])
    call("check_settings_newest", None, *form(events))  # no image yet: a square is assumed
    call("check_settings_newest", None, *form(events, image=picture, **SMALL))
    call("check_settings_newest", None, *form(events, image=picture, frames="many"))  # refused
    call("submit", *form(events, **SMALL), OWNER)  # refused: no image
    job_id = call("submit", *form(events, image=picture, **SMALL), OWNER)[page.job_id]
    call("poll", job_id, None)  # most likely still running; either branch is checked
    assert jobs.wait(job_id, timeout=JOB_TIMEOUT_S).state == "done"
    shown = call("poll", job_id, None)[page.shown]
    assert shown and shown["id"] == job_id
    call("poll", None, None)
    call("restore", None, OWNER)
    call("restore", job_id, OWNER)
    call("restore", job_id, "another browser")  # shown, not taken over
    call("cancel", job_id, OWNER)  # ended: Cancel greys out
    call("cancel", job_id, "another browser")  # refused, with words
    call("cancel", None, OWNER)  # no job of this page
    for index in (0, 3):  # a candidate on screen, and a slot without one
        call("use_seed", shown, index)
        call("promote", shown, OWNER, index)
    call("use_seed", None, 0)
    call("promote", None, OWNER, 0)
    call("history")
    history_ids = answers["history"][-1][page.history_ids]
    call("history_if_changed", None)  # a page that has shown nothing yet
    call("history_if_changed", answers["history"][-1][page.history_shown])  # nothing new: unchanged
    assert job_id in history_ids
    call("select_history", history_ids, gr.SelectData(None, {"index": history_ids.index(job_id), "value": None}))
    call("select_history", [], gr.SelectData(None, {"index": 0, "value": None}))
    call("load_settings", job_id)
    call("load_settings", None)
    requeued = call("requeue_interrupted")[page.job_id]
    call("requeue_interrupted")  # nothing left: a message
    assert jobs.wait(requeued, timeout=JOB_TIMEOUT_S).state == "done"

    several_outputs = {name for name, events_outputs in wired.items() if any(len(o) > 1 for o in events_outputs)}
    assert several_outputs - set(answers) == set(), "a handler with several outputs is not exercised here"
    for name, handler_answers in answers.items():
        for answer in handler_answers:
            if answer == gr.skip():  # the whole event leaves its outputs as they are
                continue
            assert answer and all(isinstance(key, Block) for key in answer), (name, answer)
            for outputs in wired[name]:
                stray = [key.elem_id or type(key).__name__ for key in answer if key._id not in outputs]
                assert not stray, f"{name} answers for {stray}, which its event does not output"

"""Progress where the eye is, in headless Chromium at 1400×900 and 390×844 against the real app on the tiny model
(issue 18, items 1, 3 and 4): the status, bar, time left and live preview right under Generate; the tab's title and a
notification at the end; Cancel that answers at once and is greyed when nothing runs; one job per double click; the
queue panel with every tab's and every script's jobs. One app and one browser serve the module."""
from __future__ import annotations

import re
import time

import httpx
import pytest

from web_support import running_app
from test_web_page import TIMEOUT_MS, open_page, small_job, wait_state

DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
JOB_TIMEOUT_MS = 240_000
# The browser's Notification, recorded: permission starts undecided, as on a first visit, and is granted when asked.
NOTIFICATIONS = """
window.I2V_LONG_JOB_S = 0;
window.__notifications = [];
window.__permissionAsked = false;
window.Notification = class {
  static permission = "default";
  static requestPermission() { window.__permissionAsked = true; this.permission = "granted"; return Promise.resolve("granted"); }
  constructor(title, options) { window.__notifications.push({title, body: options && options.body}); }
};
"""


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("progress-outputs")) as server:
        yield server


def new_page(browser, viewport: dict):
    context = browser.new_context(viewport=viewport)
    context.add_init_script(NOTIFICATIONS)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return page


@pytest.fixture
def desktop(browser):
    page = new_page(browser, DESKTOP)
    yield page
    page.context.close()


@pytest.fixture
def phone(browser):
    page = new_page(browser, PHONE)
    yield page
    page.context.close()


def listed_jobs(server, prompt: str) -> list[dict]:
    jobs = httpx.get(server.url + "api/jobs", timeout=30).json()["jobs"]
    return [job for job in jobs if job["prompt"] == prompt]


def gap_under_the_buttons(page) -> float:
    """Pixels from the bottom of Generate (and Cancel, when a phone stacks them) to the top of the status panel."""
    buttons = [page.locator(selector).bounding_box() for selector in ("#generate", "#cancel")]
    status = page.locator("#job-status").bounding_box()
    assert status["x"] < buttons[0]["x"] + buttons[0]["width"] and buttons[0]["x"] < status["x"] + status["width"]
    return status["y"] - max(box["y"] + box["height"] for box in buttons)


# Long enough (a few seconds on one CPU thread at the toy size) for the title, the bar and two previews to be seen.
STEPS = 250  # the most a tiny run takes (steps_range)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_progress_time_left_and_preview_sit_right_under_generate(browser, app_server, photo_path, viewport):
    page = new_page(browser, viewport)
    try:
        open_page(page, app_server)
        small_job(page, photo_path, prompt=f"a kite rising slowly {viewport['width']}", steps=STEPS, frames=16)
        page.click("#generate")
        wait_state(page, "running")
        page.wait_for_function(f"/step \\d+ of {STEPS}/.test(document.querySelector('#job-status')?.innerText)")
        assert 0 <= gap_under_the_buttons(page) < 60
        label = page.inner_text("#job-status")
        assert re.search(rf"step \d+ of {STEPS}", label) and ("left" in label or "estimating" in label
                                                            or "finishing" in label)
        assert not re.search(r"\babout 0 s left", label)
        assert page.get_attribute("#job-status [role=progressbar]", "aria-valuenow") is not None
        page.wait_for_function("/^\\d+% — I2V Studio$/.test(document.title)")
        # the live preview takes the result's place while the job runs
        page.wait_for_function("document.querySelector('#live-preview')?.naturalWidth > 0")
        first = page.get_attribute("#live-preview", "data-step")
        page.wait_for_function(f"(p => p && p.dataset.step !== '{first}' && p.naturalWidth > 0)"
                               "(document.querySelector('#live-preview'))")  # a newer step, drawn
        page.wait_for_selector("#job-status [data-state=done], #job-status [data-state=failed]",
                               timeout=JOB_TIMEOUT_MS)  # a loaded 2-core machine takes its time
        assert page.get_attribute("#job-status [data-state]", "data-state") == "done", page.inner_text("#job-status")
        page.wait_for_function("document.title === '✓ done — I2V Studio'")
        assert page.evaluate("window.__permissionAsked")  # asked on the click on Generate, not before
        notes = page.evaluate("window.__notifications")
        assert notes and notes[-1]["title"] == "✓ done — I2V Studio" and "ready" in notes[-1]["body"]
        assert page.locator("#cancel").is_disabled()
    finally:
        page.context.close()


def test_cancel_is_greyed_when_nothing_runs_and_says_cancelling_at_once(desktop, app_server, photo_path):
    page = open_page(desktop, app_server)
    assert page.locator("#cancel").is_disabled()
    small_job(page, photo_path, prompt="waves crashing, cancelled", steps=250, frames=16, resolution="256p")
    page.click("#generate")
    wait_state(page, "running", "queued")
    page.wait_for_function("!document.querySelector('#cancel').disabled")
    page.click("#cancel")
    assert "Cancelling" in page.inner_text("#job-status")  # before the server has answered the click
    assert wait_state(page, "cancelled") == "cancelled"
    page.wait_for_function("document.querySelector('#cancel').disabled")
    page.wait_for_function("document.title === 'cancelled — I2V Studio'")


def test_a_double_click_on_generate_queues_one_job(desktop, app_server, photo_path):
    prompt = "snow falling slowly, double click"
    page = open_page(desktop, app_server)
    small_job(page, photo_path, prompt=prompt, steps=250, frames=16, resolution="256p")
    page.dblclick("#generate")
    wait_state(page, "running", "queued")
    time.sleep(2.0)  # a second job, had one been made, is queued by now
    jobs = listed_jobs(app_server, prompt)
    assert len([job for job in jobs if job["state"] in ("queued", "running")]) == 1, jobs
    assert page.get_attribute("#job-status [data-state]", "data-job") == jobs[0]["id"]
    page.click("#cancel")
    assert wait_state(page, "cancelled") == "cancelled"


def test_the_queue_panel_lists_every_tabs_and_scripts_jobs_with_cancel_only_for_ones_own(
        browser, app_server, photo_path, shared_photo_path):
    from gradio_client import Client, handle_file

    mine, theirs = new_page(browser, DESKTOP), new_page(browser, PHONE)  # two browsers: two secrets
    script = Client(app_server.url, verbose=False)
    try:
        open_page(mine, app_server)
        small_job(mine, photo_path, prompt="a dolly shot of a quiet street", steps=250, frames=16, resolution="256p")
        mine.click("#generate")
        wait_state(mine, "running", "queued")
        job_id = mine.get_attribute("#job-status [data-state]", "data-job")
        scripted = script.submit(handle_file(str(shared_photo_path)), "a script's job", steps=2, resolution=128,
                                 frames=4, preset="fast-check", api_name="/generate")
        open_page(theirs, app_server)
        row = f"#queue-panel tr[data-job='{job_id}']"
        theirs.wait_for_selector(f"{row}[data-yours=false]")
        assert theirs.locator(f"{row} button").is_disabled()
        assert "a dolly shot of a quiet street" in theirs.inner_text(row) and "tiny" in theirs.inner_text(row)
        scripts_row = theirs.locator("#queue-panel tr[data-yours=false]", has_text="a script's job")
        scripts_row.wait_for()  # an API client's job, waiting behind the page's
        assert scripts_row.get_attribute("data-state") == "queued"

        mine.wait_for_selector(f"{row}[data-yours=true]")
        mine.click(f"{row} button")
        assert wait_state(mine, "cancelled") == "cancelled"  # cancelled from the queue: the panel above agrees
        theirs.wait_for_selector(row, state="detached")
        scripted.result(timeout=120)
    finally:
        script.close()
        mine.context.close()
        theirs.context.close()

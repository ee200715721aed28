"""The page in headless Chromium (Debian's chromium via Playwright's executable_path), against the real app on
the tiny model: what a person sees and clicks."""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from i2v.gpu.fake_monitor import FakeGpuMonitor
from i2v.web.events import PageEvents

from conftest import photo_like
from web_support import playwright_or_skip, running_app

playwright_api = playwright_or_skip()

TIMEOUT_MS = 60_000



@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("page-outputs")) as server:
        yield server


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def open_page(page, server):
    page.goto(server.url)
    page.wait_for_selector("#plan-verdict [data-verdict]")  # the page's load events have answered
    return page


def set_number(page, elem_id: str, value) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def choose_resolution(page, label: str) -> None:
    page.click("#resolution input")
    page.get_by_role("option", name=label, exact=True).click()


def small_job(page, photo_path: Path, *, prompt="a red ball rolling slowly to the left", steps=3, frames=4,
              resolution="128p") -> None:
    page.set_input_files("#input-image input[type=file]", str(photo_path))
    page.wait_for_selector("#image-report .findings")
    page.locator("#prompt textarea").fill(prompt)
    page.get_by_text("Fast check", exact=False).first.click()
    page.click("#advanced button")  # open the accordion
    choose_resolution(page, resolution)
    set_number(page, "frames", frames)
    set_number(page, "steps", steps)
    page.wait_for_function(f"document.querySelector('#plan-verdict')?.innerText.includes('{frames} frames, {steps} steps')")


def job_state(page) -> str:
    return page.get_attribute("#job-status [data-state]", "data-state")


def wait_state(page, *states: str) -> str:
    selector = ", ".join(f"#job-status [data-state={s}]" for s in states)
    page.wait_for_selector(selector)
    return job_state(page)


def test_generate_on_tiny_shows_progress_then_a_playable_video(page, app_server, photo_path):
    open_page(page, app_server)
    assert "tiny" in page.inner_text("#model-banner") and "noise" in page.inner_text("#model-banner")
    small_job(page, photo_path, steps=60, frames=8)
    page.click("#generate")
    wait_state(page, "running")
    page.wait_for_function("/step \\d+ of 60/.test(document.querySelector('#job-status')?.innerText)")
    assert page.get_attribute("#job-status [role=progressbar]", "aria-valuenow") is not None
    label = page.inner_text("#job-status")
    assert re.search(r"step \d+ of 60", label) and "elapsed" in label
    assert wait_state(page, "done", "failed") == "done", page.inner_text("#job-status")
    video = page.wait_for_selector("#video-0 video")
    page.wait_for_function("document.querySelector('#video-0 video')?.readyState >= 1")  # metadata decoded
    assert page.evaluate("document.querySelector('#video-0 video')?.duration") > 0
    assert re.search(r"Seed \d+", page.inner_text("#caption-0"))
    assert video.get_attribute("src")
    assert ".json" in page.inner_text("#files-0")  # the record is downloadable beside the video


def test_preset_fills_the_parameters_and_traps_show_next_to_them(page, app_server):
    open_page(page, app_server)
    page.get_by_text("High quality", exact=False).first.click()
    page.click("#advanced button")
    page.wait_for_function("document.querySelector('#steps input[type=number]')?.value === '80'")
    assert page.input_value("#frames input[type=number]") == "24"
    set_number(page, "steps", 10)
    set_number(page, "guidance", 14)
    page.wait_for_selector("#param-traps [data-code='params.few_steps_high_guidance']")


def test_a_number_typed_while_the_presets_check_runs_is_kept(page, app_server, monkeypatch):
    """Gradio replays a deferred "always_last" check by dispatching the finished run's trigger again; while the
    preset was among that check's triggers, the replay re-ran the preset fill and put its 80 steps back over the 10
    the user had typed meanwhile (seen on a loaded machine). Slowed checks make "meanwhile" certain here."""
    quick_check = PageEvents.check_settings

    def slow_check(self, *values):
        time.sleep(1.5)
        return quick_check(self, *values)

    open_page(page, app_server)
    monkeypatch.setattr(PageEvents, "check_settings", slow_check)
    page.get_by_text("High quality", exact=False).first.click()
    page.click("#advanced button")
    page.wait_for_function("document.querySelector('#steps input[type=number]')?.value === '80'")
    set_number(page, "steps", 10)  # the preset's checks are still running
    page.wait_for_function("document.querySelector('#plan-verdict')?.innerText.includes('10 steps')", timeout=30_000)
    time.sleep(2)  # a replayed preset fill would land now
    assert page.input_value("#steps input[type=number]") == "10"
    assert "10 steps" in page.inner_text("#plan-verdict")

def test_guidance_while_typing_and_keyword_chips(page, app_server, tmp_path):
    small_photo = tmp_path / "small.png"
    photo_like(200, 160).save(small_photo)  # short side under 256 px: too small whatever the video size
    open_page(page, app_server)
    page.locator("#prompt textarea").fill("make it beautiful")
    page.wait_for_selector("#prompt-lint [data-code='prompt.abstract_only']")
    page.click("#keywords button")  # open the keyword library
    page.locator(".keyword-chips button", has_text="waves crashing").first.click()
    page.wait_for_function("document.querySelector('#prompt textarea')?.value.endsWith('waves crashing')")
    page.wait_for_selector("#prompt-lint [data-code='prompt.no_direction']")  # abstract-only is gone
    assert "prompt.abstract_only" not in page.inner_html("#prompt-lint")
    page.locator(".keyword-chips button", has_text="in slow motion").first.click()
    page.wait_for_selector("#prompt-lint [data-code='prompt.ok']")
    page.set_input_files("#input-image input[type=file]", str(small_photo))
    page.wait_for_selector("#image-report [data-code='image.too_small']")


def test_errors_are_words_and_the_page_stays_usable(page, app_server, photo_path):
    open_page(page, app_server)
    page.locator("#prompt textarea").fill("a red ball rolling to the left")
    page.click("#generate")
    wait_state(page, "refused")
    assert "Upload an image first" in page.inner_text("#job-status")
    assert "Traceback" not in page.content()
    small_job(page, photo_path)
    page.click("#generate")
    assert wait_state(page, "done", "failed") == "done"


def test_reload_shows_the_same_job_and_cancel_stops_it(page, app_server, photo_path):
    open_page(page, app_server)
    small_job(page, photo_path, steps=250, frames=16, resolution="256p")
    page.click("#generate")
    wait_state(page, "running")
    job_id = page.get_attribute("#job-status [data-state]", "data-job")
    page.reload()  # the job lives on the server: the page picks it up again
    page.wait_for_selector(f"#job-status [data-job='{job_id}'][data-state=running]")
    page.click("#cancel")
    assert wait_state(page, "cancelled") == "cancelled"
    assert app_server.app.jobs.status(job_id).state == "cancelled"
    assert not any(job_id in p.name for p in Path(app_server.app.jobs.engine.output_dir).rglob("*.mp4"))


def test_use_this_seed_copies_the_candidate_seed(page, app_server, photo_path):
    open_page(page, app_server)
    small_job(page, photo_path)
    page.click("#generate")
    assert wait_state(page, "done") == "done"
    seed = re.search(r"Seed (\d+)", page.inner_text("#caption-0")).group(1)
    page.click("#use-seed-0")
    page.wait_for_function(f"document.querySelector('#seed input')?.value === '{seed}'")


def test_gpu_panel_says_plainly_there_is_no_gpu(page, app_server):
    open_page(page, app_server)
    page.wait_for_selector("#gpu-panel[data-state=none]")
    text = page.inner_text("#gpu-panel")
    assert "No NVIDIA GPU" in text and "CPU" in text


def test_workers_panel_says_jobs_run_in_the_apps_own_process(page, app_server):
    open_page(page, app_server)
    line = page.wait_for_selector("#workers-panel .workers-one[data-workers='1']")
    text = line.inner_text()
    assert "in the app's process" in text and f"PID {os.getpid()}" in text and "one at a time" in text
    assert page.locator("#workers-panel table").count() == 0  # one line, not a table of one row


def test_gpu_panel_warns_at_85_percent_memory(page, tmp_path):
    monitor = FakeGpuMonitor.single(total_gib=80.0, used_gib=68.0)
    with running_app(tmp_path / "outputs", monitor=monitor) as server:
        open_page(page, server)
        page.wait_for_selector("#gpu-panel[data-state=warning] .gpu[data-level=warning]")
        text = page.inner_text("#gpu-panel")
        assert "85 %" in text and "Lower the resolution" in text
        monitor.set_used(0, int(8 * 1024**3))  # memory freed: the next poll clears the warning
        page.wait_for_selector("#gpu-panel[data-state=ok] .gpu[data-level=ok]")
        assert "Lower the resolution" not in page.inner_text("#gpu-panel")


def test_history_survives_a_restart_and_loads_settings(page, tmp_path, photo_path):
    outputs = tmp_path / "outputs"
    with running_app(outputs) as first:
        open_page(page, first)
        small_job(page, photo_path, prompt="waves crashing on the rocks")
        page.click("#generate")
        assert wait_state(page, "done") == "done"
        job_id = page.get_attribute("#job-status [data-state]", "data-job")
    with running_app(outputs) as second:  # a new process would read the same job database
        open_page(page, second)
        page.wait_for_selector(f"#history-table tr[data-job='{job_id}'][data-state=done]")
        page.locator("#history-gallery button.thumbnail-item").first.dispatch_event("click")
        page.wait_for_selector("#load-settings:not([disabled])")
        assert "waves crashing on the rocks" in page.inner_text("#history-detail")
        page.locator("#prompt textarea").fill("something else")
        page.click("#load-settings")
        page.wait_for_function(
            "document.querySelector('#prompt textarea')?.value === 'waves crashing on the rocks'")
        page.wait_for_function("document.querySelector('#plan-verdict')?.innerText.includes('4 frames, 3 steps')")


def test_with_auth_the_page_works_for_the_user_and_shows_uptime_and_idle_stop(browser, tmp_path, photo_path):
    """Basic auth on: the browser's credentials carry the page, its Gradio events, the job's video and the
    /gpu_status polling (the panel renders, it does not say "unreachable"); a visitor without them sees nothing."""
    args = ["--auth", "team:s3cret:pw", "--idle-stop-minutes", "90"]
    with running_app(tmp_path / "outputs", extra_args=args) as server:
        stranger = browser.new_context()
        try:
            # Headless Chromium cannot show the login prompt, so a 401 with a Basic challenge ends the navigation.
            with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
                stranger.new_page().goto(server.url)
        finally:
            stranger.close()
        context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                      http_credentials={"username": "team", "password": "s3cret:pw"})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        try:
            open_page(page, server)
            page.wait_for_selector("#gpu-panel[data-state=none] #app-line")
            line = page.inner_text("#app-line")
            assert line.startswith("App up ") and "stops itself after 1 h 30 min without a job" in line
            small_job(page, photo_path)
            page.click("#generate")
            assert wait_state(page, "done", "failed") == "done", page.inner_text("#job-status")
            page.wait_for_function("document.querySelector('#video-0 video')?.readyState >= 1")
        finally:
            context.close()


def test_interrupted_jobs_are_requeued_with_one_click(page, tmp_path, photo_path):
    from test_requeue import crashed_job

    outputs = tmp_path / "outputs"
    old = crashed_job(outputs, photo_path, prompt="leaves falling slowly")
    with running_app(outputs) as server:
        open_page(page, server)
        page.wait_for_selector(f"#history-table tr[data-job='{old}'][data-state=interrupted]")
        button = page.wait_for_selector("#requeue:visible")
        assert button.inner_text() == "Re-queue 1 interrupted job"
        button.click()
        assert wait_state(page, "done", "failed") == "done", page.inner_text("#job-status")
        new = page.get_attribute("#job-status [data-state]", "data-job")
        assert new != old
        page.wait_for_selector(f"#history-table tr[data-job='{new}'][data-state=done]")
        assert f"Re-queued as job {new}" in page.inner_text(f"#history-table tr[data-job='{old}']")
        page.wait_for_selector("#requeue", state="hidden")  # nothing left to re-queue


def test_choosing_another_model_changes_presets_limits_and_banner_and_generates_on_it(page, app_server, photo_path):
    open_page(page, app_server)
    page.click("#model input")
    page.get_by_role("option", name="tiny-cogvideox — CogVideoX-I2V (tiny, random weights)").click()
    page.wait_for_function("document.querySelector('#model-banner')?.innerText.includes('tiny-cogvideox')")
    # The tiers now describe this model's values, and the frame control follows its 8N+1 rule.
    page.get_by_text("96×64, 17 frames, 8 steps", exact=False).first.wait_for()
    page.click("#advanced button")
    page.wait_for_function("document.querySelector('#frames input[type=number]')?.value === '17'")
    assert "8N+1: 9, 17 … 49" in page.inner_text("#frames")
    assert page.get_attribute("#frames input[type=range]", "step") == "8"
    assert page.get_attribute("#frames input[type=range]", "max") == "49"
    page.get_by_text("Fast check", exact=False).first.click()
    page.wait_for_function("document.querySelector('#frames input[type=number]')?.value === '9'")
    page.set_input_files("#input-image input[type=file]", str(photo_path))
    page.locator("#prompt textarea").fill("waves crashing on the rocks")
    page.wait_for_function("document.querySelector('#plan-verdict')?.innerText.includes('96×64')")
    page.click("#generate")
    assert wait_state(page, "done", "failed") == "done", page.inner_text("#job-status")
    page.wait_for_selector("#video-0 video")
    assert "tiny-cogvideox" in page.inner_text("#caption-0") and "noise" in page.inner_text("#caption-0")


def test_a_page_kept_in_outputs_never_runs_in_the_apps_origin(page, app_server):
    """Red-team item 1: an HTML upload kept under the client's suffix (as older versions did) was served inline as
    text/html; opened by a visitor, its script read the API description with the visitor's credentials."""
    inputs = app_server.app.jobs.engine.output_dir / "inputs"
    inputs.mkdir(exist_ok=True)
    trap = inputs / "0123456789abcdef01234567.html"
    trap.write_text("<script>fetch('/gradio_api/info').then(r => r.text())"
                    ".then(t => { document.title = 'stolen ' + t.length })</script>", encoding="utf-8")
    downloads = []
    page.on("download", lambda download: downloads.append(download))
    try:
        page.goto(f"{app_server.url}gradio_api/file={trap}")
    except playwright_api.Error:  # navigating to a download aborts the navigation itself
        pass
    page.wait_for_timeout(1000)  # time enough for the fetch, had the script run
    assert not page.title().startswith("stolen"), "the file's script ran in the app's origin"
    assert [download.suggested_filename for download in downloads] == [trap.name]  # a download, not a page

def test_ltx2_offers_a_sound_switch_and_its_video_plays_with_sound(page, app_server, photo_path):
    open_page(page, app_server)
    page.click("#advanced button")
    assert not page.locator("#audio").is_visible()  # tiny makes no sound: no switch
    page.click("#model input")
    page.get_by_role("option", name="tiny-ltx2 — LTX-2 I2V (tiny, random weights)").click()
    page.wait_for_function("document.querySelector('#model-banner')?.innerText.includes('tiny-ltx2')")
    page.locator("#audio").wait_for(state="visible")
    assert page.locator("#audio input[type=checkbox]").is_checked()
    page.get_by_text("Fast check", exact=False).first.click()
    page.set_input_files("#input-image input[type=file]", str(photo_path))
    page.locator("#prompt textarea").fill("waves crashing on the rocks")
    page.wait_for_function("document.querySelector('#plan-verdict')?.innerText.includes('9 frames')")
    page.click("#generate")
    assert wait_state(page, "done", "failed") == "done", page.inner_text("#job-status")
    page.wait_for_selector("#video-0 video")
    page.wait_for_function("document.querySelector('#video-0 video')?.readyState >= 1")
    # The player decodes the sound track: Chromium counts the audio bytes it decoded while playing.
    page.evaluate("(() => { const v = document.querySelector('#video-0 video'); v.muted = true; v.play(); })()")
    page.wait_for_function("document.querySelector('#video-0 video')?.webkitAudioDecodedByteCount > 0")
    assert "tiny-ltx2" in page.inner_text("#caption-0")

"""Defects a new user tripped on (issue 18, item 5), each as the user met it: headless Chromium (Debian's, via
Playwright's executable_path) at 1400×900 and 390×844, against one real app on the tiny models shared by the
module so the tests stay fast."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from i2v.engine.request import GenerationRequest

from web_support import playwright_or_skip, running_app

playwright_api = playwright_or_skip()

TIMEOUT_MS = 60_000
DESKTOP = {"width": 1400, "height": 900}
PHONE = {"width": 390, "height": 844}
MODEL_LABELS = {"tiny": "tiny — ", "tiny-wan": "tiny-wan — ", "tiny-cogvideox": "tiny-cogvideox — "}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("defect-outputs")) as app_server:
        yield app_server


@pytest.fixture(scope="module")
def picture(shared_photo_path) -> Path:
    return shared_photo_path  # 320×256


def new_page(browser, viewport):
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return context, page


@pytest.fixture
def page(browser):
    context, page = new_page(browser, DESKTOP)
    yield page
    context.close()


@pytest.fixture(params=[DESKTOP, PHONE], ids=["desktop", "phone"])
def any_screen(browser, request):
    context, page = new_page(browser, request.param)
    yield page
    context.close()


@pytest.fixture
def phone(browser):
    context, page = new_page(browser, PHONE)
    yield page
    context.close()


# -- driving the page ---------------------------------------------------------------------------------------------
def open_page(page, server):
    page.goto(server.url)
    page.wait_for_selector("#plan-verdict [data-verdict]")  # the page's load events have answered
    return page


def error_toasts(page) -> list[str]:
    return [text for text in page.locator(".toast-body").all_inner_texts() if "rror" in text]


def choose_model(page, name: str) -> None:
    page.click("#model input")
    page.get_by_role("option", name=MODEL_LABELS[name], exact=False).first.click()
    page.wait_for_function(f"document.querySelector('#model-banner [data-model]')?.dataset.model === '{name}'")


def verdict(page) -> str:
    return page.inner_text("#plan-verdict")


def wait_verdict(page, text: str) -> None:
    try:
        page.wait_for_function("t => document.querySelector('#plan-verdict')?.innerText.includes(t)", arg=text)
    except playwright_api.TimeoutError:
        raise AssertionError(f"the verdict never said {text!r}; it says: {verdict(page)!r}") from None


def set_number(page, elem_id: str, value) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(str(value))
    field.press("Enter")


def upload(page, picture: Path) -> None:
    page.set_input_files("#input-image input[type=file]", str(picture))
    page.wait_for_selector("#image-report .findings")


def generate(page) -> str:
    """Click Generate and wait for the new job to end; its state."""
    before = page.get_attribute("#job-status [data-state]", "data-job")
    page.click("#generate")
    page.wait_for_function("b => { const s = document.querySelector('#job-status [data-job]');"
                           " return s && s.dataset.job !== b; }", arg=before)
    return wait_state(page, "done", "failed", "cancelled")


def wait_state(page, *states: str) -> str:
    page.wait_for_selector(", ".join(f"#job-status [data-state={s}]" for s in states))
    return page.get_attribute("#job-status [data-state]", "data-state")


def finished_job(server, picture: Path, **settings) -> str:
    """A run made by someone else (another tab or a script), waited for."""
    jobs = server.app.jobs
    job_id = jobs.submit(GenerationRequest(image=str(picture), **settings))
    deadline = time.monotonic() + 120
    while not jobs.status(job_id).finished and time.monotonic() < deadline:
        jobs.wait(job_id, timeout=2)
    assert jobs.status(job_id).state == "done", jobs.status(job_id).error_message
    return job_id


TINY_WAN_RUN = {"prompt": "a boat drifting slowly to the left", "model": "tiny-wan", "preset": "fast-check",
                "resolution": 64, "frames": 5, "steps": 1}
TINY_RUN = {"prompt": "a red ball rolling slowly to the left", "model": "tiny", "preset": "fast-check",
            "resolution": 128, "frames": 4, "steps": 1}


# -- switching models ---------------------------------------------------------------------------------------------
def test_switching_models_raises_no_error_and_the_controls_follow_each_model(any_screen, server):
    """Was: tiny → tiny-cogvideox raised "Value 8 is less than minimum value 9"; tiny → tiny-wan "Value: 512 is
    not in the list of choices: [64, 96]"."""
    page = any_screen
    open_page(page, server)
    page.click("#advanced button")
    for name, shape in (("tiny-cogvideox", "96×64, 17 frames"), ("tiny-wan", "80×80"), ("tiny", "128×128"),
                        ("tiny-wan", "80×80")):
        choose_model(page, name)
        wait_verdict(page, shape)
        page.wait_for_timeout(1500)  # any late event would have answered by now
        assert error_toasts(page) == [], f"after choosing {name}"
        assert shape in verdict(page)


# -- history ------------------------------------------------------------------------------------------------------
def test_load_settings_after_another_run_loads_the_selected_run_and_banner_menu_and_run_agree(page, server,
                                                                                            picture):
    """Was: select a tiny-wan run in the history, generate a tiny run, Load these settings: "Value: 64 is not in
    the list of choices: [128, 256, 512, 768, 1024]", and the banner, the menu and the model that ran disagreed."""
    wan_run = finished_job(server, picture, **TINY_WAN_RUN)
    open_page(page, server)
    page.wait_for_selector(f"#history-table tr[data-job='{wan_run}']")
    page.locator("#history-gallery button.thumbnail-item").first.dispatch_event("click")
    page.wait_for_selector("#load-settings:not([disabled])")
    upload(page, picture)
    page.locator("#prompt textarea").fill(TINY_RUN["prompt"])
    page.click("#advanced button")
    page.click("#resolution input")  # the order small_form uses: the last edit's check carries every value
    page.get_by_role("option", name="128p", exact=True).click()
    set_number(page, "frames", 4)
    set_number(page, "steps", 1)
    wait_verdict(page, "4 frames, 1 steps")
    assert generate(page) == "done", page.inner_text("#job-status")
    # The gallery was redrawn with the new run first: no run is selected any more, so Load cannot load a stale one.
    page.wait_for_selector("#load-settings[disabled]")
    assert "Select a past run" in page.inner_text("#history-detail")
    wan_thumb = page.locator("#history-gallery button.thumbnail-item").nth(1)  # newest first
    wan_thumb.dispatch_event("click")
    page.wait_for_function("document.querySelector('#history-detail')?.innerText.includes('tiny-wan')")
    page.click("#load-settings")
    page.wait_for_function(f"document.querySelector('#prompt textarea')?.value === '{TINY_WAN_RUN['prompt']}'")
    page.wait_for_function("document.querySelector('#model-banner [data-model]')?.dataset.model === 'tiny-wan'")
    assert page.input_value("#model input") .startswith("tiny-wan")
    wait_verdict(page, "5 frames, 1 steps")
    page.wait_for_timeout(1500)
    assert error_toasts(page) == []
    assert "Cannot run" not in verdict(page)
    assert generate(page) == "done", page.inner_text("#job-status")
    assert "tiny-wan" in page.inner_text("#caption-0")


def test_history_from_another_tab_appears_without_refresh(page, server, picture):
    open_page(page, server)
    page.wait_for_selector("#history-table")
    other = finished_job(server, picture, **TINY_RUN)
    page.wait_for_selector(f"#history-table tr[data-job='{other}']", timeout=20_000)


def test_the_history_table_fits_a_phone_screen(phone, server, picture):
    finished_job(server, picture, **TINY_RUN)
    open_page(phone, server)
    phone.wait_for_selector("#history-table tr[data-job]")
    overflow = phone.evaluate("""() => {
        const cells = [...document.querySelectorAll('#history-table td')];
        return cells.filter(c => c.getBoundingClientRect().right > window.innerWidth + 1).length;
    }""")
    assert overflow == 0, "history cells run past the right edge of a 390 px screen"
    scroll = phone.evaluate("document.documentElement.scrollWidth")
    assert scroll <= PHONE["width"], f"the page scrolls sideways ({scroll} px wide)"


# -- prompt -------------------------------------------------------------------------------------------------------
def test_a_motion_keyword_already_in_the_prompt_is_not_added_again(any_screen, server):
    page = any_screen
    open_page(page, server)
    page.locator("#prompt textarea").fill("a beach, waves crashing")
    page.click("#keywords button")
    page.locator(".keyword-chips button", has_text="waves crashing").first.click()
    page.locator(".keyword-chips button", has_text="in slow motion").first.click()
    page.wait_for_function("document.querySelector('#prompt textarea')?.value.endsWith('in slow motion')")
    assert page.input_value("#prompt textarea") == "a beach, waves crashing, in slow motion"


# -- which model -----------------------------------------------------------------------------------------------------
def test_the_banner_of_a_test_model_suggests_its_own_familys_checkpoint(page, server):
    open_page(page, server)
    assert "--model ali-vilab/i2vgen-xl" in page.inner_text("#model-banner")  # tiny is an I2VGen-XL twin
    for name, real in (("tiny-wan", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers"),
                       ("tiny-cogvideox", "THUDM/CogVideoX-5b-I2V")):
        choose_model(page, name)
        banner = page.inner_text("#model-banner")
        assert f"--model {real}" in banner and "i2vgen-xl" not in banner


def test_healthz_names_the_model_in_memory_beside_the_configured_one(server, picture):
    import httpx

    finished_job(server, picture, **TINY_WAN_RUN)
    health = httpx.get(server.url + "healthz").json()
    assert health["model"] == "tiny" and health["resident_model"] == "tiny-wan"


# -- the run on screen ---------------------------------------------------------------------------------------------
def small_form(page, picture: Path, prompt: str = TINY_RUN["prompt"], steps: int = 1) -> None:
    upload(page, picture)
    page.locator("#prompt textarea").fill(prompt)
    page.get_by_text("Fast check", exact=False).first.click()
    page.click("#advanced button")
    page.click("#resolution input")
    page.get_by_role("option", name="128p", exact=True).click()
    set_number(page, "frames", 4)
    set_number(page, "steps", steps)
    wait_verdict(page, f"4 frames, {steps} steps")


def test_reloading_mid_run_shows_the_jobs_picture_and_prompt(page, server, picture):
    open_page(page, server)
    small_form(page, picture, prompt="a kite rising slowly into the wind", steps=200)
    page.click("#generate")
    wait_state(page, "running")
    job_id = page.get_attribute("#job-status [data-state]", "data-job")
    page.reload()
    page.wait_for_selector(f"#job-status [data-job='{job_id}']")
    page.wait_for_function("document.querySelector('#prompt textarea')?.value === 'a kite rising slowly into the wind'")
    page.wait_for_selector("#input-image img")  # the picture is back in the upload box
    page.click("#cancel")
    wait_state(page, "cancelled")


def test_promote_asks_before_a_long_job_and_keeps_the_videos_on_screen(page, server, picture):
    open_page(page, server)
    small_form(page, picture)
    assert generate(page) == "done"
    job_id = page.get_attribute("#job-status [data-state]", "data-job")
    jobs_before = len(server.app.jobs.history(100))
    page.click("#promote-0")
    page.wait_for_selector(".toast-body:has-text('press Generate')")
    page.wait_for_function("document.querySelector('#preset input[value=balanced]')?.checked")
    page.wait_for_timeout(1500)  # a job submitted by the click would be in the history by now
    assert len(server.app.jobs.history(100)) == jobs_before, "Promote started a job by itself"
    assert page.get_attribute("#job-status [data-state]", "data-job") == job_id
    assert page.locator("#video-0 video").is_visible()  # the videos made so far stay


# -- what the verdict says ----------------------------------------------------------------------------------------
def test_the_verdict_says_the_actual_size_marks_custom_numbers_and_no_crop_before_a_picture(page, server, picture):
    open_page(page, server)
    choose_model(page, "tiny-cogvideox")  # 96×64 only: a square stand-in would be "cropped"
    wait_verdict(page, "96×64")
    assert "crop" not in verdict(page).lower()
    choose_model(page, "tiny-wan")
    page.get_by_text("Balanced", exact=False).first.click()
    upload(page, picture)  # 320×256
    wait_verdict(page, "64p is about 64² pixels")
    assert "96×80 for this picture" in verdict(page)
    assert "Custom" not in verdict(page)
    page.click("#advanced button")
    set_number(page, "steps", 12)
    wait_verdict(page, "Custom: steps 12 (Balanced: ")


def test_framing_pad_shows_black_bars_in_the_preprocessed_image(any_screen, server, picture):
    import io

    import httpx
    from PIL import Image

    page = any_screen
    open_page(page, server)
    choose_model(page, "tiny-cogvideox")  # 96×64 (1.5:1) from a 320×256 (1.25:1) picture
    upload(page, picture)
    wait_verdict(page, "cropped to the video's 96×64")
    page.click("#framing-box > button")
    page.locator("#framing label", has_text="Whole picture on black bars").click()
    wait_verdict(page, "fitted whole into the video's 96×64")
    assert not page.locator("#crop-x").is_visible()  # nothing to position: the whole picture is kept
    page.wait_for_function("document.querySelector('#preview-image img')?.src")
    source = page.get_attribute("#preview-image img", "src")
    shown = Image.open(io.BytesIO(httpx.get(source).content)).convert("RGB")
    assert shown.size == (96, 64)
    assert max(shown.getpixel((1, 32))) < 16 and max(shown.getpixel((94, 32))) < 16  # black bars left and right
    page.locator("#framing label", has_text="Crop to fill the frame").click()
    page.locator("#crop-x").wait_for(state="visible")
    wait_verdict(page, "cropped to the video's 96×64")


def test_a_rest_client_that_sends_the_older_values_only_still_generates(server, picture):
    """``/generate`` grew framing, crop_x and crop_y at the end: a raw REST call with the first 16 values works."""
    import httpx

    base = server.url.rstrip("/")
    uploaded = httpx.post(f"{base}/gradio_api/upload", files={"files": ("in.png", picture.read_bytes())}).json()[0]
    data = [{"path": uploaded, "meta": {"_type": "gradio.FileData"}}, TINY_RUN["prompt"], "", "fast-check", 128, 4, 1,
            0, 0, -1, 1, False, "tiny", None, True, None]
    event = httpx.post(f"{base}/gradio_api/call/generate", json={"data": data}).json()["event_id"]
    stream = httpx.get(f"{base}/gradio_api/call/generate/{event}", timeout=120).text
    assert "event: complete" in stream, stream[:400]
    assert '"framing": "crop"' in stream

"""LoRAs from the web app, against the real server (configured with ``tiny``, offering ``tiny-wan``): ``/generate``
through ``gradio_client`` takes a ``loras`` value and the record names each LoRA; bad LoRAs get the engine's one-line
message and write nothing; the page's picker (headless Chromium) lists the LoRA folder, takes a strength, runs and
hides for a model without LoRAs, at a desktop and a phone width; the verdict refuses a pickle and "Load these
settings" brings the LoRAs back."""
from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from i2v.backends import spec_for
from i2v.backends.i2vgen_xl.tiny import TINY_NAME
from i2v.backends.wan.tiny import TINY_WAN_NAME, build_tiny_pipeline
from i2v.loras.choice import LoraChoice
from i2v.web.forms import FormValues, form_loras

from lora_files import wan_original_lora
from test_page_events import form, wired_outputs
from web_support import running_app

PROMPT = "a boat drifting slowly to the left, waves rippling"
SMALL = {"frames": 5, "steps": 1, "resolution": 64}  # tiny-wan's sizes
SHOTS = Path("/tmp/lora-shots")


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory) -> Path:
    """The app's LoRA folder (I2V_LORA_DIR) holding a Wan LoRA written for tiny-wan's transformer."""
    folder = tmp_path_factory.mktemp("lora-folder")
    wan_original_lora(build_tiny_pipeline().transformer, folder / "style.safetensors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("I2V_LORA_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def app_server(tmp_path_factory, lora_folder):
    outputs = tmp_path_factory.mktemp("lora-web-outputs").resolve()
    with running_app(outputs) as server:
        yield server, outputs


@pytest.fixture(scope="module")
def picture(shared_photo_path) -> Path:
    return shared_photo_path


@pytest.fixture
def client(app_server):
    client = Client(app_server[0].url, verbose=False)
    yield client
    client.close()


def _written(outputs: Path) -> set[Path]:
    return {p for p in outputs.rglob("*") if p.is_file() and p.name != "jobs.sqlite3"}


def _record(files: list[str]) -> dict:
    return json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text(encoding="utf-8"))


# -- /generate -----------------------------------------------------------------------------------------------
def test_generate_takes_loras_and_the_record_names_each_one(client, lora_folder, picture):
    _video, files, result = client.predict(handle_file(str(picture)), PROMPT, model=TINY_WAN_NAME,
                                           loras=[{"source": "style.safetensors", "strength": 0.8}],
                                           api_name="/generate", **SMALL)
    (lora,) = _record(files)["loras"]
    assert lora["file"] == "style.safetensors" and lora["strength"] == 0.8
    assert lora["sha256"] == hashlib.sha256((lora_folder / "style.safetensors").read_bytes()).hexdigest()
    assert result["params"]["loras"] == [{"source": "style.safetensors", "strength": 0.8, "expert": "both"}]
    # The CLI's spelling works too, as a list of strings.
    _video, files, _result = client.predict(handle_file(str(picture)), PROMPT, model=TINY_WAN_NAME,
                                            loras=["style.safetensors:0.5"], api_name="/generate", **SMALL)
    assert [(x["file"], x["strength"]) for x in _record(files)["loras"]] == [("style.safetensors", 0.5)]


def test_generate_refuses_a_pickle_lora_and_loras_for_a_model_without_them_writing_nothing(client, app_server,
                                                                                           lora_folder, picture,
                                                                                           tmp_path):
    outputs = app_server[1]
    before = _written(outputs)
    ckpt = tmp_path / "style.ckpt"
    ckpt.write_bytes(pickle.dumps({"not": "loaded"}))
    with pytest.raises(AppError, match=r"pickle file \(\.ckpt\)") as caught:
        client.predict(handle_file(str(picture)), PROMPT, model=TINY_WAN_NAME, loras=[[str(ckpt), 1.0]],
                       api_name="/generate", **SMALL)
    assert "\n" not in str(caught.value)
    with pytest.raises(AppError, match=rf"does not take LoRAs.*{TINY_WAN_NAME}"):
        client.predict(handle_file(str(picture)), PROMPT, model=TINY_NAME, loras=["style.safetensors"],
                       frames=4, steps=1, api_name="/generate")
    with pytest.raises(AppError, match=r"strength of LoRA 'style.safetensors' is 9"):
        client.predict(handle_file(str(picture)), PROMPT, model=TINY_WAN_NAME,
                       loras=[{"source": "style.safetensors", "strength": 9}], api_name="/generate", **SMALL)
    assert _written(outputs) == before


# -- the page's handlers: the verdict and Load these settings ------------------------------------------------
def test_the_verdict_refuses_a_pickle_lora_and_load_settings_brings_the_loras_back(app_server, picture, tmp_path):
    server, _outputs = app_server
    events, _ = wired_outputs(server.app.blocks)
    page = events.page
    ckpt = tmp_path / "style.ckpt"
    ckpt.write_bytes(pickle.dumps({"not": "loaded"}))
    verdict = events.check_settings(*form(events, image=str(picture), prompt=PROMPT, model=TINY_WAN_NAME,
                                          loras=[str(ckpt)], lora_strength_1=0.5))[page.verdict]
    assert "pickle file" in verdict and 'data-verdict="invalid"' in verdict

    chosen = events.check_settings(*form(events, image=str(picture), prompt=PROMPT, model=TINY_WAN_NAME,
                                         loras=["style.safetensors"], lora_strength_1=0.5))
    assert "pickle" not in chosen[page.verdict] and chosen[page.lora_box].visible is True

    job_id = events.submit(*form(events, image=str(picture), prompt=PROMPT, model=TINY_WAN_NAME, preset="fast-check",
                                 loras=["style.safetensors"], lora_strength_1=0.5, **SMALL), "owner")[page.job_id]
    assert server.app.jobs.wait(job_id, timeout=120).state == "done"
    loaded = events.load_settings(job_id)
    assert loaded[page.model] == TINY_WAN_NAME and loaded[page.loras] == ["style.safetensors"]
    assert loaded[page.lora_names] == ["style.safetensors"]
    first, second = loaded[page.lora_strengths[0]], loaded[page.lora_strengths[1]]
    assert (first.value, first.visible, second.visible) == (0.5, True, False)
    assert "style.safetensors" in first.label


def test_a_removed_lora_takes_its_strength_with_it(app_server):
    events, _ = wired_outputs(app_server[0].app.blocks)
    page = events.page
    answer = events.follow_lora_choice(["b.safetensors"], 0.3, 0.7, 1.0, 1.0, ["a.safetensors", "b.safetensors"])
    assert answer[page.lora_strengths[0]].value == 0.7 and answer[page.lora_strengths[1]].visible is False
    assert events.lora_sliders((LoraChoice("c.safetensors", 2.0),))[page.lora_names] == ["c.safetensors"]


def test_a_strength_typed_with_a_name_moves_to_its_slider_and_an_expert_reaches_the_run(app_server):
    events, _ = wired_outputs(app_server[0].app.blocks)
    page = events.page
    answer = events.follow_lora_choice(["a.safetensors", "b.safetensors:0.8@low"], 0.3, 1.0, 1.0, 1.0,
                                       ["a.safetensors"])
    assert answer[page.loras] == ["a.safetensors", "b.safetensors@low"]
    assert (answer[page.lora_strengths[0]].value, answer[page.lora_strengths[1]].value) == (0.3, 0.8)
    assert page.loras not in events.follow_lora_choice(["a.safetensors"], 0.3, 1.0, 1.0, 1.0, ["a.safetensors"])
    values = FormValues(*form(events, loras=["a.safetensors", "b.safetensors@low"], lora_strength_1=0.3,
                              lora_strength_2=0.8))
    assert form_loras(values) == (LoraChoice("a.safetensors", 0.3), LoraChoice("b.safetensors", 0.8, "low"))


# -- the page in Chromium ------------------------------------------------------------------------------------

def _open(browser, server, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server.url)
    page.wait_for_selector("#plan-verdict [data-verdict]")
    return context, page


def _choose_model(page, name: str, family: str) -> None:
    page.click("#model input")
    page.get_by_role("option", name=f"{name} — {family}").click()
    page.wait_for_function(f"document.querySelector('#model-banner')?.innerText.includes('{name}')")


def _pick_lora(page, name: str, strength: float) -> None:
    """Choose tiny-wan, open Advanced, pick ``name`` from the LoRA menu and type its strength into the slider's
    number box."""
    _choose_model(page, TINY_WAN_NAME, spec_for(TINY_WAN_NAME).family)
    page.click("#advanced button")
    page.wait_for_selector("#loras", state="visible")
    page.click("#loras input")
    page.get_by_role("option", name=name).click()
    page.keyboard.press("Escape")
    field = page.locator("#lora-strength-1 input[type=number]")
    field.wait_for(state="visible")
    field.fill(str(strength))
    field.press("Enter")


def _inside_viewport(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    width = page.viewport_size["width"]
    return box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


def test_the_page_picks_a_lora_from_the_folder_runs_it_and_hides_it_for_a_model_without(browser, app_server,
                                                                                          picture):
    server, _outputs = app_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page = _open(browser, server, 1400, 900)
    try:
        assert not page.locator("#loras").is_visible()  # tiny (I2VGen-XL) takes no LoRA
        page.set_input_files("#input-image input[type=file]", str(picture))
        page.locator("#prompt textarea").fill(PROMPT)
        _pick_lora(page, "style.safetensors", 0.5)
        assert "style.safetensors" in page.inner_text("#lora-strength-1")
        for elem_id, value in (("frames", 5), ("steps", 2)):
            field = page.locator(f"#{elem_id} input[type=number]")
            field.fill(str(value))
            field.press("Enter")
        page.wait_for_function("(document.querySelector('#plan-verdict')?.innerText ?? '').includes('5 frames, 2 "
                               "steps')")
        page.locator("#loras").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "lora-1400x900.png"))
        page.click("#generate")
        page.wait_for_selector("#job-status [data-state=done], #job-status [data-state=failed]", timeout=120_000)
        assert page.get_attribute("#job-status [data-state]", "data-state") == "done", page.inner_text("#job-status")
        page.wait_for_function("(document.querySelector('#caption-0')?.innerText ?? '').includes('LoRA')")
        assert "LoRA style.safetensors ×0.5" in page.inner_text("#caption-0")
        job = page.get_attribute("#job-status [data-state]", "data-job")
        (lora,) = server.app.jobs.status(job).result["params"]["loras"]
        assert lora == {"source": "style.safetensors", "strength": 0.5, "expert": "both"}

        _choose_model(page, TINY_NAME, spec_for(TINY_NAME).family)
        page.wait_for_selector("#lora-box", state="hidden")
    finally:
        context.close()


def test_the_lora_picker_fits_a_phone_screen(browser, app_server):
    server, _outputs = app_server
    SHOTS.mkdir(parents=True, exist_ok=True)
    context, page = _open(browser, server, 390, 844)
    try:
        _pick_lora(page, "style.safetensors", 0.5)
        page.locator("#lora-strength-1").scroll_into_view_if_needed()
        for selector in ("#loras", "#lora-strength-1", "#lora-strength-1 input[type=number]"):
            assert page.locator(selector).is_visible() and _inside_viewport(page, selector), selector
        page.screenshot(path=str(SHOTS / "lora-390x844.png"))
    finally:
        context.close()

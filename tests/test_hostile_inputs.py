"""Bad input never crashes: hostile and odd inputs at every surface (engine, command line, HTTP API, form values).

The corpus is built by tests/hostile_corpus.py in tmp folders, never committed. Every item gets either a clear error
(``BadInputError`` / exit 2 with one line / an ``AppError`` carrying the same message) or a correct result (an
EXIF-rotated picture comes out upright, 16-bit grey keeps its tones, transparency is flattened on white), and the
server keeps answering. Cases already covered in test_images.py, test_request_and_spec.py and test_cli.py are not
repeated. Results table: docs/RELIABILITY.md.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

import hostile_corpus as corpus
from conftest import photo_like
from i2v.cli import main as cli_main
from i2v.engine.engine import Engine
from i2v.errors import BadInputError
from i2v.findings import Finding
from i2v.gpu.hardware import FixedGpuInfo
from i2v.guidance.images import load_image
from i2v.guidance.prompt_lint import lint_prompt
from i2v.engine.request import GenerationRequest, validate_request
from i2v.engine.video import probe_mp4
from i2v.web.forms import FormValues, to_request, uploaded_image
from test_images import _as_stored_for_orientation
from web_support import running_app

SMALL = {"model": "tiny", "preset": "fast-check", "resolution": 128, "frames": 4, "steps": 2}


def assert_actionable(message: str, fragments, *, tmp_path: Path | None = None) -> None:
    """What a user sees: one short line, our words (not a library's), naming what was wrong."""
    assert "Traceback" not in message and "\n" not in message.strip(), message
    assert len(message) < 400, message
    for library_words in ("cannot identify image file", "DecompressionBomb", "Errno", "preprocess input component"):
        assert library_words not in message, message
    assert not re.search(r"/(tmp|home|root|var|work)/", message), "the message must not show server folders"
    if tmp_path is not None:
        assert str(tmp_path) not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    """Prepare only: nothing here loads a model."""
    return Engine(gpu_info=FixedGpuInfo.none(), output_dir=tmp_path_factory.mktemp("hostile-outputs"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("hostile-photo") / "photo.png"
    photo_like(320, 256).save(path)
    return path


def request_for(image, **changes) -> GenerationRequest:
    return GenerationRequest(**{"image": image, "prompt": corpus.GOOD, **SMALL, **changes})


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# --- engine: files that must be refused --------------------------------------------------------------------


@pytest.mark.parametrize("item", corpus.REFUSED, ids=lambda item: item.name)
def test_refused_file_gets_the_same_actionable_message_from_loader_and_engine(tmp_path, engine, item, request):
    path = write(tmp_path, item.filename, item.build())
    if item.header_only:
        request.getfixturevalue("forbid_decoding")  # a bomb must be refused from its header

    with pytest.raises(BadInputError) as loaded:
        load_image(path)
    assert_actionable(str(loaded.value), item.fragments, tmp_path=tmp_path)
    with pytest.raises(BadInputError) as from_bytes:
        load_image(path.read_bytes())
    assert str(from_bytes.value) == str(loaded.value)

    with pytest.raises(BadInputError) as prepared:
        engine.prepare(request_for(path))
    assert str(prepared.value) == str(loaded.value)
    assert engine.backend is None


# --- engine: odd files that must come out as the right picture ---------------------------------------------


def _codes(findings) -> list[str]:
    return [finding.code for finding in findings]


def _mean_rgb(image: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(image.crop(box), dtype=np.float64).reshape(-1, 3).mean(axis=0)


def test_animated_gif_uses_its_first_frame_all_the_way_to_the_model(tmp_path, engine):
    path = write(tmp_path, "anim.gif", corpus.animated_gif())
    job = engine.prepare(request_for(path))
    assert job.source.image.size == (40, 30)
    notice = next(n for n in job.notices if n.code == "image.animated_first_frame")
    assert "3 frames" in notice.message and "first frame" in notice.message
    red, green, blue = _mean_rgb(job.image, (0, 0, *job.image.size))
    assert red > 200 and green < 40 and blue < 40, "the model must see the first (red) frame"


def test_cmyk_jpeg_reaches_the_model_in_rgb_with_a_notice(tmp_path, engine):
    job = engine.prepare(request_for(write(tmp_path, "print.jpg", corpus.cmyk_jpeg())))
    assert job.source.source_mode == "CMYK" and job.image.mode == "RGB"
    assert "image.cmyk_converted" in _codes(job.notices)
    red, green, blue = _mean_rgb(job.image, (0, 0, *job.image.size))
    assert red < 30 and green > 225 and blue > 225, "cyan ink must stay cyan"


def test_sixteen_bit_grey_ramp_keeps_every_tone(tmp_path, engine):
    data, values = corpus.grey16_ramp_png()
    path = write(tmp_path, "ramp16.png", data)

    loaded = load_image(path)

    assert loaded.source_mode in ("I;16", "I") and loaded.image.size == (256, 4)
    pixels = np.asarray(loaded.image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert np.array_equal(pixels[..., 0], expected), "16-bit v must become round(v / 257)"
    assert len(np.unique(pixels[0, :, 0])) == 256, "no tone may be lost or merged"
    assert "image.high_bit_depth" in _codes(engine.prepare(request_for(path)).notices)


@pytest.mark.parametrize("builder", [corpus.palette_with_transparency_png, corpus.rgba_png],
                         ids=["palette with transparency", "RGBA"])
def test_transparent_half_is_white_for_the_model(tmp_path, engine, builder):
    path = write(tmp_path, "see-through.png", builder())
    loaded = load_image(path)
    assert loaded.image.getpixel((5, 10)) == (255, 255, 255)
    assert loaded.image.getpixel((35, 10)) == corpus.RED
    job = engine.prepare(request_for(path))
    assert "image.alpha_flattened" in _codes(job.notices)
    assert "50.0%" in next(n.message for n in job.notices if n.code == "image.alpha_flattened")
    width, height = job.image.size
    assert _mean_rgb(job.image, (0, 0, width // 4, height)).min() > 240, "transparent side must be white"


# JPEG orientations are checked against the EXIF spec in test_images.py; these formats also carry EXIF.
@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
@pytest.mark.parametrize("orientation", range(2, 9))
def test_exif_orientation_in_png_webp_and_tiff_comes_out_upright(tmp_path, fmt, orientation):
    upright = corpus.upright_marker()
    path = write(tmp_path, f"o{orientation}.{fmt.lower()}", corpus.oriented_file(fmt, orientation, upright))
    loaded = load_image(path)
    assert loaded.image.size == (48, 32) and loaded.source_size == (48, 32)
    assert np.array_equal(np.asarray(loaded.image), upright), "must be exactly the upright picture"


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_invalid_exif_orientation_is_ignored(tmp_path, orientation):
    stored = corpus.upright_marker()
    data = corpus.encode(Image.fromarray(stored), "PNG", exif=corpus.exif_with_orientation(orientation))
    loaded = load_image(write(tmp_path, "odd-exif.png", data))
    assert np.array_equal(np.asarray(loaded.image), stored)


@pytest.mark.parametrize("size", [(1, 4000), (4000, 1)], ids=["1x4000", "4000x1"])
def test_one_pixel_line_images_load_and_are_fitted_with_warnings(tmp_path, engine, size):
    width, height = size
    path = write(tmp_path, "line.png", corpus.line_png(width, height))

    loaded = load_image(path)
    assert loaded.image.size == size
    line = np.asarray(loaded.image)[..., 0].ravel()
    assert line[0] == 0 and line[-1] == 255 and (np.diff(line.astype(int)) >= 0).all(), "the ramp keeps its order"

    job = engine.prepare(request_for(path))
    model_width, model_height = job.image.size
    assert (model_height > model_width) == (height > width), "the model input keeps the picture's orientation"
    assert "image.extreme_aspect" in _codes(job.warnings)
    assert "size.aspect_cropped" in _codes(job.notices)


# --- engine: prompts and parameters ------------------------------------------------------------------------


@pytest.mark.parametrize("name, prompt, fragments", corpus.BAD_PROMPTS, ids=[p[0] for p in corpus.BAD_PROMPTS])
def test_bad_prompt_is_refused_before_the_image_is_read(engine, name, prompt, fragments):
    never_read = "no-such-file.png"  # the prompt check must come first and not depend on the image
    with pytest.raises(BadInputError) as prepared:
        engine.prepare(request_for(never_read, prompt=prompt))
    assert_actionable(str(prepared.value), fragments)
    with pytest.raises(BadInputError) as negative:
        validate_request(request_for(never_read, negative_prompt=prompt or "\x00"))
    assert "negative prompt" in str(negative.value)


@pytest.mark.parametrize("name, prompt", corpus.GOOD_PROMPTS, ids=[p[0] for p in corpus.GOOD_PROMPTS])
def test_odd_but_valid_prompt_prepares_verbatim_with_useful_findings(engine, photo, name, prompt):
    job = engine.prepare(request_for(photo, prompt=prompt))
    assert job.params.prompt == prompt
    for finding in job.warnings:
        assert isinstance(finding, Finding) and finding.message.strip()
    if name == "emoji-only prompt":
        no_action = next(w for w in job.warnings if w.code == "prompt.no_action")
        assert "Try:" in no_action.hint


@pytest.mark.parametrize("name, changes, fragments", corpus.BAD_PARAMETERS,
                         ids=[p[0] for p in corpus.BAD_PARAMETERS])
def test_hostile_parameter_is_refused_by_prepare(engine, photo, name, changes, fragments):
    with pytest.raises(BadInputError) as prepared:
        engine.prepare(request_for(**{"image": photo, **changes}))
    assert_actionable(str(prepared.value), fragments)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(exclude_categories=()), max_size=2100))
def test_any_text_is_either_refused_or_safe_for_the_tokenizer_and_the_records(text):
    """Every string a caller can send, lone surrogates and control characters included."""
    try:
        validate_request(request_for("unused.png", prompt=text))
    except BadInputError as error:
        assert str(error).strip()
        return
    text.encode("utf-8")  # the sidecar, the job store and the tokenizer all need this
    findings = lint_prompt(text)
    assert all(isinstance(f, Finding) and f.message.strip() for f in findings)


# --- the command line --------------------------------------------------------------------------------------

CLI_SIZE = ["--model", "tiny", "--width", "64", "--height", "64", "--frames", "4", "--steps", "2"]


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    try:
        status = cli_main(args)
    except SystemExit as exc:  # argparse's own errors
        status = exc.code
    return status, capsys.readouterr().err.strip()


def assert_cli_refused(status: int, err: str, fragments, out_dir: Path) -> None:
    assert status == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert_actionable(err, fragments)
    assert not out_dir.exists(), "nothing may be written for a refused request"


@pytest.mark.parametrize("item", [i for i in corpus.REFUSED if i.filename in
                                  ("empty.png", "notes.png", "drawing.svg", "bomb.png", "cut.jpg")],
                         ids=lambda item: item.name)
def test_cli_refuses_bad_files_with_one_line(tmp_path, capsys, item):
    path = write(tmp_path, item.filename, item.build())
    out_dir = tmp_path / "out"
    status, err = run_cli(["generate", "--image", str(path), "--prompt", corpus.GOOD, *CLI_SIZE,
                           "--output-dir", str(out_dir)], capsys)
    assert_cli_refused(status, err, item.fragments, out_dir)


@pytest.mark.parametrize(
    "args, fragments",
    [
        pytest.param(["--steps", "nan"], ["invalid int value", "'nan'"], id="NaN steps"),
        pytest.param(["--cfg", "inf"], ["guidance inf", "out of range"], id="infinite cfg"),
        pytest.param(["--cfg=-1e309"], ["guidance -inf", "out of range"], id="cfg overflowing to -inf"),
        pytest.param(["--seed", "1.5"], ["invalid int value", "'1.5'"], id="fractional seed"),
        pytest.param(["--fps", "twelve"], ["invalid int value", "'twelve'"], id="string fps"),
        pytest.param(["--width", "-64", "--height", "64"], ["width -64", "out of range"], id="negative width"),
        pytest.param(["--prompt", "a boat\x00 sailing"], ["control character", "'\\x00'"], id="NUL in prompt"),
        pytest.param(["--prompt", "x" * 10_000], ["10000 characters", "limit is 2000"], id="10 000-char prompt"),
        pytest.param(["--prompt", "waves \udcff crashing"], ["not valid UTF-8", "'\\udcff'"],
                     id="non-UTF-8 argv bytes in prompt"),
    ],
)
def test_cli_refuses_hostile_flags_with_one_line(tmp_path, capsys, photo, args, fragments):
    out_dir = tmp_path / "out"
    prompt = [] if "--prompt" in args else ["--prompt", corpus.GOOD]
    status, err = run_cli(["generate", "--image", str(photo), *prompt, *CLI_SIZE, *args, "--output-dir",
                           str(out_dir)], capsys)
    assert_cli_refused(status, err, fragments, out_dir)


@pytest.mark.parametrize("name, fragments", [("evil\nname.png", ["evil\\nname.png", "does not exist"]),
                                             ("in\x00put.png", ["NUL character"])], ids=["newline", "NUL"])
def test_cli_image_path_with_control_characters_still_gives_one_line(tmp_path, capsys, name, fragments):
    out_dir = tmp_path / "out"
    status, err = run_cli(["generate", "--image", str(tmp_path / name), "--prompt", corpus.GOOD, *CLI_SIZE,
                           "--output-dir", str(out_dir)], capsys)
    assert_cli_refused(status, err, fragments, out_dir)


def test_cli_turns_an_unexpected_failure_into_one_line_and_exit_1(capsys, monkeypatch):
    import i2v.cli

    def broken(*_args, **_kwargs) -> int:
        raise RuntimeError("something\nunexpected")

    monkeypatch.setattr(i2v.cli, "_presets", broken)
    status, err = run_cli(["presets"], capsys)
    assert status == 1
    assert err == ("error: unexpected failure (RuntimeError: something unexpected); run again with -v for the "
                   "details and report it.")


# --- what the page's controls and upload widget hand over --------------------------------------------------


@pytest.mark.parametrize("field, value, fragment", [
    ("frames", float("nan"), "whole number"),
    ("steps", "abc", "whole number"),
    ("resolution", float("inf"), "whole number"),
    ("fps", [8, 12], "whole number"),
    ("guidance", "nan", "finite number"),
    ("guidance", "1e400", "finite number"),
    ("guidance", {"x": 1}, "must be a number"),
    ("candidates", "", "empty"),
    ("seed", 1.5, "whole number"),
])
def test_form_values_refuse_what_is_not_a_usable_number(photo, field, value, fragment):
    values = {"image": str(photo), "prompt": corpus.GOOD, "negative_prompt": "", "preset": "fast-check",
              "resolution": 128, "frames": 4, "steps": 2, "guidance": 9.0, "fps": 8, "seed": -1, "candidates": 1,
              "auto_enhance": False}
    values[field] = value
    with pytest.raises(BadInputError) as error:
        to_request(FormValues(**values), "tiny")
    assert_actionable(str(error.value), [field, fragment])


@pytest.mark.parametrize("value", ["false", "0", "no", "yes", "true", 2, 1, 0, None, [True]])
def test_auto_enhance_takes_only_true_or_false(photo, value):
    """bool("false") is True: a script's "false", "0" or "no" switched enhancing on."""
    values = {"image": str(photo), "prompt": corpus.GOOD, "negative_prompt": "", "preset": "fast-check",
              "resolution": 128, "frames": 4, "steps": 2, "guidance": 9.0, "fps": 8, "seed": -1, "candidates": 1}
    with pytest.raises(BadInputError) as error:
        to_request(FormValues(**values, auto_enhance=value), "tiny")
    assert_actionable(str(error.value), ["auto_enhance must be true or false"])
    assert to_request(FormValues(**values, auto_enhance=True), "tiny").auto_enhance is True
    assert to_request(FormValues(**values, auto_enhance=False), "tiny").auto_enhance is False


def test_uploaded_image_widget_hands_the_file_over_untouched(tmp_path):
    from gradio.data_classes import ImageData

    widget = uploaded_image(label="image")
    text = write(tmp_path, "notes.png", corpus.TEXT)
    assert widget.preprocess(ImageData(path=str(text), orig_name="notes.png")) == str(text)
    deep, _ = corpus.grey16_ramp_png()
    deep_path = write(tmp_path, "deep.png", deep)
    assert widget.preprocess(ImageData(path=str(deep_path))) == str(deep_path)  # not converted to 8-bit RGB
    assert widget.preprocess(None) is None
    with pytest.raises(gr.Error, match="uploaded file"):
        widget.preprocess(ImageData(url="data:image/png;base64,AAAA"))


# --- HTTP: the /generate API through the running app -------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("hostile-api-outputs")) as running:
        yield running


@pytest.fixture(scope="module")
def api_files(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-api-files")
    for item in corpus.REFUSED:
        write(folder, item.filename, item.build())
    photo_like(160, 128).save(folder / "photo.png")
    write(folder, "page.html", b"<!doctype html><script>fetch('/gradio_api/info')</script>")
    return folder


def _refused(filename: str):
    return next(item for item in corpus.REFUSED if item.filename == filename)


API_REFUSALS = [
    pytest.param("empty.png", corpus.GOOD, {}, _refused("empty.png").fragments, id="zero-byte file"),
    pytest.param("notes.png", corpus.GOOD, {}, _refused("notes.png").fragments, id="text file named .png"),
    pytest.param("bomb.png", corpus.GOOD, {}, _refused("bomb.png").fragments, id="PNG bomb 20000x20000"),
    pytest.param("drawing.svg", corpus.GOOD, {}, _refused("drawing.svg").fragments, id="SVG"),
    pytest.param("cut.jpg", corpus.GOOD, {}, _refused("cut.jpg").fragments, id="truncated JPEG"),
    pytest.param("photo.png", "x" * 10_000, {}, ["10000 characters", "limit is 2000"], id="10 000-char prompt"),
    pytest.param("photo.png", "a boat\x00 sailing", {}, ["control character", "'\\x00'"], id="NUL in prompt"),
    pytest.param("photo.png", "waves\x1b[31m crashing", {}, ["control character", "'\\x1b'"], id="escape in prompt"),
    pytest.param("photo.png", corpus.GOOD, {"steps": -3}, ["steps -3", "out of range", "1..1000"], id="negative steps"),
    pytest.param("photo.png", corpus.GOOD, {"frames": "abc"}, ["frames", "whole number", "'abc'"],
                 id="string frames"),
    pytest.param("photo.png", corpus.GOOD, {"guidance": "nan"}, ["guidance", "finite number"], id="NaN as text"),
    pytest.param("photo.png", corpus.GOOD, {"seed": 1e30}, ["seed", "out of range"], id="seed 1e30"),
    pytest.param("photo.png", corpus.GOOD, {"preset": "ultra"}, ["ultra", "fast-check"], id="unknown preset"),
    pytest.param("page.html", corpus.GOOD, {}, ["not a supported image"], id="HTML page as the image"),
    pytest.param("photo.png", corpus.GOOD, {"auto_enhance": "false"}, ["auto_enhance must be true or false"],
                 id="auto_enhance 'false'"),
    pytest.param("photo.png", corpus.GOOD, {"auto_enhance": 2}, ["auto_enhance must be true or false"],
                 id="auto_enhance 2"),
    pytest.param("photo.png", corpus.GOOD, {"frames": 1e300}, ["frames 1e+300", "out of range"], id="frames 1e300"),
    pytest.param("photo.png", corpus.GOOD, {"seed": 1e300}, ["seed 1e+300", "out of range"], id="seed 1e300"),
    pytest.param("photo.png", corpus.GOOD, {"steps": "9" * 5000}, ["steps must be a whole number", "5000 characters"],
                 id="5000-digit steps"),
    pytest.param("photo.png", corpus.GOOD, {"frames": "x" * 5000}, ["frames must be a whole number"],
                 id="5000-character frames"),
]


@pytest.mark.parametrize("filename, prompt, changes, fragments", API_REFUSALS)
def test_api_refuses_hostile_input_with_the_engine_message(server, client, api_files, filename, prompt, changes,
                                                          fragments):
    inputs = server.app.jobs.engine.output_dir / "inputs"
    kept_before = set(inputs.iterdir()) if inputs.exists() else set()
    arguments = {"preset": "fast-check", "resolution": 128, "frames": 4, "steps": 2, **changes}
    with pytest.raises(AppError) as error:
        client.predict(handle_file(str(api_files / filename)), prompt, api_name="/generate", **arguments)
    assert_actionable(str(error.value), fragments, tmp_path=api_files)
    kept_after = set(inputs.iterdir()) if inputs.exists() else set()
    assert kept_after == kept_before, "a refused request must not keep its upload"


def _raw_generate(server, image: dict, prompt: str, guidance: float = 0) -> tuple[str, dict]:
    """POST /generate as plain JSON (a NaN literal and a lone-surrogate escape, which gradio_client refuses to
    send) and read the event stream's last event: ("complete" | "error", its data)."""
    data = [image, prompt, "", "fast-check", 128, 4, 2, guidance, 0, -1, 1, False, "", None, True,
            None]  # no last_image, no LoRAs
    body = json.dumps({"data": data})  # allow_nan and ensure_ascii: NaN and "\udcff" go out as written
    call = httpx.post(f"{server.url}gradio_api/call/generate", content=body,
                      headers={"content-type": "application/json"}, timeout=30)
    call.raise_for_status()
    with httpx.stream("GET", f"{server.url}gradio_api/call/generate/{call.json()['event_id']}", timeout=120) as s:
        stream = "".join(s.iter_text())
    events = [block for block in stream.split("\n\n") if block.startswith("event:")]
    kind, payload = events[-1].split("\n", 1)
    return kind.removeprefix("event:").strip(), json.loads(payload.removeprefix("data:").strip())


def _uploaded(server, path: Path) -> dict:
    upload = httpx.post(f"{server.url}gradio_api/upload", timeout=30,
                        files={"files": (path.name, path.read_bytes(), "image/png")})
    return {"path": upload.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def test_api_refuses_a_nan_literal_and_an_undecodable_prompt(server, api_files):
    image = _uploaded(server, api_files / "photo.png")
    kind, data = _raw_generate(server, image, corpus.GOOD, guidance=float("nan"))
    assert kind == "error"
    assert_actionable(data["error"], ["guidance must be a finite number", "nan"])

    kind, data = _raw_generate(server, image, "waves \udcff crashing")
    assert kind == "error"
    assert_actionable(data["error"], ["prompt", "not valid UTF-8"])


@pytest.mark.parametrize("case", ["image as text", "image as a number", "image not uploaded", "too few values"])
def test_api_says_what_was_wrong_in_its_own_words(server, api_files, case):
    """Gradio's and pydantic's wording (class names, object reprs, server paths) must not reach the caller."""
    data = [_uploaded(server, api_files / "photo.png"), corpus.GOOD, "", "fast-check", 128, 4, 2, 0, 0, -1, 1,
            False, "", None, True, None]
    expected = {"image as text": "uploaded file", "image as a number": "uploaded file",
                "image not uploaded": "uploaded to this app", "too few values": "takes 19 values"}[case]
    if case == "too few values":
        data = data[:3]
    else:
        data[0] = {"image as text": "hello", "image as a number": 42,
                   "image not uploaded": {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}}[case]
    call = httpx.post(f"{server.url}gradio_api/call/generate", json={"data": data}, timeout=30)
    with httpx.stream("GET", f"{server.url}gradio_api/call/generate/{call.json()['event_id']}", timeout=120) as s:
        stream = "".join(s.iter_text())
    assert "event: error" in stream, stream[:300]
    message = json.loads(stream.rsplit("data:", 1)[1])["error"]
    assert message, "the caller must be told what was wrong"
    assert_actionable(message, [expected])
    for internal in ("validation error", "pydantic", "object at 0x", "gradio.components", "/etc/", "cache dir"):
        assert internal not in message, message


def test_api_hands_16bit_grey_to_the_engine_with_its_tones(client, tmp_path):
    grey = Image.frombytes("I;16", (160, 128), np.full((128, 160), 257 * 100, dtype="<u2").tobytes())
    path = tmp_path / "grey16.png"
    grey.save(path)
    _video, files, _result = client.predict(handle_file(str(path)), corpus.GOOD, api_name="/generate",
                                            preset="fast-check", resolution=128, frames=4, steps=2)
    record = json.loads(Path(next(f for f in files if f.endswith(".json"))).read_text(encoding="utf-8"))
    assert record["input_image"]["mode"] in ("I;16", "I"), "the engine must get the 16-bit file, not an RGB copy"
    assert record["input_image"]["scores"]["mean_luminance"] == pytest.approx(100, abs=1)


def test_api_still_healthy_and_runs_an_emoji_only_prompt_afterwards(server, client, api_files):
    """Last in this module on purpose: everything above must have left the server serving."""
    health = httpx.get(f"{server.url}healthz", timeout=30).json()
    assert health["ok"] is True and health["queue"] == 0

    video, _files, result = client.predict(handle_file(str(api_files / "photo.png")), "🌊🚣‍♀️🌅",
                                           api_name="/generate", preset="fast-check", resolution=128, frames=4,
                                           steps=2)
    assert probe_mp4(Path(video))["frames"] == 4
    assert "prompt.no_action" in {w["code"] for w in result["warnings"]}


# --- property: any image a user can make loads upright in 8-bit RGB, or is refused with a message ----------

MODES = ("1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "CMYK", "I;16", "I", "F")
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
EXIF_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF")  # the formats Pillow writes an EXIF block into
# Where the file holds exactly the picture (lossless, and Pillow's writer keeps mode and transparency), the loaded
# image must equal our conversion of the upright original, pixel for pixel.
EXACT = {
    "PNG": {"1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "I;16"},
    "TIFF": {"1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"},
    "WEBP": {"1", "L", "LA", "P", "P+transparency", "RGB", "RGBA", "CMYK"},  # saved lossless
    "GIF": {"1", "L", "P", "P+transparency", "RGB"},  # at most 16 colours here: the palette holds them all
    "BMP": {"1", "L", "P", "RGB"},
}
JPEG_TOLERANCE = 12  # mean absolute brightness difference (0..255) of a quality-95 JPEG of flat blocks
PALETTE = [0, 0, 0, 255, 0, 0, 0, 160, 255, 250, 250, 240] + [0, 0, 0] * 252


def _blocks(mode: str, width: int, height: int, seed: int) -> np.ndarray:
    """A 4×4 grid of flat random blocks in the mode's value range: asymmetric, so any wrong turn shows."""
    rng = np.random.default_rng(seed)
    bands = {"LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode, 1)
    ranges = {"1": (2, np.uint8), "P": (4, np.uint8), "P+transparency": (4, np.uint8),
              "I;16": (65536, np.uint16), "I": (65536, np.int32), "F": (1000, np.float32)}
    high, dtype = ranges.get(mode, (256, np.uint8))
    cells = rng.integers(0, high, (4, 4, bands)).astype(dtype)
    rows = np.minimum(np.arange(height) * 4 // height, 3)
    cols = np.minimum(np.arange(width) * 4 // width, 3)
    grid = cells[rows][:, cols]
    return (grid / 7).astype(np.float32) if mode == "F" else grid


def _image(mode: str, array: np.ndarray) -> Image.Image:
    height, width = array.shape[:2]
    if mode == "1":
        return Image.frombytes("L", (width, height), (array * 255).astype(np.uint8).tobytes()).convert("1")
    if mode.startswith("P"):
        image = Image.frombytes("P", (width, height), array.astype(np.uint8).tobytes())
        image.putpalette(PALETTE)
        if mode == "P+transparency":
            image.info["transparency"] = 1
        return image
    raw = {"I;16": "<u2", "I": "<i4", "F": "<f4"}.get(mode)
    data = array.astype(raw).tobytes() if raw else array.astype(np.uint8).tobytes()
    return Image.frombytes(mode, (width, height), data)


def _saved(image: Image.Image, fmt: str, mode: str, orientation: int) -> bytes | None:
    params: dict[str, object] = {}
    if orientation != 1:
        params["exif"] = corpus.exif_with_orientation(orientation)
    if fmt == "WEBP":
        params["lossless"] = True
    if fmt == "JPEG":
        params["quality"] = 95
    if mode == "P+transparency" and fmt in ("PNG", "GIF"):
        params["transparency"] = 1
    try:
        return corpus.encode(image, fmt, **params)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # Pillow cannot write this mode in this format: nothing for a user to upload either


SAVABLE = [(fmt, mode) for fmt in FORMATS for mode in MODES
           if not (fmt == "PNG" and mode == "I")  # Pillow deprecates writing 32-bit PNGs; TIFF covers "I"
           and _saved(_image(mode, _blocks(mode, 4, 4, 0)), fmt, mode, 1) is not None]
PROPERTY_EXAMPLES = int(os.environ.get("I2V_PROPERTY_EXAMPLES", "60"))


@st.composite
def user_images(draw: st.DrawFn):
    fmt, mode = draw(st.sampled_from(SAVABLE))
    shape = draw(st.sampled_from(["any", "wide strip", "tall strip"]))  # extreme aspect ratios, up to 600:1
    long_side, short_side = draw(st.integers(1, 600)), draw(st.integers(1, 8))
    width, height = {"any": (long_side, draw(st.integers(1, 600))), "wide strip": (long_side, short_side),
                     "tall strip": (short_side, long_side)}[shape]
    orientation = draw(st.sampled_from(range(1, 9))) if fmt in EXIF_FORMATS else 1
    return fmt, mode, (width, height), orientation, draw(st.integers(0, 2**32 - 1))


def every_savable_combination(test):
    """One explicit example per (format, mode) on top of the random ones, so no combination is left to chance:
    an odd size, and a side-swapping orientation wherever the format carries EXIF."""
    for index, (fmt, mode) in enumerate(SAVABLE):
        orientation = 5 + index % 4 if fmt in EXIF_FORMATS else 1
        test = example((fmt, mode, (37 + index, 3 + index % 5), orientation, index))(test)
    return test


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(user_images())
@every_savable_combination
def test_any_image_loads_upright_in_8bit_rgb_or_is_refused_with_a_message(case):
    fmt, mode, (width, height), orientation, seed = case
    event(f"{fmt} {mode}")
    event("EXIF orientation 1" if orientation == 1 else "EXIF orientation 2-4" if orientation < 5 else
          "EXIF orientation 5-8 (sides swapped)")
    event("a side of 1..8 px" if min(width, height) <= 8 else "both sides over 8 px")
    event("a side over 300 px" if max(width, height) > 300 else "both sides 300 px or less")
    upright = _blocks(mode, width, height, seed)
    stored = _as_stored_for_orientation(upright[..., None] if upright.ndim == 2 else upright, orientation)
    stored = stored[..., 0] if upright.ndim == 2 else stored
    data = _saved(_image(mode, stored), fmt, mode, orientation)
    assert data is not None

    try:
        loaded = load_image(data)
    except BadInputError as error:  # allowed by the contract, but a complete file Pillow wrote should not need it
        assert str(error).strip()
        pytest.fail(f"{fmt} {mode} {width}×{height} o{orientation} was refused: {error}")
    except Exception as error:  # noqa: BLE001 - the property: nothing but BadInputError may escape
        pytest.fail(f"{fmt} {mode} {width}×{height} o{orientation} raised {type(error).__name__}: {error}")

    assert loaded.image.mode == "RGB" and np.asarray(loaded.image).dtype == np.uint8
    assert loaded.image.size == (width, height), "EXIF orientation must be applied (sides swapped for 5..8)"
    assert loaded.source_size == (width, height)
    expected = load_image(_image(mode, upright)).image
    if mode in EXACT.get(fmt, ()):
        assert np.array_equal(np.asarray(loaded.image), np.asarray(expected)), f"{fmt} {mode} o{orientation}"
    elif fmt == "JPEG":  # lossy, and colour is subsampled: compare brightness
        got, want = (np.asarray(image.convert("L"), dtype=np.int16) for image in (loaded.image, expected))
        assert np.abs(got - want).mean() <= JPEG_TOLERANCE, f"JPEG {mode} o{orientation}: not the upright picture"

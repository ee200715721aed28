"""The image warnings on real photographs, with real defects made the way cameras make them.

The photographs are scikit-image's bundled sample pictures (``skimage.data``, shipped inside the wheel pinned in
requirements-dev.txt; nothing is downloaded). Motion blur is a linear kernel and defocus a disk kernel, applied
to those photos; the clock is a photograph that was really taken while the camera moved. The screenshot is this
project's README as headless Chromium shows it.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from i2v.guidance.image_quality import assess_image

from web_support import CHROMIUM, CHROMIUM_FLAGS

REPO = Path(__file__).resolve().parents[1]

# Ordinary, good photographs: portraits, a cat, a street, objects, textures, a grey camera shot, the moon's
# surface. None of them may get a warning.
GOOD_PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "coins", "moon", "brick", "grass", "gravel")
# Colour photos with clear edges and texture, to be blurred.
TO_BLUR = ("astronaut", "coffee", "chelsea", "rocket", "camera")


def photo(name: str) -> Image.Image:
    """A skimage.data picture as the app receives it: 8-bit RGB, transparency flattened on white."""
    image = Image.fromarray(getattr(skimage.data, name)())
    if image.mode == "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)
    return image.convert("RGB")


def convolve(image: Image.Image, kernel: np.ndarray) -> Image.Image:
    """``image`` convolved with ``kernel`` (normalised here), edges repeated, as a lens or a moving camera does."""
    kernel = kernel / kernel.sum()
    pixels = np.asarray(image, np.float32)
    half_y, half_x = kernel.shape[0] // 2, kernel.shape[1] // 2
    padded = np.pad(pixels, ((half_y, half_y), (half_x, half_x), (0, 0)), mode="edge")
    out = np.zeros_like(pixels)
    for dy, dx in zip(*np.nonzero(kernel)):
        out += kernel[dy, dx] * padded[dy:dy + pixels.shape[0], dx:dx + pixels.shape[1]]
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def motion_kernel(length: int, degrees: float) -> np.ndarray:
    """A straight smear ``length`` px long at ``degrees``: the camera moved while the shutter was open."""
    kernel = np.zeros((length, length), np.float32)
    centre = (length - 1) / 2
    for t in np.linspace(-centre, centre, 4 * length):
        x = round(centre + t * np.cos(np.radians(degrees)))
        y = round(centre - t * np.sin(np.radians(degrees)))
        kernel[y, x] = 1.0
    return kernel


def disk_kernel(radius: int) -> np.ndarray:
    """A lens out of focus spreads each point over a disk."""
    y, x = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.float32)


def in_linear_light(image: Image.Image, exposure: float) -> Image.Image:
    """``image`` as if taken with ``exposure`` times the light (sRGB-ish gamma 2.2), like a darker shot."""
    linear = (np.asarray(image, np.float32) / 255) ** 2.2 * exposure
    return Image.fromarray(np.clip(np.rint(255 * linear ** (1 / 2.2)), 0, 255).astype(np.uint8))


def codes(image: Image.Image) -> set[str]:
    return {finding.code for finding in assess_image(image)[1]}


def messages(image: Image.Image) -> str:
    return " ".join(finding.message for finding in assess_image(image)[1])


# --- no false alarms -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_PHOTOS)
def test_ordinary_good_photos_get_no_warning(name: str) -> None:
    assert codes(photo(name)) == set()


# --- blur ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TO_BLUR)
@pytest.mark.parametrize("length, degrees", [(25, 0), (15, 30), (21, 90)], ids=["25px-0deg", "15px-30deg",
                                                                              "21px-90deg"])
def test_motion_blurred_photo_is_called_motion_blurred_not_a_cartoon(name: str, length: int, degrees: float) -> None:
    blurred = convolve(photo(name), motion_kernel(length, degrees))
    found = codes(blurred)
    assert "image.blurry" in found and "image.flat_cartoon" not in found
    assert "motion-blurred" in messages(blurred)


def test_a_photo_taken_while_the_camera_moved_is_blurry() -> None:
    found = codes(photo("clock"))
    assert "image.blurry" in found and "image.flat_cartoon" not in found
    assert "motion-blurred" in messages(photo("clock"))


@pytest.mark.parametrize("name", TO_BLUR)
@pytest.mark.parametrize("radius", [3, 6])
def test_defocused_photo_is_called_out_of_focus(name: str, radius: int) -> None:
    blurred = convolve(photo(name), disk_kernel(radius))
    found = codes(blurred)
    assert "image.blurry" in found and "image.flat_cartoon" not in found
    assert "out of focus" in messages(blurred)


# --- text, logos, screenshots --------------------------------------------------------------------------------


def test_scanned_page_of_text_is_called_text() -> None:
    found = codes(photo("page"))  # a scan with light falling off across it: no single background colour
    assert "image.text_or_diagram" in found
    assert not found & {"image.blurry", "image.flat_cartoon", "image.overexposed"}


def test_page_scanned_at_a_larger_size_is_still_text() -> None:
    page = photo("page")
    larger = page.resize((page.width * 3, page.height * 3), Image.LANCZOS)
    assert codes(larger) == {"image.text_or_diagram"}  # large enough now: only the content is the problem


def test_logo_is_called_a_graphic_not_a_blurry_photo() -> None:
    found = codes(photo("logo"))
    assert found & {"image.flat_cartoon", "image.text_or_diagram"}
    assert "image.blurry" not in found


@pytest.fixture(scope="module")
def readme_screenshot(tmp_path_factory) -> Image.Image:
    """This project's README rendered by headless Chromium at 1280×800, as a browser window shows it."""
    if os.environ.get("I2V_REQUIRE_BROWSER") != "1" and not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    from markdown_it import MarkdownIt  # comes with gradio

    body = MarkdownIt("commonmark").enable("table").render((REPO / "README.md").read_text(encoding="utf-8"))
    page_file = tmp_path_factory.mktemp("screenshot") / "readme.html"
    page_file.write_text(f'<html><head><base href="{REPO.as_uri()}/"></head><body style="font-family: sans-serif; '
                         f'max-width: 900px; margin: 24px auto">{body}</body></html>', encoding="utf-8")
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 800})
            tab.goto(page_file.as_uri())
            png = tab.screenshot()
        finally:
            browser.close()
    return Image.open(io.BytesIO(png)).convert("RGB")


def test_screenshot_of_a_page_is_text_and_not_overexposed(readme_screenshot: Image.Image) -> None:
    found = codes(readme_screenshot)
    assert "image.text_or_diagram" in found
    assert not found & {"image.overexposed", "image.blurry", "image.flat_cartoon"}


# --- dark scenes ---------------------------------------------------------------------------------------------


def test_space_photo_is_not_told_to_brighten() -> None:
    deep_field = photo("hubble_deep_field")  # mean brightness about 19 of 255: dark because space is
    assert "image.underexposed" not in codes(deep_field)
    assert "Brighten" not in " ".join(finding.hint for finding in assess_image(deep_field)[1])


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("exposure", [0.03, 0.1])
def test_underexposed_photo_is_still_told_to_brighten(name: str, exposure: float) -> None:
    # The same photos taken with 1/33 and 1/10 of the light: even their brightest spots are dim.
    found = codes(in_linear_light(photo(name), exposure))
    assert "image.underexposed" in found
    assert not found & {"image.blurry", "image.flat_cartoon"}  # squeezed tones are an exposure problem

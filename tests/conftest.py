"""Shared fixtures. The tiny model is built once per test session into a private cache folder, then loaded
through the same folder loader as a real model."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory):
    """No test reads or writes the user's caches, and none may reach the network for weights."""
    cache = tmp_path_factory.mktemp("i2v-cache")
    previous = {k: os.environ.get(k) for k in ("I2V_CACHE_DIR", "HF_HUB_OFFLINE", "I2V_OUTPUT_DIR")}
    os.environ["I2V_CACHE_DIR"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["I2V_OUTPUT_DIR"] = str(tmp_path_factory.mktemp("default-outputs"))
    yield
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A sharp, well-exposed, colourful test picture: gradients, shapes and fine texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    r = 60 + 120 * x / max(width - 1, 1)
    g = 60 + 120 * y / max(height - 1, 1)
    b = 90 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)
    image = np.stack([r, g, b], axis=-1) + rng.normal(0, 18, (height, width, 3))
    cx, cy, radius = width * 0.6, height * 0.45, min(width, height) * 0.2
    disc = (x - cx) ** 2 + (y - cy) ** 2 < radius**2
    image[disc] = [220, 200, 40]
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


@pytest.fixture(scope="session")
def shared_photo_path(tmp_path_factory) -> Path:
    """The same picture as ``photo_path``, written once for the module-scoped engines that reuse a loaded model."""
    path = tmp_path_factory.mktemp("shared-photo") / "input.png"
    photo_like(320, 256).save(path)
    return path


@pytest.fixture
def photo_path(tmp_path) -> Path:
    path = tmp_path / "input.png"
    photo_like(320, 256).save(path)
    return path


@pytest.fixture(scope="module")
def client(server):
    """A gradio_client for the module's own ``server`` fixture (the app that module runs)."""
    from gradio_client import Client

    client = Client(server.url, verbose=False)
    yield client
    client.close()


@pytest.fixture
def forbid_decoding(monkeypatch):
    """Fail loudly if anything decodes pixel data: size checks must come first."""
    from PIL import ImageFile

    def refuse_to_load(self) -> None:
        raise AssertionError("pixel data was decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_load)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through Playwright, one per test module. Under ``I2V_REQUIRE_BROWSER=1`` (``.ci/run``)
    a missing browser or Playwright fails the test instead of skipping it."""
    from web_support import CHROMIUM, CHROMIUM_FLAGS, playwright_or_skip

    playwright_api = playwright_or_skip()
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as pw:
        # Playwright gives every launch a fresh temporary profile (it refuses --user-data-dir here).
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()

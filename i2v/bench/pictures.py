"""The bench's input picture: a seeded synthetic photo-like gradient with texture and noise (no file to ship)."""
from __future__ import annotations

import numpy as np


def synthetic_image(width: int = 640, height: int = 480):
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    picture = np.stack([60 + 120 * x / width, 60 + 120 * y / height, 90 + 60 * np.sin(x / 9) * np.cos(y / 7)], -1)
    picture += rng.normal(0, 12, picture.shape)
    return Image.fromarray(np.clip(picture, 0, 255).astype(np.uint8))

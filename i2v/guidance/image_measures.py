"""Pixel measures behind the image warnings, taken on a copy downscaled to 512 px (numpy and Pillow only).

:mod:`i2v.guidance.image_quality` turns these figures into warnings; the thresholds and the pictures they were
tuned on are documented there.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

# Directions the blur ratio is taken in: across, down and both diagonals, so a smear at any angle has a
# direction close to its own (within 22.5°).
_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))
BLUR_STEP = 4  # the coarse step of the blur ratio, in pixels of the 512 px copy
# A coarse difference this large is real structure (an edge, a texture), not sensor noise. Measuring the ratio
# only there keeps the noise of flat areas (a plain wall) from making a blurred photo look sharp.
STRUCTURE_DIFFERENCE = 16.0
MIN_STRUCTURE_FRACTION = 0.002  # below this there is too little structure to judge sharpness by
STROKE_WIDTH = 7  # pen strokes and printed letters are thinner than this at 512 px; photo shapes rarely are
STROKE_DEPTH = 40.0  # a stroke is at least this much darker than the paper around it


def downscaled_rgb(image: Image.Image, long_side_limit: int) -> Image.Image:
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    long_side = max(rgb.size)
    if long_side <= long_side_limit:
        return rgb
    scale = long_side_limit / long_side
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    # reducing_gap first shrinks by an integer factor (fast), then finishes with a proper filter.
    return rgb.resize(size, Image.BILINEAR, reducing_gap=2.0)


def quantised_colour_counts(pixels: np.ndarray, levels_per_channel: int) -> np.ndarray:
    """How many pixels have each colour once every channel is cut to ``levels_per_channel`` levels."""
    levels = (pixels // (256 // levels_per_channel)).astype(np.int32)
    codes = (levels[..., 0] * levels_per_channel + levels[..., 1]) * levels_per_channel + levels[..., 2]
    return np.bincount(codes.ravel(), minlength=levels_per_channel**3)


def code_luminance(code: int, levels_per_channel: int) -> float:
    """The luminance of a quantised colour (an index into ``quantised_colour_counts``), at its bucket's centre."""
    step = 256 // levels_per_channel
    red, rest = divmod(code, levels_per_channel * levels_per_channel)
    green, blue = divmod(rest, levels_per_channel)
    centre = np.array([red, green, blue], dtype=np.float64) * step + step / 2
    return float(centre @ np.array([0.299, 0.587, 0.114]))


def gradient_magnitude(luminance: np.ndarray) -> np.ndarray:
    """Largest absolute difference to the right or lower neighbour, per pixel."""
    across = np.abs(np.diff(luminance, axis=1))[:-1, :]
    down = np.abs(np.diff(luminance, axis=0))[:, :-1]
    return np.maximum(across, down)


def laplacian(luminance: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian of the interior pixels (empty for images under 3 px on a side)."""
    if luminance.shape[0] < 3 or luminance.shape[1] < 3:
        return np.zeros((0, 0), dtype=luminance.dtype)
    centre = luminance[1:-1, 1:-1]
    return luminance[:-2, 1:-1] + luminance[2:, 1:-1] + luminance[1:-1, :-2] + luminance[1:-1, 2:] - 4.0 * centre


def directional_blur_ratios(luminance: np.ndarray) -> list[float] | None:
    """Per direction, the energy of 1-pixel differences over that of ``BLUR_STEP``-pixel differences, where
    there is structure. None when the picture has too little structure (or is too small) to tell.

    A sharp edge changes within a pixel, so the two differences are alike (ratio 0.1-0.5 on real photos); an edge
    smeared over L pixels changes 1/L per pixel (ratio near 1/16 once L ≥ 4). Unlike the Laplacian's variance the
    ratio does not depend on contrast, and taking it per direction finds motion blur, which smears one direction
    and leaves the others sharp."""
    margin = BLUR_STEP
    height, width = luminance.shape
    if height <= 2 * margin + 1 or width <= 2 * margin + 1:
        return None
    inner = luminance[margin:height - margin, margin:width - margin]
    ratios = []
    for down, across in _DIRECTIONS:
        fine = _shifted(luminance, down, across, 1, margin) - inner
        coarse = _shifted(luminance, down, across, BLUR_STEP, margin) - inner
        structure = np.abs(coarse) >= STRUCTURE_DIFFERENCE
        if np.count_nonzero(structure) < MIN_STRUCTURE_FRACTION * structure.size:
            return None
        # Multiplying by the mask is several times faster than indexing with it.
        weight = structure.astype(np.float32)
        ratios.append(float(np.vdot(fine * weight, fine) / np.vdot(coarse * weight, coarse)))
    return ratios


def _shifted(luminance: np.ndarray, down: int, across: int, step: int, margin: int) -> np.ndarray:
    height, width = luminance.shape
    top, left = margin + down * step, margin + across * step
    return luminance[top:height - 2 * margin + top, left:width - 2 * margin + left]


def dark_strokes(luminance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stroke mask, paper): pixels much darker than the paper around them, and the paper itself.

    The paper is the morphological closing (a local maximum, then a local minimum, over ``STROKE_WIDTH``): it
    erases dark marks thinner than the window, pen and print, and keeps dark areas that are wider, a coat or a
    shadow. Taken locally, it follows the uneven light of a scan or a photographed page."""
    grey = np.clip(luminance, 0, 255).astype(np.uint8)  # a quarter of the memory traffic of float32
    paper = _sliding(_sliding(grey, STROKE_WIDTH, np.maximum), STROKE_WIDTH, np.minimum).astype(np.float32)
    return paper - luminance >= STROKE_DEPTH, paper


def _sliding(values: np.ndarray, size: int, pick) -> np.ndarray:
    """``pick`` (np.maximum or np.minimum) over a size × size window, edges repeated; separable, so fast."""
    half = size // 2
    height, width = values.shape
    rows = np.pad(values, ((half, half), (0, 0)), mode="edge")
    down = rows[:height]
    for offset in range(1, size):
        down = pick(down, rows[offset:offset + height])
    columns = np.pad(down, ((0, 0), (half, half)), mode="edge")
    result = columns[:, :width]
    for offset in range(1, size):
        result = pick(result, columns[:, offset:offset + width])
    return result


def colour_spread(pixels: np.ndarray) -> float:
    """Mean difference between each pixel's strongest and weakest channel: about 0 for a grey picture."""
    if pixels.size == 0:
        return 0.0
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]  # uint8: max - min cannot wrap
    strongest = np.maximum(np.maximum(red, green), blue)
    weakest = np.minimum(np.minimum(red, green), blue)
    return float((strongest - weakest).mean())

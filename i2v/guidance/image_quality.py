"""Score the input picture and warn, with reasons, about what tends to give a poor video.

All measures are taken on a copy downscaled so its long side is at most 512 px: the figures are
then comparable across input sizes (and close to the resolution the models actually see), and
scoring a large photo stays well under 50 ms. Only numpy and Pillow are used.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from i2v.findings import Finding
from i2v.guidance.image_measures import (
    code_luminance,
    colour_spread,
    dark_strokes,
    directional_blur_ratios,
    downscaled_rgb,
    gradient_magnitude,
    laplacian,
    quantised_colour_counts,
)

logger = logging.getLogger(__name__)

ANALYSIS_LONG_SIDE = 512

DARK_LEVEL = 10  # luminance at or below this counts as crushed to black
BRIGHT_LEVEL = 245  # luminance at or above this counts as blown to white
FLAT_GRADIENT = 2.0  # a neighbour difference this small (0..255 scale) is "no change": flat area
EDGE_GRADIENT = 48.0  # a neighbour difference this large is a hard edge (text strokes, outlines)
COLOUR_LEVELS = 32  # quantisation per channel before counting colours, so noise does not add colours

MIN_SHORT_SIDE = 256
MAX_UPSCALE = 1.5

# Blur: variance of the Laplacian (4-neighbour kernel, 0..255 grey, long side 512). On generated
# photo-like pictures at 768 px the sharp original scores about 260, after a Gaussian blur of
# radius 2 about 3 and of radius 4 about 1; a barely visible radius-1 blur still scores about 25.
# In-focus camera photos at this size usually score in the hundreds. 20 sits between "slightly
# soft" and "clearly blurred", so soft-but-usable pictures are not nagged about.
BLURRY_SHARPNESS = 20.0
# The same measure over the non-flat pixels only. A crisp subject on a plain background or a flat
# cartoon scores low overall (few edges, averaged with the empty areas) but high here (≈700-1600
# in the generated tests, versus ≈7 for a blurred subject), so both must be low to call it blurry.
BLURRY_DETAIL_SHARPNESS = 40.0
# The Laplacian figures depend on contrast and miss motion blur, which leaves edges across the smear sharp: a
# real photo (skimage's astronaut, coffee, camera) smeared by a 25 px linear motion kernel still scores 20-36
# overall and 40-90 on detail. So blur is also judged by the directional blur ratio (image_measures), which does
# not depend on contrast: in focus, real photos score 0.11-0.26 in their worst direction (a brick wall and a
# fundus photo lowest); after a 15-25 px motion kernel or a 3-6 px defocus disk 0.06-0.07, and skimage's
# genuinely motion-blurred clock photo 0.07.
BLURRY_RATIO = 0.08
# Motion blur smears one direction: on those photos smeared 15-25 px at 0°, 30° or 90° the best direction keeps
# 1.35-3.2× the ratio of the worst (the real clock photo 1.9×); a defocus disk, the same in every direction, at most
# 1.2×.
MOTION_ANISOTROPY = 1.3

# Exposure: a clipped histogram together with a dark (bright) mean, or a very dark (bright) mean.
CLIPPED_FRACTION = 0.30
UNDEREXPOSED_MEAN = 60.0
OVEREXPOSED_MEAN = 195.0
VERY_DARK_MEAN = 35.0
VERY_BRIGHT_MEAN = 225.0
# Mean luminance of the pixels that are not clipped. A well lit subject on a black (or white)
# background has a normal mid-tone mean; a whole picture that is too dark (or too bright) does not.
DIM_SUBJECT_MEAN = 80.0
# A dark picture whose brightest spots still reach this (99.9th percentile) is dark by nature, a night sky or a
# space photo (Hubble's deep field: mean 19, highlights 226), not by exposure: brightening would only lift the
# noise. An underexposed photo has dim highlights too (a real photo at 15 % exposure: about 38).
HIGHLIGHT_PERCENTILE = 99.9
NIGHT_HIGHLIGHT_LEVEL = 150.0
# ... and a picture whose brightest spots stay this dim is underexposed even when its mean is not very low: real
# photos at 1/10 of their exposure have highlights at 67-90 and means of 36-42, short of VERY_DARK_MEAN.
DIM_HIGHLIGHT_LEVEL = 100.0
WASHED_OUT_SUBJECT_MEAN = 175.0

EXTREME_ASPECT = 2.5
BLACK_BACKGROUND_FRACTION = 0.50

# Text, charts and diagrams: one near-uniform light or dark colour fills most of the picture, few
# colours are used, and there are many hard edges (strokes, lines). Generated black-on-white text
# and box diagrams have 6-16 % hard-edge pixels and ~32 colours; photo-like and cartoon test
# pictures 0.1-2 %.
DIAGRAM_BACKGROUND_FRACTION = 0.50
DIAGRAM_MAX_COLOURS = 600
DIAGRAM_MIN_EDGE_FRACTION = 0.03
LIGHT_BACKGROUND_LUMINANCE = 200.0
DARK_BACKGROUND_LUMINANCE = 50.0
# A scanned or photographed page has no single background colour (the light falls off across it), so it is also
# recognised by its strokes: thin dark marks on lighter paper (image_measures.dark_strokes). On skimage's scanned
# page 14 % of pixels are strokes, 21 % of the pixels that are not flat, and 81 % of the paper is flat; real
# photos with as many thin dark lines (cameraman, coins: 5-6 %) have them among much other detail (8-11 %), and
# grass and gravel, whose strokes are most of their detail, have no flat paper between them (50-53 %).
PAGE_MIN_STROKE_FRACTION = 0.04
PAGE_MIN_STROKE_SHARE = 0.15
PAGE_MIN_PAPER_SMOOTHNESS = 0.70

# Flat cartoon / anime: mostly flat areas and a small palette. Sharp photos have 10-15 % flat
# pixels and 10 000+ quantised colours; a flat-shaded drawing ~98 % flat and 100-800 colours
# (JPEG noise adds colours, hence the generous cap). Blurred photos are flat too, but keep
# thousands of colours.
CARTOON_FLAT_FRACTION = 0.60
CARTOON_MAX_COLOURS = 1500
CARTOON_MIN_COLOURS = 3
# A grey photo has at most 32 quantised colours whatever it shows, so the palette says nothing about it: grey
# pictures (channels within this of each other on average) are not judged as cartoons. A flat-shaded drawing
# changes abruptly or not at all; a photo's smooth areas (the moon's surface, a fundus, a sky) change gently.
# Share of gently changing pixels: drawings under 5 %, a logo with airbrushed shading 15 %, real photos with large
# smooth areas 26-31 %.
GREY_COLOUR_SPREAD = 4.0
SOFT_GRADIENT = 12.0
CARTOON_MAX_SOFT_FRACTION = 0.20


@dataclass(frozen=True)
class ImageScores:
    """What was measured. All but width/height are taken on the copy downscaled to 512 px."""

    width: int  # of the image as given
    height: int
    sharpness: float  # variance of the Laplacian of the grey image, 0..255 scale
    dark_fraction: float  # share of pixels with luminance <= DARK_LEVEL
    bright_fraction: float  # share of pixels with luminance >= BRIGHT_LEVEL
    mean_luminance: float  # 0..255
    aspect_ratio: float  # long side / short side
    flat_fraction: float  # share of pixels whose gradient is <= FLAT_GRADIENT
    distinct_colours: int  # after quantising each channel to COLOUR_LEVELS levels

    def to_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass(frozen=True)
class _Extras:
    """Measures the warnings need but that are not part of the public scores."""

    detail_sharpness: float  # Laplacian variance over the pixels that are not flat
    unclipped_dark_mean: float  # mean luminance of pixels above DARK_LEVEL
    unclipped_bright_mean: float  # mean luminance of pixels below BRIGHT_LEVEL
    background_fraction: float  # share of pixels in the most common quantised colour
    background_luminance: float
    edge_fraction: float
    blur_ratios: list[float] | None  # per direction; see image_measures.directional_blur_ratios
    stroke_fraction: float  # share of pixels that are thin dark strokes on lighter paper (print, handwriting)
    stroke_share_of_detail: float  # the strokes' share of the pixels that are not flat
    paper_smoothness: float  # share of the paper (strokes erased) that is flat
    highlight_level: float  # the 99.9th percentile of luminance: what the brightest spots reach
    colour_spread: float  # mean max-min channel difference; about 0 for a grey picture
    soft_fraction: float  # share of pixels with a gentle gradient: shading, a smooth sky, blur


def score_image(image: Image.Image) -> ImageScores:
    """Measure ``image``; see :class:`ImageScores` for what each figure means."""
    return _measure(image)[0]


def assess_image(
    image: Image.Image, target_size: tuple[int, int] | None = None
) -> tuple[ImageScores, list[Finding]]:
    """Score ``image`` and return the warnings that apply, each with its reason and a hint."""
    scores, extras = _measure(image)
    is_diagram = _looks_like_diagram(scores, extras) or _looks_like_page(extras)
    # A white page (a screenshot, a scan) is a page, not an overexposed photo.
    exposure = [] if is_diagram else [_underexposed(scores, extras), _overexposed(scores, extras)]
    badly_exposed = any(finding is not None for finding in exposure)
    # Under- or overexposure squeezes the tones together, which lowers every contrast-based
    # measure: blur and flatness would then be reported for what is really an exposure problem.
    blurry = None if badly_exposed else _blurry(scores, extras)
    checks = [
        _too_small(scores, target_size),
        blurry,
        *exposure,
        _extreme_aspect(scores),
        _text_or_diagram(scores, extras, is_diagram),
        _black_background(scores),
        # Blur flattens a photo too: a blurred photo is a blurred photo, not a cartoon.
        None if badly_exposed or blurry else _flat_cartoon(scores, extras, is_diagram),
    ]
    findings = [finding for finding in checks if finding is not None]
    logger.debug("image assessed: %s -> %s", scores, [finding.code for finding in findings])
    return scores, findings


# --- measuring ------------------------------------------------------------------------------


def _measure(image: Image.Image) -> tuple[ImageScores, _Extras]:
    width, height = image.size
    rgb = downscaled_rgb(image, ANALYSIS_LONG_SIDE)
    pixels = np.asarray(rgb, dtype=np.float32)
    luminance = pixels @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    gradient = gradient_magnitude(luminance)
    second_difference = laplacian(luminance)
    colour_counts = quantised_colour_counts(np.asarray(rgb), COLOUR_LEVELS)
    background_code = int(np.argmax(colour_counts))

    dark = luminance <= DARK_LEVEL
    bright = luminance >= BRIGHT_LEVEL
    scores = ImageScores(
        width=width,
        height=height,
        sharpness=float(second_difference.var()) if second_difference.size else 0.0,
        dark_fraction=float(dark.mean()),
        bright_fraction=float(bright.mean()),
        mean_luminance=float(luminance.mean()),
        aspect_ratio=max(width, height) / max(1, min(width, height)),
        flat_fraction=_fraction(gradient <= FLAT_GRADIENT, empty=1.0),
        distinct_colours=int(np.count_nonzero(colour_counts)),
    )
    extras = _Extras(
        detail_sharpness=_detail_sharpness(second_difference, gradient),
        unclipped_dark_mean=_mean(luminance[~dark]),
        unclipped_bright_mean=_mean(luminance[~bright]),
        background_fraction=float(colour_counts[background_code] / luminance.size),
        background_luminance=code_luminance(background_code, COLOUR_LEVELS),
        edge_fraction=_fraction(gradient >= EDGE_GRADIENT, empty=0.0),
        blur_ratios=directional_blur_ratios(luminance),
        **_stroke_measures(luminance, gradient),
        highlight_level=float(np.percentile(luminance, HIGHLIGHT_PERCENTILE)) if luminance.size else 0.0,
        colour_spread=colour_spread(np.asarray(rgb)),
        soft_fraction=_fraction((gradient > FLAT_GRADIENT) & (gradient < SOFT_GRADIENT), empty=0.0),
    )
    return scores, extras


def _stroke_measures(luminance: np.ndarray, gradient: np.ndarray) -> dict[str, float]:
    if luminance.size == 0:
        return {"stroke_fraction": 0.0, "stroke_share_of_detail": 0.0, "paper_smoothness": 0.0}
    strokes, paper = dark_strokes(luminance)
    stroke_fraction = float(strokes.mean())
    detail = 1.0 - _fraction(gradient <= FLAT_GRADIENT, empty=1.0)
    paper_gradient = gradient_magnitude(paper)
    return {
        "stroke_fraction": stroke_fraction,
        "stroke_share_of_detail": stroke_fraction / detail if detail > 0 else 0.0,
        "paper_smoothness": _fraction(paper_gradient <= FLAT_GRADIENT, empty=1.0),
    }


def _detail_sharpness(second_difference: np.ndarray, gradient: np.ndarray) -> float:
    if second_difference.size == 0:
        return 0.0
    # gradient[1:, 1:] lines up with the Laplacian's interior pixels.
    detail = second_difference[gradient[1:, 1:] > FLAT_GRADIENT]
    return float(detail.var()) if detail.size else 0.0


def _fraction(mask: np.ndarray, *, empty: float) -> float:
    return float(mask.mean()) if mask.size else empty


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else 0.0


# --- warnings -------------------------------------------------------------------------------


def _too_small(scores: ImageScores, target_size: tuple[int, int] | None) -> Finding | None:
    short_side = min(scores.width, scores.height)
    size = f"{scores.width}×{scores.height} px"
    if short_side < MIN_SHORT_SIDE:
        return Finding(
            "image.too_small",
            f"The image is only {size} (short side {short_side} px, below {MIN_SHORT_SIDE} px); "
            "the video will look soft and blocky.",
            "Use a larger image, at least as large as the video.",
        )
    if target_size is None:
        return None
    target_width, target_height = target_size
    upscale = max(target_width / scores.width, target_height / scores.height)
    if upscale > MAX_UPSCALE:
        return Finding(
            "image.too_small",
            f"The image is {size} but must be enlarged {upscale:.1f}× to cover the "
            f"{target_width}×{target_height} video; it will look soft.",
            "Use a larger image, or choose a smaller video size.",
        )
    return None


def _blurry(scores: ImageScores, extras: _Extras) -> Finding | None:
    ratios = extras.blur_ratios
    if ratios is not None and min(ratios) < BLURRY_RATIO:
        worst, best = min(ratios), max(ratios)
        if best >= MOTION_ANISOTROPY * worst:
            return Finding(
                "image.blurry",
                f"The image looks motion-blurred: smeared in one direction (edge sharpness {worst:.2f} along the "
                f"smear, {best:.2f} across it; in-focus photos score {BLURRY_RATIO:.2f} or more). "
                "Image-to-video models turn blur into jittery or smeared motion.",
                "Use a sharper image: one taken with a faster shutter or a steadier camera.",
            )
        return Finding(
            "image.blurry",
            f"The image looks out of focus (edge sharpness {worst:.2f}; in-focus photos score "
            f"{BLURRY_RATIO:.2f} or more); image-to-video models turn blur into jittery or smeared motion.",
            "Use a sharper, in-focus image.",
        )
    # Both figures must be low: a crisp subject on a plain background, or a flat cartoon, has a low
    # overall figure only because its few edges are averaged with the empty areas.
    if scores.sharpness >= BLURRY_SHARPNESS or extras.detail_sharpness >= BLURRY_DETAIL_SHARPNESS:
        return None
    return Finding(
        "image.blurry",
        f"The image looks blurry (sharpness {scores.sharpness:.1f}, below {BLURRY_SHARPNESS:.0f}); "
        "image-to-video models turn blur into jittery or smeared motion.",
        "Use a sharper, in-focus image.",
    )


def _underexposed(scores: ImageScores, extras: _Extras) -> Finding | None:
    crushed = scores.dark_fraction > CLIPPED_FRACTION and scores.mean_luminance < UNDEREXPOSED_MEAN
    dim_highlights = extras.highlight_level < DIM_HIGHLIGHT_LEVEL and scores.mean_luminance < UNDEREXPOSED_MEAN
    if not (crushed or dim_highlights or scores.mean_luminance < VERY_DARK_MEAN):
        return None
    # A well lit subject on a black background is a black background, not an underexposed photo.
    if extras.unclipped_dark_mean >= DIM_SUBJECT_MEAN:
        return None
    # Bright highlights in a dark picture: a night sky or a space photo, dark because the scene is.
    if extras.highlight_level >= NIGHT_HIGHLIGHT_LEVEL:
        return None
    return Finding(
        "image.underexposed",
        f"The image is underexposed (mean brightness {scores.mean_luminance:.0f} of 255, "
        f"{scores.dark_fraction:.0%} of pixels crushed to black, the brightest reach only "
        f"{extras.highlight_level:.0f}).",
        "Brighten the image or use a better lit one; the model cannot invent detail in the shadows.",
    )


def _overexposed(scores: ImageScores, extras: _Extras) -> Finding | None:
    blown = scores.bright_fraction > CLIPPED_FRACTION and scores.mean_luminance > OVEREXPOSED_MEAN
    if not (blown or scores.mean_luminance > VERY_BRIGHT_MEAN):
        return None
    # A subject on a white background (a product shot, a page) is not an overexposed photo.
    if extras.unclipped_bright_mean <= WASHED_OUT_SUBJECT_MEAN:
        return None
    return Finding(
        "image.overexposed",
        f"The image is overexposed (mean brightness {scores.mean_luminance:.0f} of 255, "
        f"{scores.bright_fraction:.0%} of pixels blown out to white).",
        "Darken the image or use a better exposed one; the model cannot invent detail in the highlights.",
    )


def _extreme_aspect(scores: ImageScores) -> Finding | None:
    if scores.aspect_ratio <= EXTREME_ASPECT:
        return None
    return Finding(
        "image.extreme_aspect",
        f"The image is {scores.width}×{scores.height} px, an aspect ratio of {scores.aspect_ratio:.2f}:1 "
        f"(more than {EXTREME_ASPECT}:1); much of it will be cropped away.",
        "Crop the image closer to the video's shape before uploading.",
    )


def _looks_like_diagram(scores: ImageScores, extras: _Extras) -> bool:
    plain_background = extras.background_luminance >= LIGHT_BACKGROUND_LUMINANCE or (
        extras.background_luminance <= DARK_BACKGROUND_LUMINANCE
    )
    return (
        plain_background
        and extras.background_fraction >= DIAGRAM_BACKGROUND_FRACTION
        and scores.distinct_colours <= DIAGRAM_MAX_COLOURS
        and extras.edge_fraction >= DIAGRAM_MIN_EDGE_FRACTION
    )


def _looks_like_page(extras: _Extras) -> bool:
    return (
        extras.stroke_fraction >= PAGE_MIN_STROKE_FRACTION
        and extras.stroke_share_of_detail >= PAGE_MIN_STROKE_SHARE
        and extras.paper_smoothness >= PAGE_MIN_PAPER_SMOOTHNESS
    )


def _text_or_diagram(scores: ImageScores, extras: _Extras, is_diagram: bool) -> Finding | None:
    if not is_diagram:
        return None
    if _looks_like_diagram(scores, extras):
        figures = (f"{extras.background_fraction:.0%} plain background, {scores.distinct_colours} colours, "
                   f"{extras.edge_fraction:.1%} hard edges")
    else:
        figures = f"{extras.stroke_fraction:.0%} of it is thin dark strokes on paper"
    return Finding(
        "image.text_or_diagram",
        f"The image looks like text, a chart or a diagram ({figures}); "
        "image-to-video models invent meaningless motion on these.",
        "Use a photo or illustration of a scene instead.",
    )


def _black_background(scores: ImageScores) -> Finding | None:
    if scores.dark_fraction <= BLACK_BACKGROUND_FRACTION:
        return None
    return Finding(
        "image.black_background",
        f"{scores.dark_fraction:.0%} of the image is black; the I2VGen-XL authors report poor results "
        "on images with a black background.",
        "Use an image with a lit, detailed background.",
    )


def _flat_cartoon(scores: ImageScores, extras: _Extras, is_diagram: bool) -> Finding | None:
    if is_diagram or extras.colour_spread < GREY_COLOUR_SPREAD:
        return None
    if extras.soft_fraction > CARTOON_MAX_SOFT_FRACTION:
        return None
    if scores.flat_fraction < CARTOON_FLAT_FRACTION:
        return None
    if not CARTOON_MIN_COLOURS <= scores.distinct_colours <= CARTOON_MAX_COLOURS:
        return None
    return Finding(
        "image.flat_cartoon",
        f"The image looks like a flat cartoon or anime drawing ({scores.flat_fraction:.0%} flat areas, "
        f"{scores.distinct_colours} colours); the I2VGen-XL authors report poor results on this style.",
        "Expect weaker motion, or use a more detailed, photo-like image.",
    )

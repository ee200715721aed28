"""How the picture is framed when its aspect ratio is not the video's: cropped (centre, or the part the user
chooses) or fitted whole with black bars. The video's size follows the picture's aspect only as far as the model
allows (sides in multiples of 8…64, an aspect range, or one fixed size), so some framing happens on most runs: the
engine says how much, never silently."""
from __future__ import annotations

import math

from PIL import Image

from i2v.errors import BadInputError, shown
from i2v.findings import Finding
from i2v.guidance.images import CENTRE, fit_to_size, pad_to_size

FRAMINGS = ("crop", "pad")
# Less than this share of a side cut or padded is rounding to the model's size multiple: not worth a word.
NOTICE_SHARE = 0.02


def check_framing(framing: object, focus: object) -> None:
    """Raise ``BadInputError`` for an unknown framing or a crop position outside the picture."""
    if framing not in FRAMINGS:
        raise BadInputError(f"framing must be 'crop' (fill the frame, cutting the overflow) or 'pad' (the whole "
                            f"picture, with black bars); got {shown(framing)}.")
    if not (isinstance(focus, tuple) and len(focus) == 2):
        raise BadInputError(f"crop_focus must be two numbers (x, y) from 0 to 1; got {shown(focus)}.")
    for axis, value in zip("xy", focus):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0.0 <= value <= 1.0:
            raise BadInputError(f"crop_focus {axis} must be a number from 0 (left/top edge) to 1 (right/bottom "
                                f"edge), 0.5 = centre; got {shown(value)}.")
    if framing == "pad" and tuple(focus) != CENTRE:
        # A position with padding would be ignored without a word: nothing is cut, so there is nothing to choose.
        raise BadInputError("crop_focus applies to framing 'crop' only: with 'pad' the whole picture is kept; "
                            "leave crop_focus at the centre (0.5, 0.5).")


def frame_picture(picture: Image.Image, width: int, height: int, framing: str,
                  focus: tuple[float, float]) -> Image.Image:
    if framing == "pad":
        return pad_to_size(picture, width, height)
    return fit_to_size(picture, width, height, focus)


def framing_notice(source_size: tuple[int, int], size: tuple[int, int], framing: str, focus: tuple[float, float],
                   why: str) -> Finding | None:
    """What framing did to the picture, when it did more than rounding: how much was cut (and where) or padded.
    ``why``: why the video's aspect is not the picture's (the model's rule)."""
    (source_w, source_h), (width, height) = source_size, size
    source_aspect, aspect = source_w / source_h, width / height
    wider = source_aspect > aspect  # the picture is wider than the video: its sides go (crop) or bars go above/below
    share = 1 - (aspect / source_aspect if wider else source_aspect / aspect)
    if share < NOTICE_SHARE:
        return None
    picture = f"The picture ({source_w}×{source_h}, {_ratio(source_aspect)})"
    video = f"the video's {width}×{height} ({_ratio(aspect)}): {why}"
    if framing == "pad":
        bars = "above and below" if wider else "left and right"
        return Finding("size.aspect_padded",
                       f"{picture} is fitted whole into {video}. Black bars fill {share:.0%} of the frame, {bars}.",
                       "Choose framing 'crop' (--framing crop) to fill the frame instead.")
    side = "width" if wider else "height"
    return Finding("size.aspect_cropped",
                   f"{picture} is cropped to {video}. {share:.0%} of its {side} is cut, {_where(focus, wider)}.",
                   "Choose the part kept (crop position; --crop-focus X,Y), or framing 'pad' (--framing pad) to "
                   "keep the whole picture.")


def _where(focus: tuple[float, float], wider: bool) -> str:
    value = focus[0] if wider else focus[1]
    if value == 0.5:
        return "evenly from both " + ("sides" if wider else "the top and the bottom")
    low, high = ("left", "right") if wider else ("top", "bottom")
    return f"keeping the part {value:.0%} of the way from the {low} to the {high}"


def _ratio(aspect: float) -> str:
    return f"{aspect:.2f}:1"

"""Framing a picture whose shape is not the video's (guidance/framing.py): crop at the centre or at a chosen part,
or the whole picture on black bars; validated, said in a notice, recorded, in the reproduce line and the CLI."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from i2v.cli import _requests, build_parser
from i2v.engine.record import reproduce_command
from i2v.engine.request import GenerationRequest
from i2v.engine.resolve import prepare
from i2v.errors import BadInputError
from i2v.gpu.hardware import FixedGpuInfo
from i2v.planning.plan import BasicPlanner
from i2v.service.jobs import request_from_settings, request_settings


def halves(width: int = 400, height: int = 200) -> Image.Image:
    """Red on the left half, blue on the right: which part a crop kept is plain to see."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2] = (220, 30, 30)
    pixels[:, width // 2:] = (30, 30, 220)
    return Image.fromarray(pixels)


def prepared(picture: Image.Image, **changes):
    # cogvideox makes 96×64 only (1.5:1): a 2:1 picture is framed.
    request = GenerationRequest(image=picture, prompt="a sailboat drifting slowly to the left",
                                model="tiny-cogvideox", **changes)
    return prepare(request, BasicPlanner(FixedGpuInfo.none()))


def colour_at(image: Image.Image, x: int, y: int) -> tuple[int, ...]:
    return image.getpixel((x, y))


def test_the_default_centre_crop_says_how_much_is_cut_and_why():
    job = prepared(halves())
    (notice,) = [n for n in job.notices if n.code.startswith("size.aspect")]
    assert notice.code == "size.aspect_cropped"
    assert "400×200" in notice.message and "96×64" in notice.message and "25% of its width is cut" in notice.message
    assert "makes 96×64 only" in notice.message and "evenly from both sides" in notice.message
    assert job.params.framing == "crop" and job.params.crop_focus == (0.5, 0.5)


def test_a_crop_position_keeps_that_part_of_the_picture():
    left = prepared(halves(), crop_focus=(0.0, 0.5)).image
    right = prepared(halves(), crop_focus=(1.0, 0.5)).image
    centre = prepared(halves()).image
    assert colour_at(left, 60, 32)[0] > 150  # a crop from the left edge: mostly the red half
    assert colour_at(right, 36, 32)[2] > 150  # from the right edge: mostly blue
    assert colour_at(centre, 20, 32)[0] > 150 and colour_at(centre, 76, 32)[2] > 150  # both halves
    notice = next(n for n in prepared(halves(), crop_focus=(0.0, 0.5)).notices if n.code == "size.aspect_cropped")
    assert "0% of the way from the left to the right" in notice.message


def test_pad_keeps_the_whole_picture_on_black_bars():
    job = prepared(halves(), framing="pad")
    assert job.image.size == (96, 64)
    assert colour_at(job.image, 48, 2) == (0, 0, 0) and colour_at(job.image, 48, 61) == (0, 0, 0)  # bars above, below
    assert colour_at(job.image, 2, 32)[0] > 150 and colour_at(job.image, 93, 32)[2] > 150  # both edges of the picture
    (notice,) = [n for n in job.notices if n.code.startswith("size.aspect")]
    assert notice.code == "size.aspect_padded" and "above and below" in notice.message
    assert job.params.framing == "pad"


def test_a_picture_of_the_videos_shape_is_framed_without_a_word():
    job = prepared(halves(384, 256))
    assert not [n for n in job.notices if n.code.startswith("size.aspect")]


@pytest.mark.parametrize("changes, words", [
    ({"framing": "stretch"}, "framing must be 'crop'"),
    ({"crop_focus": (1.5, 0.5)}, "crop_focus x must be a number from 0"),
    ({"crop_focus": (0.5, float("nan"))}, "crop_focus y"),
    ({"crop_focus": (0.5,)}, "crop_focus must be two numbers"),
    ({"framing": "pad", "crop_focus": (0.2, 0.5)}, "applies to framing 'crop' only"),
])
def test_bad_framing_is_refused_with_a_message(changes, words):
    with pytest.raises(BadInputError, match=words):
        prepared(halves(), **changes)


def test_the_record_and_the_reproduce_line_keep_the_framing():
    job = prepared(halves(), crop_focus=(0.25, 0.5))
    params = job.params.for_seed(7, "float32")
    assert params["framing"] == "crop" and params["crop_focus"] == [0.25, 0.5]
    line = reproduce_command(params, "in.png")
    assert "--crop-focus 0.25,0.5" in line and "--framing" not in line
    padded = reproduce_command(prepared(halves(), framing="pad").params.for_seed(7, "float32"), "in.png")
    assert "--framing pad" in padded and "--crop-focus" not in padded
    plain = reproduce_command(prepared(halves()).params.for_seed(7, "float32"), "in.png")
    assert "--framing" not in plain and "--crop-focus" not in plain


def test_the_command_line_takes_framing_and_a_crop_position():
    args = build_parser().parse_args(["generate", "--image", "in.png", "--prompt", "a boat", "--framing", "pad"])
    assert _requests(args)[0].framing == "pad" and _requests(args)[0].crop_focus == (0.5, 0.5)
    args = build_parser().parse_args(["generate", "--image", "in.png", "--prompt", "a boat", "--crop-focus", "0,1"])
    assert _requests(args)[0].crop_focus == (0.0, 1.0)


def test_history_keeps_the_framing_and_older_jobs_load_as_centre_crops():
    request = GenerationRequest(image="in.png", prompt="a boat", model="tiny", framing="crop", crop_focus=(0.1, 0.9))
    again = request_from_settings(request_settings(request), "in.png")
    assert (again.framing, again.crop_focus) == ("crop", (0.1, 0.9))
    older = {k: v for k, v in request_settings(request).items() if k not in ("framing", "crop_focus")}
    assert (request_from_settings(older, "in.png").framing, request_from_settings(older, "in.png").crop_focus) == \
        ("crop", (0.5, 0.5))

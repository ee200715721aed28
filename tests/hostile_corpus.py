"""A corpus of hostile and odd inputs, generated on the fly (no committed binaries), for tests/test_hostile_inputs.py.

Two kinds of image file: ``REFUSED`` ones must end in ``BadInputError`` with a message that says what is wrong and
what to do (each entry lists the fragments it must contain); the odd-but-valid builders below must load to the
right picture. Prompts and parameters are in ``BAD_PROMPTS`` / ``GOOD_PROMPTS`` / ``BAD_PARAMETERS``.
"""
from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from test_images import _as_stored_for_orientation, _huge_blank_png

ACCEPTED = ("PNG, JPEG, WEBP, GIF, BMP, TIFF",)  # the message lists the formats a user can convert to
RED = (255, 0, 0)
BLUE = (0, 0, 255)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


# --- files that must be refused ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    name: str  # test id, and the row in docs/RELIABILITY.md
    filename: str  # what a user would pick
    build: Callable[[], bytes]
    fragments: tuple[str, ...]  # each must appear in the error message
    header_only: bool = False  # refused from the header alone: no pixel may be decoded first


def _photo_jpeg() -> bytes:
    rng = np.random.default_rng(5)
    return encode(Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)), "JPEG", quality=90)


def _truncated_jpeg() -> bytes:
    data = _photo_jpeg()
    return data[: len(data) // 2]


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A real 16×16 JPEG whose start-of-frame header claims ``width``×``height``: tiny file, huge canvas."""
    data = bytearray(encode(Image.new("RGB", (16, 16), RED), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _gif_declaring(width: int, height: int) -> bytes:
    """Header, one image descriptor of the declared size and a few bytes of LZW data."""
    screen = b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00"
    descriptor = b"," + struct.pack("<HHHH", 0, 0, width, height) + b"\x00"
    return screen + descriptor + b"\x02\x02D\x01\x00;"


def _bmp_declaring(width: int, height: int) -> bytes:
    """A BITMAPINFOHEADER for a 24-bit picture of the declared size, and no pixel data at all."""
    file_header = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return file_header + info


SVG = (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
       b'<circle cx="32" cy="32" r="20" fill="red"/></svg>\n')
TEXT = b"Meeting notes: bring the red ball.\n" * 20

BOMB_MESSAGE = ("over the limit of 40,000,000 pixels", "Resize it")
REFUSED = [
    Refused("zero-byte file", "empty.png", lambda: b"", ("empty (0 bytes)", *ACCEPTED)),
    Refused("text file named .png", "notes.png", lambda: TEXT, ("not a supported image", *ACCEPTED)),
    Refused("SVG drawing", "drawing.svg", lambda: SVG, ("not a supported image", *ACCEPTED)),
    Refused("PNG signature then garbage", "broken.png",
            lambda: b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, ("not a supported image", *ACCEPTED)),
    Refused("truncated JPEG", "cut.jpg", _truncated_jpeg, ("damaged or truncated", "Re-export")),
    Refused("PNG bomb 20000×20000 (12 KB)", "bomb.png", lambda: _huge_blank_png(20_000, 20_000),
            ("400,000,000 pixels", *BOMB_MESSAGE), header_only=True),
    Refused("GIF header 65535×65535", "bomb.gif", lambda: _gif_declaring(65_535, 65_535),
            ("4,294,836,225 pixels", *BOMB_MESSAGE), header_only=True),
    Refused("BMP header 30000×30000, no pixels", "bomb.bmp", lambda: _bmp_declaring(30_000, 30_000),
            ("900,000,000 pixels", *BOMB_MESSAGE), header_only=True),
    Refused("JPEG header 60000×60000", "bomb.jpg", lambda: _jpeg_declaring(60_000, 60_000),
            ("3,600,000,000 pixels", *BOMB_MESSAGE), header_only=True),
    # Under Pillow's own bomb limit, over ours: our header check must refuse it before decoding.
    Refused("JPEG header 7000×7000 (under Pillow's limit)", "big.jpg", lambda: _jpeg_declaring(7_000, 7_000),
            ("7000×7000", "49,000,000 pixels", "40,000,000", "Resize it"), header_only=True),
]


# --- odd but valid files: each must load to the right picture ---------------------------------------------


def animated_gif(colours=(RED, BLUE, (0, 255, 0))) -> bytes:
    frames = [Image.new("RGB", (40, 30), colour) for colour in colours]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0)


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (48, 32), (255, 0, 0, 0)), "JPEG", quality=95)  # pure cyan ink


def grey16_ramp_png() -> tuple[bytes, np.ndarray]:
    """A 16-bit grey ramp over the whole range (256×4 px); returns the file and its 16-bit values."""
    values = np.tile(np.linspace(0, 65535, 256).round().astype(np.uint16), (4, 1))
    image = Image.frombytes("I;16", (256, 4), values.astype("<u2").tobytes())
    return encode(image, "PNG"), values


def palette_with_transparency_png() -> bytes:
    image = Image.new("P", (40, 20), 1)
    image.putpalette([0, 0, 0, *RED] + [0, 0, 0] * 254)
    image.paste(0, (0, 0, 20, 20))  # left half: index 0, declared transparent
    return encode(image, "PNG", transparency=0)


def rgba_png() -> bytes:
    image = Image.new("RGBA", (40, 20), (*RED, 255))
    image.paste((*BLUE, 0), (0, 0, 20, 20))  # left half: blue but fully transparent
    return encode(image, "PNG")


def line_png(width: int, height: int) -> bytes:
    """A 1-pixel line of a picture: a left-to-right (or top-to-bottom) grey ramp."""
    ramp = np.linspace(0, 255, max(width, height)).astype(np.uint8)
    return encode(Image.fromarray(ramp.reshape(height, width)), "PNG")


def upright_marker(width: int = 48, height: int = 32) -> np.ndarray:
    """White picture, red block in its top-left corner: where the block ends up shows the orientation."""
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[: height * 3 // 8, : width // 3] = RED
    return pixels


def oriented_file(fmt: str, orientation: int, upright: np.ndarray) -> bytes:
    """``upright`` stored the way a camera would for ``orientation``, tagged with that EXIF orientation."""
    stored = Image.fromarray(_as_stored_for_orientation(upright, orientation))
    params: dict[str, object] = {"exif": exif_with_orientation(orientation)}
    if fmt == "WEBP":
        params["lossless"] = True
    return encode(stored, fmt, **params)


# --- prompts and parameters -------------------------------------------------------------------------------

GOOD = "a sailboat drifting slowly to the left, waves rippling"

# (id, prompt, fragments of the message)
BAD_PROMPTS = [
    ("empty prompt", "", ("prompt is empty", "describe the subject")),
    ("10 000-character prompt", ("waves crashing " * 700)[:10_000], ("10000 characters", "limit is 2000", "shorten")),
    ("NUL in prompt", "a boat\x00 sailing", ("control character", "'\\x00'", "remove it")),
    ("terminal escape in prompt", "a boat \x1b[2J sailing", ("control character", "'\\x1b'")),
    ("bell and backspace in prompt", "waves\x07 crashing\x08", ("control character", "'\\x07'")),
    # What Python makes of command-line bytes that are not UTF-8 (surrogateescape), or a JSON "\udcff".
    ("undecodable byte in prompt", "waves crashing \udcff slowly", ("not valid UTF-8", "'\\udcff'")),
]

# Odd but acceptable: they must prepare (and the linter must say something useful where it should).
GOOD_PROMPTS = [
    ("emoji-only prompt", "🌊🚣‍♀️🌅"),
    ("right-to-left override and zero-width space", "a boat \u202edrifting\u202c slowly left\u200b"),
    ("2 000 combining accents", "a" + "\u0301" * 1999),
    ("tabs and newlines", "a boat\tdrifting\nslowly to the left\r\n"),
]

# (id, request fields, fragments of the message) for GenerationRequest / Engine.prepare; validate_request already
# has the plain type cases (tests/test_request_and_spec.py), these are the hostile extremes.
BAD_PARAMETERS = [
    ("NaN steps", {"steps": float("nan")}, ("steps", "whole number", "nan")),
    ("infinite resolution", {"resolution": float("inf")}, ("resolution", "whole number", "inf")),
    ("guidance 1e308", {"guidance": 1e308}, ("guidance", "out of range", "0..100")),
    ("guidance -0.0", {"guidance": -0.0}, ("guidance", "out of range", "1..30")),
    ("negative fps", {"fps": -8}, ("fps -8", "out of range", "1..240")),
    ("negative frames", {"frames": -4}, ("frames -4", "out of range")),
    ("1000 frames", {"frames": 1000}, ("1000 frames", "2..64")),
    ("negative width", {"resolution": None, "width": -64, "height": 64}, ("width -64", "out of range")),
    ("100000×100000", {"resolution": None, "width": 100_000, "height": 100_000}, ("width 100000", "64..2048")),
    ("seed 2**64", {"seeds": (2**64,)}, ("seed 18446744073709551616", "0..4294967295")),
    ("seed as float", {"seeds": (1.0,)}, ("seed", "whole number")),
    ("candidates as string", {"candidates": "3"}, ("candidates", "whole number", "'3'")),
    ("auto_enhance as string", {"auto_enhance": "yes"}, ("auto_enhance", "true or false")),
    ("unknown preset", {"preset": "ultra"}, ("Unknown preset 'ultra'", "fast-check")),
    ("float16 on CPU", {"dtype": "float16"}, ("float16", "CPU", "float32")),
    ("CUDA without GPU", {"device": "cuda:3"}, ("cuda:3", "no CUDA GPU", "--device cpu")),
    ("10 000-char negative prompt", {"negative_prompt": "x" * 10_000}, ("negative prompt", "10000 characters")),
    ("no image", {"image": None}, ("No image was given",)),
    ("empty image path", {"image": ""}, ("No image was given",)),
    ("image as a number", {"image": 42}, ("image must be a file path", "got int")),
    ("NUL in image path", {"image": "in\x00put.png"}, ("NUL character", "in\\x00put.png")),
]

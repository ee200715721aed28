"""Safe image loading, fitting and enhancing for the engine's input picture.

Everything a user uploads goes through :func:`load_image`, which turns any supported file into a
plain, fully decoded, upright 8-bit RGB image, or raises :class:`BadInputError` with a message the
user can act on. Sizes are checked from the file header before any pixel is decoded, so a small
file that declares a huge canvas (a decompression bomb) is refused without using memory.
"""
from __future__ import annotations

import functools
import io
import logging
import os
import re
import stat
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO

import numpy as np
from PIL import Image, ImageEnhance, ImageOps, UnidentifiedImageError

from i2v.errors import BadInputError
from i2v.findings import Finding

logger = logging.getLogger(__name__)

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 40_000_000
MAX_SIDE = 12_000
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "MPO")

IN_MEMORY_FORMAT = "in-memory"

# What Pillow's decoders raise on damaged data. Pillow has no common base class for these:
# struct.error / IndexError / EOFError come from header parsers reading past the end of the data.
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
# Converted by Pillow without losing anything a user would care about, so no notice.
_PLAIN_CONVERSIONS = ("L", "1", "YCbCr", "LAB", "HSV", "RGBX")

_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # mode "RGB", upright, fully decoded, not tied to any open file
    source_format: str  # Pillow's format name ("PNG", "JPEG", ...) or "in-memory"
    source_mode: str  # Pillow mode as found in the file, e.g. "CMYK", "I;16", "P"
    source_size: tuple[int, int]  # (width, height) after EXIF orientation
    notices: tuple[Finding, ...]  # what loading changed: alpha flattened, first frame used, ...


def load_image(
    source: str | os.PathLike[str] | bytes | Image.Image,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_side: int = MAX_SIDE,
) -> LoadedImage:
    """Load ``source`` as an upright RGB image, or raise BadInputError saying what is wrong."""
    if isinstance(source, Image.Image):
        return _load_in_memory(source, max_pixels=max_pixels, max_side=max_side)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_file_size(len(data), max_bytes)
        return _load_from_stream(io.BytesIO(data), max_pixels=max_pixels, max_side=max_side)
    if not isinstance(source, (str, os.PathLike)):
        raise BadInputError(
            "No image was given: choose the picture the video should start from."
            if source is None
            else f"The image must be a file path, the file's bytes or a PIL image; got {type(source).__name__}."
        )
    return _load_from_path(os.fspath(source), max_bytes=max_bytes, max_pixels=max_pixels, max_side=max_side)


class DecodedImages:
    """The last few pictures decoded from files, by the file's identity (path, size, mtime, inode). The page checks
    the same upload on every change of a control; a 40 MP photo costs ~120 MB and a second to decode each time.
    Anything that is not a readable file path is loaded as ``load_image`` does, uncached."""

    def __init__(self, size: int = 2):
        self._size = size
        self._cache: OrderedDict[tuple, LoadedImage] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, source: str | os.PathLike[str] | bytes | Image.Image) -> LoadedImage:
        key = _file_identity(source)
        if key is None:
            return load_image(source)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        loaded = load_image(source)
        with self._lock:
            self._cache[key] = loaded
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return loaded


def _file_identity(source: object) -> tuple | None:
    if not isinstance(source, (str, os.PathLike)):
        return None
    try:
        info = os.stat(source)
    except (OSError, ValueError):  # load_image says what is wrong with the path
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return os.path.realpath(source), info.st_size, info.st_mtime_ns, info.st_ino


CENTRE = (0.5, 0.5)
PAD_COLOUR = (0, 0, 0)  # letterbox bars: plain black stays still in the video, where a smeared edge would move


def fit_to_size(image: Image.Image, width: int, height: int, focus: tuple[float, float] = CENTRE) -> Image.Image:
    """Scale ``image`` to cover ``width``×``height`` keeping its aspect ratio, then crop: ``focus`` (x, y) says which
    part stays, from 0 (the left or top edge) to 1 (the right or bottom edge); the centre by default."""
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = max(width / rgb.width, height / rgb.height)
    # max() keeps float rounding from leaving the scaled image one pixel short of the target.
    scaled_width = max(width, round(rgb.width * scale))
    scaled_height = max(height, round(rgb.height * scale))
    resized = rgb.resize((scaled_width, scaled_height), Image.LANCZOS)
    left = round((scaled_width - width) * focus[0])
    top = round((scaled_height - height) * focus[1])
    return resized.crop((left, top, left + width, top + height))


def pad_to_size(image: Image.Image, width: int, height: int) -> Image.Image:
    """Scale the whole of ``image`` into ``width``×``height`` keeping its aspect ratio, centred on black bars."""
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    scale = min(width / rgb.width, height / rgb.height)
    inner = (min(width, max(1, round(rgb.width * scale))), min(height, max(1, round(rgb.height * scale))))
    canvas = Image.new("RGB", (width, height), PAD_COLOUR)
    canvas.paste(rgb.resize(inner, Image.LANCZOS), ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return canvas


def enhance(image: Image.Image) -> Image.Image:
    """A mild contrast and sharpness lift; I2V models keep more detail from crisp inputs."""
    contrasted = ImageEnhance.Contrast(image).enhance(1.2)
    return ImageEnhance.Sharpness(contrasted).enhance(1.1)


# --- sources --------------------------------------------------------------------------------


def _load_from_path(path: str, *, max_bytes: int, max_pixels: int, max_side: int) -> LoadedImage:
    name = _display_name(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise BadInputError(f"The image file '{name}' does not exist. Check the path and try again.") from None
    except ValueError:  # os.stat refuses a path with a NUL byte in it; no file can have that name
        raise BadInputError(f"The image path '{name}' contains a NUL character; no file has that name.") from None
    except OSError as exc:
        raise BadInputError(
            f"The image file '{name}' could not be read ({exc.strerror}). Check the path and its permissions."
        ) from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInputError(f"'{name}' is not a regular file. Choose an image file instead.")
    check_file_size(info.st_size, max_bytes)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise BadInputError(
            f"The image file '{name}' could not be opened ({exc.strerror}). Check its permissions."
        ) from None
    with stream:
        return _load_from_stream(stream, max_pixels=max_pixels, max_side=max_side)


_MAX_NAME_CHARS = 80


def _display_name(path: str) -> str:
    """The file name as a one-line message can show it: control characters and undecodable bytes escaped
    (a newline in a name would split the CLI's one error line), very long names shortened."""
    name = os.path.basename(path) or path
    if not name.isprintable():
        name = ascii(name)[1:-1]
    return name if len(name) <= _MAX_NAME_CHARS else name[: _MAX_NAME_CHARS - 1] + "…"


def _load_from_stream(stream: IO[bytes], *, max_pixels: int, max_side: int) -> LoadedImage:
    with warnings.catch_warnings(record=True) as pillow_warnings:
        # Pillow's other warnings (corrupt EXIF, truncated reads) go to the log, not to stderr.
        warnings.simplefilter("always")
        # Pillow only *warns* between 1x and 2x its pixel limit; treat that as the refusal it is.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = _open_supported(stream, max_pixels=max_pixels)
            with image:
                _check_dimensions(image.size, max_pixels=max_pixels, max_side=max_side)
                source_format = image.format or "unknown"
                return _decode_and_normalise(image, source_format, max_pixels=max_pixels)
        finally:
            for warning in pillow_warnings:
                logger.info("Pillow warned while loading an image: %s", warning.message)


def _load_in_memory(image: Image.Image, *, max_pixels: int, max_side: int) -> LoadedImage:
    _check_dimensions(image.size, max_pixels=max_pixels, max_side=max_side)
    return _decode_and_normalise(image, IN_MEMORY_FORMAT, max_pixels=max_pixels)


@functools.cache
def _openable_formats() -> tuple[str, ...]:
    """ALLOWED_FORMATS minus names Pillow has no opener for.

    Pillow registers MPO for saving only (MPO files come out of the JPEG opener with format
    "MPO"), and ``Image.open`` raises KeyError for a name in ``formats`` that has no opener.
    """
    Image.init()
    return tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)


def _open_supported(stream: IO[bytes], *, max_pixels: int) -> Image.Image:
    try:
        return Image.open(stream, formats=_openable_formats())
    except UnidentifiedImageError:
        raise BadInputError(_not_supported_message()) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(_bomb_message(exc, max_pixels)) from None
    except _DECODE_ERRORS as exc:
        logger.info("image header could not be parsed: %s: %s", type(exc).__name__, exc)
        raise BadInputError(_damaged_message()) from None


def _decode_and_normalise(image: Image.Image, source_format: str, *, max_pixels: int) -> LoadedImage:
    """Decode the first frame, apply EXIF orientation and convert to RGB."""
    try:
        notices = _select_first_frame(image)
        image.load()
        upright = ImageOps.exif_transpose(image)  # always a new image, so the caller's is untouched
        source_mode = upright.mode
        rgb, mode_notices = _to_rgb(upright)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(_bomb_message(exc, max_pixels)) from None
    except _DECODE_ERRORS as exc:
        logger.info("image data could not be decoded: %s: %s", type(exc).__name__, exc)
        raise BadInputError(_damaged_message()) from None
    return LoadedImage(
        image=rgb,
        source_format=source_format,
        source_mode=source_mode,
        source_size=rgb.size,
        notices=tuple(notices + mode_notices),
    )


def _select_first_frame(image: Image.Image) -> list[Finding]:
    frame_count = getattr(image, "n_frames", 1)
    if frame_count <= 1:
        return []
    image.seek(0)
    return [
        Finding(
            "image.animated_first_frame",
            f"The file contains {frame_count} frames (an animation or a multi-picture file); "
            "only the first frame is used.",
            "To start from a different frame, export that frame as a still image.",
        )
    ]


# --- checks ---------------------------------------------------------------------------------


def check_file_size(size_bytes: int, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Refuse an empty file or one over ``max_bytes`` before any of it is read."""
    if size_bytes == 0:
        raise BadInputError(
            f"The file is empty (0 bytes), so it is not a supported image. {_accepted_formats_sentence()}"
        )
    if size_bytes > max_bytes:
        raise BadInputError(
            f"The file is {_megabytes(size_bytes)} ({size_bytes:,} bytes), over the limit of "
            f"{_megabytes(max_bytes)} ({max_bytes:,} bytes). Save a smaller or more compressed copy."
        )


def _check_dimensions(size: tuple[int, int], *, max_pixels: int, max_side: int) -> None:
    width, height = size
    if max(width, height) > max_side:
        raise BadInputError(
            f"The image is {width}×{height} px; a side may be at most {max_side:,} px. "
            "Resize it to a smaller size and try again."
        )
    if width * height > max_pixels:
        raise BadInputError(
            f"The image is {width}×{height} px ({width * height:,} pixels), over the limit of "
            f"{max_pixels:,} pixels. Resize it to a smaller size and try again."
        )


# --- mode conversion ------------------------------------------------------------------------


def _to_rgb(image: Image.Image) -> tuple[Image.Image, list[Finding]]:
    mode = image.mode
    if mode == "RGB":
        return image, []
    if mode in _PLAIN_CONVERSIONS:
        return image.convert("RGB"), []
    if mode == "P":
        if "transparency" in image.info:
            return _flatten_alpha(image.convert("RGBA"))
        return image.convert("RGB"), []
    if mode in _ALPHA_MODES:
        # "La" has no direct route to RGBA in Pillow; going through LA keeps the alpha.
        rgba = image.convert("LA").convert("RGBA") if mode == "La" else image.convert("RGBA")
        return _flatten_alpha(rgba)
    if mode == "CMYK":
        return image.convert("RGB"), [
            Finding(
                "image.cmyk_converted",
                "The image uses CMYK (print) colours; it was converted to RGB, so colours may shift slightly.",
                "For exact colours, export the image as RGB (sRGB).",
            )
        ]
    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        return _grey_to_rgb(_integer_grey_to_8bit(image)), [_high_bit_depth_notice(mode)]
    if mode == "F":
        return _grey_to_rgb(_float_grey_to_8bit(image)), [_high_bit_depth_notice(mode)]
    raise BadInputError(
        f"The image uses the colour mode '{mode}', which is not supported. Save it as an RGB or greyscale image."
    )


def _flatten_alpha(rgba: Image.Image) -> tuple[Image.Image, list[Finding]]:
    alpha = np.asarray(rgba.getchannel("A"))
    see_through = int(np.count_nonzero(alpha < 255))
    if see_through == 0:
        return rgba.convert("RGB"), []
    background = Image.new("RGBA", rgba.size, _WHITE + (255,))
    flattened = Image.alpha_composite(background, rgba).convert("RGB")
    percent = 100.0 * see_through / alpha.size
    return flattened, [
        Finding(
            "image.alpha_flattened",
            f"The image has transparency ({percent:.1f}% of pixels are not fully opaque); "
            "it was placed on a white background.",
            "To use another background, fill the transparent areas before uploading.",
        )
    ]


def _integer_grey_to_8bit(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float64)
    if image.mode == "I":
        values = np.clip(values, 0, None)
        peak = float(values.max(initial=0.0))
        # 16-bit data stored in a 32-bit container keeps its 16-bit meaning; anything larger
        # has no known full scale, so its own maximum is the best white point available.
        divisor = 257.0 if peak <= 65535 else peak / 255.0
    else:
        divisor = 257.0
    return np.clip(np.rint(values / divisor), 0, 255).astype(np.uint8)


def _float_grey_to_8bit(image: Image.Image) -> np.ndarray:
    values = np.asarray(image).astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(values.shape, dtype=np.uint8)
    low = float(values[finite].min())
    high = float(values[finite].max())
    if high <= low:
        # A flat float image has no range to stretch; black is as good a guess as any.
        return np.zeros(values.shape, dtype=np.uint8)
    scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _grey_to_rgb(grey: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(grey)).convert("RGB")


def _high_bit_depth_notice(mode: str) -> Finding:
    depth = "32-bit floating point" if mode == "F" else ("32-bit" if mode == "I" else "16-bit")
    return Finding(
        "image.high_bit_depth",
        f"The image has {depth} grey levels (mode {mode}); it was reduced to 8 bits per channel.",
        "For full control over the tones, export an 8-bit RGB image yourself.",
    )


# --- messages -------------------------------------------------------------------------------


def _accepted_formats_sentence() -> str:
    return f"Accepted formats are {', '.join(ALLOWED_FORMATS)}."


def _not_supported_message() -> str:
    return f"The file is not a supported image. {_accepted_formats_sentence()}"


def _damaged_message() -> str:
    return (
        "The file is damaged or truncated and could not be decoded. "
        "Re-export or re-download the image and try again."
    )


_PIXEL_COUNT_IN_PIL_MESSAGE = re.compile(r"\((\d+) pixels\)")


def _bomb_message(exc: BaseException, max_pixels: int) -> str:
    # Pillow's own check fires inside Image.open, before we see the size; its message carries the count.
    match = _PIXEL_COUNT_IN_PIL_MESSAGE.search(str(exc))
    declared = f" ({int(match.group(1)):,} pixels)" if match else ""
    return (
        f"The image declares a size{declared} over the limit of {max_pixels:,} pixels and cannot be decoded "
        "safely. Resize it to a smaller size and try again."
    )


def _megabytes(size_bytes: int) -> str:
    return f"{size_bytes / (1024 * 1024):.1f} MiB"

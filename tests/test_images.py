"""Tests for i2v.guidance.images: every input is generated here; no image files are committed."""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw, ImageFile

from i2v.errors import BadInputError
from i2v.guidance.images import (
    ALLOWED_FORMATS,
    MAX_PIXELS,
    LoadedImage,
    enhance,
    fit_to_size,
    load_image,
)

WHITE = (255, 255, 255)
RED = (255, 0, 0)


# --- helpers --------------------------------------------------------------------------------


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _photo_like(width: int = 256, height: int = 192, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([60 + 150 * x / width, 50 + 150 * y / height, np.full_like(x, 120)], axis=-1)
    noise = rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def _pixel(loaded: LoadedImage, xy: tuple[int, int]) -> tuple[int, ...]:
    return loaded.image.getpixel(xy)


def _codes(loaded: LoadedImage) -> list[str]:
    return [notice.code for notice in loaded.notices]


def _assert_user_message(error: pytest.ExceptionInfo[BadInputError], *fragments: str) -> None:
    message = str(error.value)
    assert "Traceback" not in message
    assert len(message) < 400
    for fragment in fragments:
        assert fragment in message, message


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_blank_png(width: int, height: int) -> bytes:
    """A real, valid 1-bit PNG of the given size whose file is tiny (all rows are zero).

    The pixel data is compressed a block of rows at a time so that neither this helper nor the
    code under test ever holds the decoded image in memory.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = 512
    full_blocks, remainder = divmod(height, rows_per_block)
    block = row * rows_per_block
    parts = [compressor.compress(block) for _ in range(full_blocks)]
    parts.append(compressor.compress(row * remainder))
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


# --- modes ----------------------------------------------------------------------------------


def test_rgb_png_loads_unchanged(tmp_path: Path) -> None:
    original = _photo_like()
    path = _write(tmp_path, "photo.png", _encode(original, "PNG"))

    loaded = load_image(path)

    assert loaded.image.mode == "RGB"
    assert loaded.source_format == "PNG"
    assert loaded.source_mode == "RGB"
    assert loaded.source_size == (256, 192)
    assert loaded.notices == ()
    assert np.array_equal(np.asarray(loaded.image), np.asarray(original))


def test_str_path_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, "photo.png", _encode(_photo_like(), "PNG"))
    assert load_image(str(path)).image.size == (256, 192)


def test_greyscale_l_becomes_rgb(tmp_path: Path) -> None:
    grey = Image.new("L", (20, 10), 77)
    loaded = load_image(_write(tmp_path, "grey.png", _encode(grey, "PNG")))
    assert loaded.source_mode == "L"
    assert _pixel(loaded, (3, 3)) == (77, 77, 77)
    assert loaded.notices == ()


def test_one_bit_becomes_black_and_white_rgb(tmp_path: Path) -> None:
    bilevel = Image.new("1", (16, 8), 0)
    ImageDraw.Draw(bilevel).rectangle((8, 0, 15, 7), fill=1)
    loaded = load_image(_write(tmp_path, "bits.png", _encode(bilevel, "PNG")))
    assert loaded.source_mode == "1"
    assert _pixel(loaded, (2, 2)) == (0, 0, 0)
    assert _pixel(loaded, (12, 2)) == WHITE


def _palette_image() -> Image.Image:
    image = Image.new("P", (20, 10), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    ImageDraw.Draw(image).rectangle((0, 0, 9, 9), fill=0)
    return image


def test_palette_without_transparency_becomes_rgb(tmp_path: Path) -> None:
    loaded = load_image(_write(tmp_path, "pal.png", _encode(_palette_image(), "PNG")))
    assert loaded.source_mode == "P"
    assert _pixel(loaded, (15, 5)) == (10, 200, 30)
    assert _pixel(loaded, (2, 5)) == (0, 0, 0)
    assert loaded.notices == ()


def test_palette_with_transparency_is_flattened_on_white(tmp_path: Path) -> None:
    data = _encode(_palette_image(), "PNG", transparency=0)
    loaded = load_image(_write(tmp_path, "pal_t.png", data))
    assert loaded.source_mode == "P"
    assert _pixel(loaded, (2, 5)) == WHITE  # index 0 was transparent
    assert _pixel(loaded, (15, 5)) == (10, 200, 30)
    assert _codes(loaded) == ["image.alpha_flattened"]


def test_rgba_with_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (30, 10), (200, 0, 0, 255))
    ImageDraw.Draw(rgba).rectangle((0, 0, 9, 9), fill=(0, 0, 255, 0))  # fully transparent blue
    ImageDraw.Draw(rgba).rectangle((10, 0, 19, 9), fill=(0, 0, 0, 128))  # half transparent black
    loaded = load_image(_write(tmp_path, "rgba.png", _encode(rgba, "PNG")))

    assert loaded.source_mode == "RGBA"
    assert _pixel(loaded, (5, 5)) == WHITE
    half = _pixel(loaded, (15, 5))
    assert all(abs(channel - 127) <= 2 for channel in half)
    assert _pixel(loaded, (25, 5)) == (200, 0, 0)
    assert _codes(loaded) == ["image.alpha_flattened"]
    assert any(ch.isdigit() for ch in loaded.notices[0].message)


def test_opaque_rgba_drops_alpha_silently(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (8, 8), (1, 2, 3, 255))
    loaded = load_image(_write(tmp_path, "opaque.png", _encode(rgba, "PNG")))
    assert _pixel(loaded, (4, 4)) == (1, 2, 3)
    assert loaded.notices == ()


def test_la_transparent_area_becomes_white(tmp_path: Path) -> None:
    la = Image.new("LA", (20, 10), (40, 255))
    ImageDraw.Draw(la).rectangle((0, 0, 9, 9), fill=(0, 0))
    loaded = load_image(_write(tmp_path, "la.png", _encode(la, "PNG")))
    assert loaded.source_mode == "LA"
    assert _pixel(loaded, (5, 5)) == WHITE
    assert _pixel(loaded, (15, 5)) == (40, 40, 40)
    assert _codes(loaded) == ["image.alpha_flattened"]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_with_notice(tmp_path: Path, fmt: str) -> None:
    cyan = Image.new("CMYK", (16, 16), (255, 0, 0, 0))
    loaded = load_image(_write(tmp_path, f"cmyk.{fmt.lower()}", _encode(cyan, fmt)))
    assert loaded.source_mode == "CMYK"
    red, green, blue = _pixel(loaded, (8, 8))
    assert red < 20 and green > 235 and blue > 235
    assert _codes(loaded) == ["image.cmyk_converted"]


def test_sixteen_bit_grey_is_scaled_to_eight_bits(tmp_path: Path) -> None:
    deep = Image.fromarray(np.full((6, 9), 257 * 100, dtype=np.uint16))
    assert deep.mode == "I;16"
    loaded = load_image(_write(tmp_path, "deep.png", _encode(deep, "PNG")))
    assert loaded.source_mode in ("I;16", "I")  # how Pillow opens 16-bit PNGs varies by version
    assert _pixel(loaded, (4, 3)) == (100, 100, 100)
    assert _codes(loaded) == ["image.high_bit_depth"]


@pytest.mark.parametrize(("mode", "byte_order"), [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2")])
def test_every_sixteen_bit_layout_maps_full_range(mode: str, byte_order: str) -> None:
    values = np.array([0, 257 * 100, 65535], dtype=byte_order)
    deep = Image.frombytes(mode, (3, 1), values.tobytes())
    loaded = load_image(deep)
    assert [loaded.image.getpixel((x, 0))[0] for x in range(3)] == [0, 100, 255]
    assert _codes(loaded) == ["image.high_bit_depth"]


def test_32bit_integer_within_16bit_range_divides_by_257(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 50, 65535]], dtype=np.int32)
    loaded = load_image(_write(tmp_path, "int.tif", _encode(Image.fromarray(values), "TIFF")))
    assert loaded.source_mode == "I"
    assert [loaded.image.getpixel((x, 0))[0] for x in range(3)] == [0, 50, 255]
    assert _codes(loaded) == ["image.high_bit_depth"]


def test_32bit_integer_beyond_16bit_range_scales_by_its_maximum(tmp_path: Path) -> None:
    values = np.array([[0, 500_000, 1_000_000]], dtype=np.int32)
    loaded = load_image(_write(tmp_path, "int.tif", _encode(Image.fromarray(values), "TIFF")))
    assert [loaded.image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_float_image_is_stretched_by_its_range(tmp_path: Path) -> None:
    values = np.array([[-1.0, 1.0, 3.0]], dtype=np.float32)
    loaded = load_image(_write(tmp_path, "float.tif", _encode(Image.fromarray(values), "TIFF")))
    assert loaded.source_mode == "F"
    assert [loaded.image.getpixel((x, 0))[0] for x in range(3)] == [0, 128, 255]
    assert _codes(loaded) == ["image.high_bit_depth"]


@pytest.mark.parametrize("mode", ["YCbCr", "LAB", "HSV"])
def test_other_colour_spaces_become_rgb(mode: str) -> None:
    source = Image.new("RGB", (8, 8), (200, 30, 30)).convert(mode) if mode != "LAB" else Image.new("LAB", (8, 8))
    loaded = load_image(source)
    assert loaded.image.mode == "RGB"
    assert loaded.source_mode == mode


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La"])
def test_every_alpha_mode_is_flattened_on_white(mode: str) -> None:
    see_through = Image.new(mode, (6, 6))  # all channels zero: fully transparent
    loaded = load_image(see_through)
    assert _pixel(loaded, (3, 3)) == WHITE
    assert _codes(loaded) == ["image.alpha_flattened"]


# --- EXIF orientation ------------------------------------------------------------------------

UPRIGHT_SIZE = (48, 32)  # (width, height); not square, so a missing swap is caught
MARKER_SIZE = (16, 12)


def _upright_with_marker() -> np.ndarray:
    width, height = UPRIGHT_SIZE
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[: MARKER_SIZE[1], : MARKER_SIZE[0]] = RED  # top-left corner of the upright picture
    return pixels


def _as_stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """How a camera stores the upright picture for each EXIF orientation (EXIF 2.3, tag 0x0112).

    Written from the spec's description of where row 0 and column 0 of the stored image lie,
    not from Pillow's transpose table, so the test checks the loader against the standard.
    """
    flip_h = upright[:, ::-1]
    stored_by_orientation = {
        1: upright,
        2: flip_h,  # row 0 = top, column 0 = right
        3: upright[::-1, ::-1],  # row 0 = bottom, column 0 = right
        4: upright[::-1, :],  # row 0 = bottom, column 0 = left
        5: upright.transpose(1, 0, 2),  # row 0 = left, column 0 = top
        6: np.rot90(upright, 1),  # row 0 = right, column 0 = top
        7: np.rot90(upright, 1)[:, ::-1],  # row 0 = right, column 0 = bottom
        8: np.rot90(upright, -1),  # row 0 = left, column 0 = bottom
    }
    return np.ascontiguousarray(stored_by_orientation[orientation])


def _jpeg_with_orientation(pixels: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(pixels), "JPEG", exif=exif, quality=95)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_upright_picture(tmp_path: Path, orientation: int) -> None:
    stored = _as_stored_for_orientation(_upright_with_marker(), orientation)
    path = _write(tmp_path, f"o{orientation}.jpg", _jpeg_with_orientation(stored, orientation))

    loaded = load_image(path)

    assert loaded.image.size == UPRIGHT_SIZE
    assert loaded.source_size == UPRIGHT_SIZE
    width, height = UPRIGHT_SIZE
    marker_w, marker_h = MARKER_SIZE
    red, green, blue = _pixel(loaded, (marker_w // 2, marker_h // 2))
    assert red > 200 and green < 60 and blue < 60, "marker must be in the top-left corner"
    for corner in [(width - 4, 4), (4, height - 4), (width - 4, height - 4)]:
        assert min(_pixel(loaded, corner)) > 200, f"corner {corner} must be white"
    # The marker keeps its proportions: wider than tall, as in the upright picture.
    assert min(_pixel(loaded, (marker_w - 3, marker_h // 2))) < 100
    assert min(_pixel(loaded, (marker_w // 2, marker_h + 3))) > 200


# --- animation -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animation_uses_first_frame_with_notice(tmp_path: Path, fmt: str) -> None:
    first = Image.new("RGB", (24, 24), RED)
    second = Image.new("RGB", (24, 24), (0, 0, 255))
    data = _encode(first, fmt, save_all=True, append_images=[second], duration=100, loop=0)

    loaded = load_image(_write(tmp_path, f"anim.{fmt.lower()}", data))

    red, green, blue = _pixel(loaded, (12, 12))
    assert red > 200 and green < 50 and blue < 50
    assert "image.animated_first_frame" in _codes(loaded)
    notice = loaded.notices[_codes(loaded).index("image.animated_first_frame")]
    assert "2" in notice.message


# --- unsafe and bad files --------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [
        (8_000, 8_000),  # over our 40 MP cap but under Pillow's own limit: our header check
        (10_000, 10_000),  # between 1x and 2x Pillow's limit: Pillow's warning, made an error
        (20_000, 20_000),  # over 2x Pillow's limit: Pillow's DecompressionBombError
    ],
)
def test_decompression_bomb_is_refused_before_decoding(
    tmp_path: Path, size: tuple[int, int], forbid_decoding: None
) -> None:
    pixels_limit_before = Image.MAX_IMAGE_PIXELS
    data = _huge_blank_png(*size)
    assert len(data) < 100_000  # the point of a bomb: a tiny file

    with pytest.raises(BadInputError) as error:
        load_image(_write(tmp_path, "bomb.png", data))

    width, height = size
    _assert_user_message(error, f"{width * height:,}", f"{MAX_PIXELS:,}")
    assert Image.MAX_IMAGE_PIXELS == pixels_limit_before


@pytest.mark.parametrize("size", [(1, 13_000), (13_000, 1)])
def test_side_over_the_cap_is_refused(tmp_path: Path, size: tuple[int, int], forbid_decoding: None) -> None:
    data = _huge_blank_png(*size)
    with pytest.raises(BadInputError) as error:
        load_image(_write(tmp_path, "long.png", data))
    _assert_user_message(error, "13000", "12,000")


def test_caps_can_be_lowered_per_call() -> None:
    data = _encode(Image.new("RGB", (100, 50)), "PNG")
    with pytest.raises(BadInputError) as error:
        load_image(data, max_pixels=4_000)
    _assert_user_message(error, "5,000", "4,000")
    with pytest.raises(BadInputError):
        load_image(data, max_side=99)


def test_truncated_jpeg_is_reported_as_damaged(tmp_path: Path) -> None:
    data = _encode(_photo_like(), "JPEG", quality=90)
    path = _write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(BadInputError) as error:
        load_image(path)
    _assert_user_message(error, "damaged or truncated")


def test_truncated_png_is_reported_as_damaged() -> None:
    data = _encode(_photo_like(), "PNG")
    with pytest.raises(BadInputError) as error:
        load_image(data[: len(data) // 2])
    _assert_user_message(error, "damaged or truncated")


def _assert_not_supported(error: pytest.ExceptionInfo[BadInputError]) -> None:
    _assert_user_message(error, "not a supported image", *ALLOWED_FORMATS)


def test_zero_byte_file_is_not_an_image(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as error:
        load_image(_write(tmp_path, "empty.png", b""))
    _assert_not_supported(error)


def test_empty_bytes_are_not_an_image() -> None:
    with pytest.raises(BadInputError) as error:
        load_image(b"")
    _assert_not_supported(error)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.png", b"This is a text file, not a picture.\n" * 10),
        (
            "drawing.svg",
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
            b'<circle cx="32" cy="32" r="20" fill="red"/></svg>\n',
        ),
        ("noise.jpg", np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes()),
    ],
)
def test_non_images_are_refused(tmp_path: Path, name: str, content: bytes) -> None:
    with pytest.raises(BadInputError) as error:
        load_image(_write(tmp_path, name, content))
    _assert_not_supported(error)


@pytest.mark.parametrize("fmt", ["PDF", "ICO", "TGA"])
def test_formats_outside_the_allowed_list_are_refused(tmp_path: Path, fmt: str) -> None:
    data = _encode(Image.new("RGB", (32, 32), RED), fmt)
    with pytest.raises(BadInputError) as error:
        load_image(_write(tmp_path, f"picture.{fmt.lower()}", data))
    _assert_not_supported(error)


def test_file_over_the_byte_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.png", _encode(_photo_like(), "PNG"))
    size = path.stat().st_size
    with pytest.raises(BadInputError) as error:
        load_image(path, max_bytes=1000)
    _assert_user_message(error, f"{size:,}", "1,000")


def test_bytes_over_the_byte_limit_are_refused() -> None:
    with pytest.raises(BadInputError) as error:
        load_image(b"\0" * 2048, max_bytes=1024)
    _assert_user_message(error, "2,048", "1,024")


def test_missing_file_and_directory_are_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as error:
        load_image(tmp_path / "nope.png")
    _assert_user_message(error, "nope.png")
    with pytest.raises(BadInputError):
        load_image(tmp_path)


# --- other sources ---------------------------------------------------------------------------


def test_bytes_input() -> None:
    loaded = load_image(_encode(Image.new("RGB", (10, 6), RED), "WEBP", lossless=True))
    assert loaded.source_format == "WEBP"
    assert loaded.image.size == (10, 6)
    assert _pixel(loaded, (5, 3)) == RED


def test_in_memory_image_is_normalised_without_touching_the_original() -> None:
    original = Image.new("RGBA", (12, 12), (0, 0, 0, 0))
    ImageDraw.Draw(original).rectangle((6, 0, 11, 11), fill=(0, 0, 255, 255))

    loaded = load_image(original)

    assert loaded.source_format == "in-memory"
    assert loaded.source_mode == "RGBA"
    assert _pixel(loaded, (2, 2)) == WHITE
    assert _pixel(loaded, (9, 2)) == (0, 0, 255)
    assert _codes(loaded) == ["image.alpha_flattened"]
    assert original.mode == "RGBA" and original.getpixel((2, 2)) == (0, 0, 0, 0)
    assert loaded.image is not original


def test_in_memory_image_with_exif_orientation_is_turned_upright() -> None:
    stored = Image.fromarray(_as_stored_for_orientation(_upright_with_marker(), 6))
    stored.getexif()[0x0112] = 6
    loaded = load_image(stored)
    assert loaded.image.size == UPRIGHT_SIZE
    assert _pixel(loaded, (4, 4)) == RED


def test_loaded_image_outlives_its_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "gone.png", _encode(Image.new("RGB", (8, 8), RED), "PNG"))
    loaded = load_image(path)
    path.unlink()
    assert not isinstance(loaded.image, ImageFile.ImageFile)
    assert loaded.image.getpixel((1, 1)) == RED


# --- fit_to_size and enhance -----------------------------------------------------------------


def _square_marker_image(width: int, height: int, side: int) -> Image.Image:
    image = Image.new("RGB", (width, height), WHITE)
    left, top = (width - side) // 2, (height - side) // 2
    ImageDraw.Draw(image).rectangle((left, top, left + side - 1, top + side - 1), fill=(0, 0, 0))
    return image


def _dark_box(image: Image.Image) -> tuple[int, int, int, int]:
    dark = np.asarray(image.convert("L")) < 128
    rows = np.flatnonzero(dark.any(axis=1))
    cols = np.flatnonzero(dark.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@pytest.mark.parametrize(
    ("source_size", "target_size"),
    [((400, 300), (256, 256)), ((300, 400), (320, 180)), ((640, 360), (1024, 576)), ((50, 40), (200, 120))],
)
def test_fit_to_size_covers_and_crops_without_distortion(
    source_size: tuple[int, int], target_size: tuple[int, int]
) -> None:
    source = _square_marker_image(*source_size, side=min(source_size) // 4)

    fitted = fit_to_size(source, *target_size)

    assert fitted.size == target_size
    assert fitted.mode == "RGB"
    left, top, right, bottom = _dark_box(fitted)
    assert abs((right - left) - (bottom - top)) <= 2, "the square marker must stay square"
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    assert abs(centre_x - target_size[0] / 2) <= 2 and abs(centre_y - target_size[1] / 2) <= 2


def test_fit_to_size_returns_rgb_for_other_modes() -> None:
    fitted = fit_to_size(Image.new("RGBA", (30, 20)), 16, 16)
    assert fitted.mode == "RGB" and fitted.size == (16, 16)


def test_enhance_increases_contrast() -> None:
    image = _photo_like()
    enhanced = enhance(image)
    assert enhanced.size == image.size and enhanced.mode == image.mode
    before = np.asarray(image.convert("L"), dtype=np.float64).std()
    after = np.asarray(enhanced.convert("L"), dtype=np.float64).std()
    assert after > before * 1.1


# --- property: any saved image either loads upright in RGB or is refused as bad input --------

PROPERTY_MODES = ("RGB", "RGBA", "L", "P", "CMYK", "I;16", "1")
PROPERTY_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")


def _random_image(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    size = (width, height)
    if mode == "I;16":
        values = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        return Image.frombytes("I;16", size, values.astype("<u2").tobytes())
    bands = {"RGB": 3, "RGBA": 4, "CMYK": 4}.get(mode, 1)
    data = rng.integers(0, 256, (height, width, bands), dtype=np.uint8).tobytes()
    if mode == "P":
        image = Image.frombytes("P", size, data)
        image.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        return image
    if mode == "1":
        return Image.frombytes("L", size, data).convert("1")
    return Image.frombytes(mode, size, data)


def _can_save(fmt: str, mode: str) -> bool:
    try:
        _encode(_random_image(mode, 4, 4, 0), fmt)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return True


SAVABLE = [(fmt, mode) for fmt in PROPERTY_FORMATS for mode in PROPERTY_MODES if _can_save(fmt, mode)]


@st.composite
def saved_images(draw: st.DrawFn) -> tuple[bytes, tuple[int, int], int, bool]:
    """Encoded bytes of a random image, its (width, height), its EXIF orientation, and whether cut short."""
    fmt, mode = draw(st.sampled_from(SAVABLE))
    width = draw(st.integers(1, 300))
    height = draw(st.integers(1, 300))
    orientation = draw(st.integers(1, 8)) if fmt == "JPEG" else 1
    image = _random_image(mode, width, height, draw(st.integers(0, 2**32 - 1)))
    params: dict[str, object] = {}
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        params["exif"] = exif
    data = _encode(image, fmt, **params)
    # Now and then cut the file short: damaged files must also end in BadInputError, never a crash.
    keep = draw(st.one_of(st.none(), st.none(), st.none(), st.floats(0.0, 1.0)))
    if keep is not None:
        data = data[: int(len(data) * keep)]
    return data, (width, height), orientation, keep is not None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(saved_images())
def test_any_saved_image_loads_upright_rgb_or_is_bad_input(
    case: tuple[bytes, tuple[int, int], int, bool],
) -> None:
    data, (width, height), orientation, cut_short = case
    try:
        loaded = load_image(data)
    except BadInputError:
        assert cut_short, "a complete file written by Pillow in an allowed format must load"
        return
    expected = (height, width) if orientation >= 5 else (width, height)
    assert loaded.image.mode == "RGB"
    assert loaded.image.size == expected
    assert loaded.source_size == expected

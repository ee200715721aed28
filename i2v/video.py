"""H.264 mp4 writing (yuv420p: plays in every browser), atomic, with the reproduction record embedded as the
container's comment tag so a video that travels alone can still be reproduced."""
from __future__ import annotations

import logging
import os
import secrets
import subprocess
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def partial_path_for(final: Path) -> Path:
    """Where a file is written before it is renamed into place. Same folder, so the rename is atomic."""
    return final.with_name(f".{final.stem}.{secrets.token_hex(3)}.partial{final.suffix}")


def write_mp4(frames: np.ndarray, path: Path, fps: int, comment: str = "") -> Path:
    """Encode ``frames`` (F, H, W, 3) uint8 to ``path``. Nothing appears at ``path`` unless encoding succeeded."""
    import imageio_ffmpeg

    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (frames, height, width, 3) uint8, got {frames.shape} {frames.dtype}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path_for(path)
    height, width = frames.shape[1:3]
    output_params = ["-crf", "17", "-preset", "medium", "-movflags", "+faststart"]
    if comment:
        output_params += ["-metadata", f"comment={comment}"]
    try:
        writer = imageio_ffmpeg.write_frames(
            str(partial),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=None,
            macro_block_size=2,  # yuv420p needs even sides; our sizes are multiples of the model's, so no resize
            output_params=output_params,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    log.info("wrote %s (%d frames, %dx%d, %d fps)", path, len(frames), width, height, fps)
    return path


def probe_mp4(path: Path) -> dict:
    """Frame count, fps, size, codec and pixel format, as a browser would see them."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    frames = sum(1 for _ in reader)
    return {
        "frames": frames,
        "fps": meta.get("fps"),
        "size": tuple(meta.get("size", ())),
        "codec": meta.get("codec"),
        "pix_fmt": meta.get("pix_fmt"),
    }


def read_mp4_comment(path: Path) -> str:
    """The comment tag embedded by ``write_mp4`` ('' when there is none)."""
    result = subprocess.run(
        [_ffmpeg(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return _parse_ffmetadata(result.stdout.decode("utf-8")).get("comment", "")


def _parse_ffmetadata(text: str) -> dict[str, str]:
    """ffmetadata escapes '=', ';', '#', '\\' and newlines with a backslash; keys come before the first bare '='."""
    tags: dict[str, str] = {}
    key: str | None = None
    buf: list[str] = []
    escaped = False
    for ch in text:
        if escaped:
            buf.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "=" and key is None:
            key, buf = "".join(buf), []
        elif ch == "\n":
            if key is not None:
                tags[key] = "".join(buf)
            key, buf = None, []
        else:
            buf.append(ch)
    if key is not None:
        tags[key] = "".join(buf)
    return tags

"""H.264 mp4 writing (yuv420p: plays in every browser), with an AAC sound track for models that make one, atomic,
with the reproduction record embedded as the container's comment tag so a video that travels alone can still be
reproduced."""
from __future__ import annotations

import errno
import logging
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from i2v.errors import OutputWriteError, VideoEncodeError

log = logging.getLogger(__name__)

ENCODE_TIMEOUT_S = 600  # a few seconds is normal; this only stops an ffmpeg that hangs from blocking the worker
AUDIO_BITRATE = "192k"  # ample for 24 kHz stereo speech, music and effects


@dataclass(frozen=True)
class AudioTrack:
    """A sound track to mux beside the frames: float32 samples (channels, samples) in [-1, 1] at ``sample_rate``."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples.shape[1] / self.sample_rate

    def to_dict(self) -> dict:
        return {"codec": "aac", "sample_rate": self.sample_rate, "channels": self.channels,
                "seconds": round(self.seconds, 4)}


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def partial_path_for(final: Path) -> Path:
    """Where a file is written before it is renamed into place. Same folder, so the rename is atomic."""
    return final.with_name(f".{final.stem}.{secrets.token_hex(3)}.partial{final.suffix}")


def write_mp4(frames: np.ndarray, path: Path, fps: int, comment: str = "", audio: AudioTrack | None = None) -> Path:
    """Encode ``frames`` (F, H, W, 3) uint8 to ``path``, with ``audio`` as an AAC track when given. Nothing appears at
    ``path`` unless encoding succeeded; a failure raises ``OutputWriteError`` (disk full, folder not writable) or
    ``VideoEncodeError`` and leaves no partial file."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected (frames, height, width, 3) uint8, got {frames.shape} {frames.dtype}")
    path = Path(path)
    partial = partial_path_for(path)
    height, width = frames.shape[1:3]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created here, not by ffmpeg, so a folder we may not write fails with the OS's own error number
        # instead of a line in ffmpeg's output.
        open(partial, "xb").close()
        _encode(frames, partial, fps, comment, audio)
        os.replace(partial, path)
    except OSError as exc:
        _remove_partial(partial)
        raise OutputWriteError.from_os_error(exc, path, "the video") from exc
    except BaseException:
        _remove_partial(partial)
        raise
    log.info("wrote %s (%d frames, %dx%d, %d fps%s)", path, len(frames), width, height, fps,
             f", {audio.channels}-channel AAC at {audio.sample_rate} Hz" if audio is not None else "")
    return path


def _encode(frames: np.ndarray, partial: Path, fps: int, comment: str, audio: AudioTrack | None = None) -> None:
    """Run ffmpeg on the raw frames (and the raw samples). imageio_ffmpeg.write_frames is not used: it ignores
    ffmpeg's exit status (a failed encode left a truncated mp4 that was kept as a success) and does not capture
    ffmpeg's messages."""
    if audio is None:
        _run_ffmpeg(frames, partial, fps, comment, None)
        return
    # The frames go through stdin; the samples through a file in the system's temporary folder (never the output
    # folder, so a failure leaves nothing there), removed whatever happens.
    with tempfile.NamedTemporaryFile(prefix="i2v-audio-", suffix=".f32") as samples:
        samples.write(np.ascontiguousarray(audio.samples.T, dtype="<f4").tobytes())  # interleaved
        samples.flush()
        _run_ffmpeg(frames, partial, fps, comment, (audio, samples.name))


def _run_ffmpeg(frames: np.ndarray, partial: Path, fps: int, comment: str,
                audio: tuple[AudioTrack, str] | None) -> None:
    height, width = frames.shape[1:3]
    command = [
        _encoder(), "-y", "-v", "error",
        "-f", "rawvideo", "-vcodec", "rawvideo", "-s", f"{width}x{height}", "-pix_fmt", "rgb24",
        "-r", str(Fraction(fps).limit_denominator()), "-i", "-",
    ]
    if audio is None:
        command.append("-an")
    else:
        track, samples_file = audio
        command += ["-f", "f32le", "-ar", str(track.sample_rate), "-ac", str(track.channels), "-i", samples_file,
                    "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", AUDIO_BITRATE]
    command += [
        "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "17", "-preset", "medium", "-movflags", "+faststart",
    ]
    if width % 2 or height % 2:  # yuv420p needs even sides (the model's sizes always are)
        command += ["-vf", f"scale={width + width % 2}:{height + height % 2}"]
    if comment:
        command += ["-metadata", f"comment={comment}"]
    command.append(str(partial))
    try:
        # run() feeds stdin and drains stderr together, so a chatty or dying ffmpeg cannot block us.
        done = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True,
                              timeout=ENCODE_TIMEOUT_S)
    except OSError as exc:  # the executable is missing or not runnable: not a problem of the output folder
        raise VideoEncodeError(
            f"The video encoder could not be started ({command[0]}: {exc.strerror or exc}). Reinstall it with "
            "`pip install --force-reinstall imageio-ffmpeg`, or set IMAGEIO_FFMPEG_EXE to a working ffmpeg; "
            "no video was saved."
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise VideoEncodeError(
            f"The video encoder (ffmpeg) did not finish within {ENCODE_TIMEOUT_S} s and was stopped; no video was "
            "saved. The machine may be overloaded: try again, or with fewer frames or a lower resolution."
        ) from exc
    errors = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == 0 and partial.is_file() and partial.stat().st_size > 0:
        if errors:
            log.warning("ffmpeg: %s", errors)
        return
    log.error("ffmpeg failed (exit code %s) writing %s:\n%s", done.returncode, partial, errors or "(no output)")
    _raise_for_ffmpeg_failure(done.returncode, errors, partial)


def _encoder() -> str:
    try:
        return _ffmpeg()
    except RuntimeError as exc:  # imageio-ffmpeg found no binary and IMAGEIO_FFMPEG_EXE is not set
        raise VideoEncodeError(
            f"The video encoder (ffmpeg) was not found ({exc}). Reinstall it with `pip install --force-reinstall "
            "imageio-ffmpeg`, or set IMAGEIO_FFMPEG_EXE to a working ffmpeg; no video was saved."
        ) from exc


def _raise_for_ffmpeg_failure(returncode: int, errors: str, partial: Path) -> None:
    # ffmpeg reports a failed write with the system's text for the error number (strerror): turn the ones a user
    # can fix (full disk, unwritable or read-only folder) back into that error, so they get the same message as
    # when Python itself writes.
    for number in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS):
        if os.strerror(number) in errors:
            raise OSError(number, os.strerror(number), str(partial))
    lines = errors.splitlines()
    last = lines[-1] if lines else "no message"
    raise VideoEncodeError(
        f"The video encoder (ffmpeg) failed with exit code {returncode}: {last[:300]}. No video was saved. Check "
        "that imageio-ffmpeg is installed correctly (`pip install --force-reinstall imageio-ffmpeg`) or that "
        "IMAGEIO_FFMPEG_EXE points at a working ffmpeg; the log has ffmpeg's full output."
    )


def _remove_partial(partial: Path) -> None:
    try:
        partial.unlink(missing_ok=True)
    except OSError as exc:  # the original error matters more; say what is left behind
        log.error("could not remove the partial file %s: %s", partial, exc)


def audio_streams(path: Path) -> list[str]:
    """The audio streams of ``path`` as ffmpeg describes them ("Audio: aac (LC) (mp4a / 0x6134706D), 24000 Hz,
    stereo, fltp, 191 kb/s"); empty when it has none."""
    result = subprocess.run([_ffmpeg(), "-hide_banner", "-i", str(path)], capture_output=True, timeout=60)
    lines = result.stderr.decode("utf-8", "replace").splitlines()  # `ffmpeg -i` alone exits 1 after describing
    return [line.split("Audio:", 1)[1].strip() for line in lines if "Stream #" in line and "Audio:" in line]


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

"""Error classes. Every failure the engine raises is one of these, so callers can tell
what to show a user (bad input), what was handled (recoverable) and what is fatal."""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path


class I2VError(Exception):
    """Base class. ``kind`` is stable and machine-readable (used in sidecars, the CLI and the API)."""

    kind = "fatal"


class BadInputError(I2VError):
    """The request or its files are wrong. The message says what and what to do; show it as is."""

    kind = "bad_input"


class DataFileError(I2VError):
    """A preset or keyword data file is invalid. Fatal at start-up: the message names file and key."""

    kind = "fatal"


class ModelLoadError(I2VError):
    """The model could not be loaded or is internally inconsistent (e.g. VAE/UNet channel mismatch)."""

    kind = "fatal"


class ModelNotAvailableError(ModelLoadError):
    """The weights are neither in a local folder nor in the local cache, and cannot be downloaded."""


class RecoverableError(I2VError):
    """Something went wrong during a run that the engine handles (retry, smaller plan) before giving up."""

    kind = "recoverable"


class NonFiniteOutputError(RecoverableError):
    """NaN/Inf in latents or frames: writing them would give a black video."""


class GpuOutOfMemoryError(RecoverableError):
    """The GPU ran out of memory and the one retry on a smaller plan did not help. The process keeps serving."""


class JobCancelled(I2VError):
    """The user cancelled the job. Not an error for the user, but it ends the job without output."""

    kind = "cancelled"


class NotEnoughDiskSpaceError(BadInputError):
    """Too little free disk space to start the job. Refused up front like bad input (shown as is, nothing
    started), though the cause is the machine: the message has the figures and what to free."""


class OutputWriteError(I2VError):
    """A video or its record could not be saved: disk full, folder not writable, read-only disk, or the video
    encoder failed. The job fails without leaving a partial file; the message names the folder and what to do."""

    kind = "fatal"

    @classmethod
    def from_os_error(cls, exc: OSError, path, what: str) -> "OutputWriteError":
        """``what`` ("the video", "the video's record") could not be written to ``path`` because of ``exc``."""
        folder = _nearest_existing_folder(Path(path).parent)
        reason = exc.strerror or str(exc)
        elsewhere = "or choose another output folder (--output-dir, or I2V_OUTPUT_DIR for the app)"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return cls(f"The disk is full: {what} could not be saved in {folder} ({reason}). Free some space on "
                       f"that disk (old videos are in the outputs folder) {elsewhere}, then run the job again.")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return cls(f"The folder {folder} is not writable by this app ({reason}), so {what} could not be saved. "
                       f"Make it writable for the user running the app (e.g. chmod u+w or chown it) {elsewhere}, "
                       "then run the job again.")
        if exc.errno == errno.EROFS:
            return cls(f"The folder {folder} is on a read-only file system, so {what} could not be saved. Remount "
                       f"it read-write {elsewhere}, then run the job again.")
        return cls(f"{what[0].upper()}{what[1:]} could not be saved in {folder} ({reason}). Check that the folder "
                   f"exists, is writable and its disk has room, {elsewhere}, then run the job again.")


class VideoEncodeError(OutputWriteError):
    """The video encoder (ffmpeg) could not be started or failed for a reason other than the disk."""


def _nearest_existing_folder(folder: Path) -> Path:
    """The folder the failed write depends on: where the file would go, or, when that is not there yet (its
    creation failed), the nearest folder above it that exists."""
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


# -- showing values and paths in messages ----------------------------------------------------------------------

_SHOWN_CHARS = 40
# An absolute POSIX path in a message: starts after a space or quote, never inside a URL ("https://…/x") or a word.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[^\s'\"()<>\[\]{},;]+")


def shown(value: object) -> str:
    """``value`` as a one-line message may echo it: a whole number beyond 24 digits in short form (``1e+300``, not
    301 digits), text cut after 40 characters with its length, anything else cut the same way."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**24:
        try:
            return f"{value:.3g}"
        except OverflowError:  # beyond a float's range
            return f"a {len(str(abs(value)))}-digit number"
    if isinstance(value, str) and len(value) > _SHOWN_CHARS:
        return f"{value[:_SHOWN_CHARS]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= 2 * _SHOWN_CHARS else text[: 2 * _SHOWN_CHARS] + "…"


def without_server_paths(message: str, outputs: Path) -> str:
    """``message`` for someone who reached the app over HTTP: paths inside the outputs folder become
    ``outputs/…``, the folder itself "the outputs folder", and any other absolute path its last part. The operator
    finds the full paths in the log."""
    roots = {str(Path(outputs).absolute()), os.path.realpath(outputs)}

    def public(match: re.Match) -> str:
        path = match.group(0)
        tail = path[len(path.rstrip(".:")):]  # a sentence's full stop or colon after the path stays
        path = path[: len(path) - len(tail)]
        for root in roots:
            if path == root:
                return "the outputs folder" + tail
            if path.startswith(root + "/"):
                return "outputs/" + path[len(root) + 1:] + tail
            if root.startswith(path.rstrip("/") + "/"):
                return "the disk of the outputs folder" + tail
        return (os.path.basename(path.rstrip("/")) or "/") + tail

    return _ABSOLUTE_PATH.sub(public, message)

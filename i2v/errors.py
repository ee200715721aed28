"""Error classes. Every failure the engine raises is one of these, so callers can tell
what to show a user (bad input), what was handled (recoverable) and what is fatal."""
from __future__ import annotations


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

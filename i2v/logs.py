"""One logging configuration for the engine, the CLI and the app. Every line carries the job id of the job that
produced it (``-`` outside a job), taken from a context variable so library code needs no extra argument."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import logging.handlers
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_job_id: contextvars.ContextVar[str] = contextvars.ContextVar("i2v_job_id", default="-")

LOG_FORMAT = "%(asctime)s %(levelname)s [job %(job_id)s] %(name)s: %(message)s"


def new_job_id() -> str:
    return secrets.token_hex(4)


def current_job_id() -> str:
    return _job_id.get()


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[str]:
    token = _job_id.set(job_id)
    try:
        yield job_id
    finally:
        _job_id.reset(token)


class JobIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):  # a worker process's record arrives with the id of the job it ran
            record.job_id = _job_id.get()
        return True


LATEST_LINK = "latest.log"
ROTATED_PARTS = 5  # app_X.log.1 … .5 beside the live file: a long run keeps at most 6 × max_bytes


def configure_logging(level: int | str = logging.INFO, log_file: Path | None = None, stream=sys.stderr,
                      *, max_bytes: int = 0) -> None:
    """Install our handlers on the root logger (replacing earlier ones of ours). Call once from an entry point.
    With ``max_bytes`` the log file rotates (``.1`` … ``.5``) when it reaches that size."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_i2v", False):
            root.removeHandler(handler)
    handlers: list[logging.Handler] = []
    if stream is not None:
        handlers.append(logging.StreamHandler(stream))
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes,
                                                             backupCount=ROTATED_PARTS if max_bytes else 0,
                                                             encoding="utf-8"))
    for handler in handlers:
        handler._i2v = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        handler.addFilter(JobIdFilter())
        root.addHandler(handler)
    root.setLevel(level)
    # Libraries that log per tensor or per request at INFO drown the job lines.
    for noisy in ("httpx", "urllib3", "huggingface_hub", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # diffusers/transformers set their own level when first imported (after this call), from these variables.
    # Their warnings on every load (I2VGen-XL's deprecation, the torchvision fallback, key reports) are
    # replaced by our own model warnings; set the variables to "warning" to see them again.
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def new_run_log(log_dir: Path, *, keep: int) -> Path:
    """The log file for this run, ``app_YYYYmmdd_HHMMSS.log``, with ``latest.log`` pointing at it; older runs'
    files (with their rotated parts) beyond the newest ``keep`` are deleted."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d_%H%M%S")
    path = log_dir / f"app_{stamp}.log"
    suffix = 1
    while path.exists():  # two starts in one second (a quick restart) must not share a file
        path, suffix = log_dir / f"app_{stamp}_{suffix}.log", suffix + 1
    path.touch()
    link = log_dir / LATEST_LINK
    staging = log_dir / f".{LATEST_LINK}.{os.getpid()}"
    staging.unlink(missing_ok=True)
    staging.symlink_to(path.name)
    staging.replace(link)  # atomic: `tail -F latest.log` never sees it missing
    _prune_run_logs(log_dir, keep)
    return path


def _prune_run_logs(log_dir: Path, keep: int) -> None:
    runs = sorted(log_dir.glob("app_*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in runs[keep:]:
        for part in [old, *log_dir.glob(f"{old.name}.*")]:
            part.unlink(missing_ok=True)

"""Free disk space, checked before a job starts: a job that would fill the disk fails at the last step (the
video write) after minutes of GPU time, and a full disk also breaks the job database and the logs.

The need is a deliberate over-estimate: h264 at our quality (crf 17) keeps noisy content at up to about a quarter
of the raw frame bytes, so half of them per video is safe, plus the record, poster and a temporary copy.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from i2v.errors import NotEnoughDiskSpaceError

log = logging.getLogger(__name__)

DEFAULT_RESERVE_BYTES = 1024 * 2**20  # left free for the job database, logs and the system
PER_VIDEO_OVERHEAD_BYTES = 2 * 2**20  # JSON record, poster JPEG, container headers


def job_bytes(width: int, height: int, frames: int, videos: int) -> int:
    """Upper estimate of what a job writes."""
    raw_per_video = width * height * 3 * frames
    return videos * (raw_per_video // 2 + PER_VIDEO_OVERHEAD_BYTES)


def existing_parent(path: Path) -> Path:
    """The folder a not-yet-created output path will live on (its nearest existing ancestor)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(folder: Path, need_bytes: int, reserve_bytes: int = DEFAULT_RESERVE_BYTES) -> None:
    """Raise ``NotEnoughDiskSpaceError`` with the figures when ``need_bytes`` would leave less than
    ``reserve_bytes`` free on the disk holding ``folder``."""
    where = existing_parent(folder)
    try:
        free = shutil.disk_usage(where).free
    except OSError as exc:  # an unreadable mount: the write itself will say what is wrong
        log.warning("cannot read the free space of %s (%s): not checked", where, exc)
        return
    if free - need_bytes >= reserve_bytes:
        return
    raise NotEnoughDiskSpaceError(
        f"Not enough free disk space for this job in {where}: {_gb(free)} free, the job needs up to "
        f"{_gb(need_bytes)} and {_gb(reserve_bytes)} must stay free (I2V_MIN_FREE_MB). Free some space (old "
        "videos are in the outputs folder; I2V_RETENTION_DAYS deletes old ones automatically), or choose fewer "
        "frames, a lower resolution or fewer candidates."
    )


def _gb(size: int) -> str:
    return f"{size / 2**30:.2f} GB" if size >= 2**30 else f"{size / 2**20:.0f} MB"

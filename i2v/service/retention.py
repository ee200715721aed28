"""Optional retention: delete outputs older than N days, so a shared box does not fill its disk.

Off unless ``I2V_RETENTION_DAYS`` is set: outputs are never deleted silently. When on, every deleted job and file
is logged, with a summary line. What goes: finished jobs (their history entry, videos, records and posters) that
ended before the cutoff; other videos, records and posters in the dated folders (``outputs/YYYYMMDD/``, e.g. from
the command line) last written before it; kept input pictures no remaining job refers to. Nothing outside the
outputs folder is touched, and jobs still queued or running never are.
"""
from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from i2v.service.jobs import JobListener
from i2v.service.jobstore import JobStore

log = logging.getLogger(__name__)

OUTPUT_SUFFIXES = (".mp4", ".json", ".jpg")
DATED_FOLDER = re.compile(r"^\d{8}$")
INPUTS_FOLDER = "inputs"
PRUNE_EVERY_S = 3600.0  # after a job, at most once an hour: listing the folders is not free on a big disk


@dataclass
class PruneReport:
    jobs: list[str] = field(default_factory=list)
    files: int = 0
    bytes: int = 0


def prune_outputs(output_dir: Path, store: JobStore, days: float, *, now: float | None = None) -> PruneReport:
    """Delete what is older than ``days`` (see the module doc). Returns what went."""
    report = PruneReport()
    if days <= 0:
        return report
    root = Path(output_dir).resolve()
    cutoff = (now if now is not None else time.time()) - days * 86400
    for record in store.delete_finished_before(cutoff):
        report.jobs.append(record.id)
        for video in (record.result or {}).get("videos", []):
            for key in ("path", "sidecar", "poster"):
                if video.get(key):
                    _delete(Path(video[key]), root, report)
        log.info("retention: deleted job %s (%s, %s)", record.id, record.state,
                 time.strftime("%Y-%m-%d", time.localtime(record.finished_at or record.created_at)))
    kept_paths, active_ids = store.protected_files()
    kept = {str(Path(p).resolve()) for p in kept_paths}
    for folder in _dated_folders(root):
        for path in folder.iterdir():
            if (path.suffix in OUTPUT_SUFFIXES and path.is_file() and path.stat().st_mtime < cutoff
                    and str(path.resolve()) not in kept and not any(job in path.name for job in active_ids)):
                _delete(path, root, report)
        if not any(folder.iterdir()):
            folder.rmdir()
    still_used = {str(Path(p).resolve()) for p in store.image_paths()}
    inputs = root / INPUTS_FOLDER
    if inputs.is_dir():
        for path in inputs.iterdir():
            if path.is_file() and str(path.resolve()) not in still_used and path.stat().st_mtime < cutoff:
                _delete(path, root, report)
    if report.jobs or report.files:
        log.warning("retention (%g days): deleted %d jobs and %d files (%.1f MB) older than %s", days,
                    len(report.jobs), report.files, report.bytes / 2**20,
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(cutoff)))
    return report


class RetentionListener(JobListener):
    """Prunes after a job finishes, at most once per ``every`` seconds (the app also prunes at start)."""

    def __init__(self, output_dir: Path, store: JobStore, days: float, *, every: float = PRUNE_EVERY_S):
        self.output_dir, self.store, self.days, self.every = output_dir, store, days, every
        self._last = time.monotonic()

    def job_finished(self, job_id: str, state: str, **details) -> None:
        if self.days > 0 and time.monotonic() - self._last >= self.every:
            self._last = time.monotonic()
            prune_outputs(self.output_dir, self.store, self.days)


def _dated_folders(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and DATED_FOLDER.match(p.name)]


def _delete(path: Path, root: Path, report: PruneReport) -> None:
    try:
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or path.is_symlink():
            log.warning("retention: %s is not an output of this app: left alone", path)
            return
        size = resolved.stat().st_size
        resolved.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        log.error("retention: cannot delete %s: %s", path, exc)
        return
    report.files += 1
    report.bytes += size
    log.info("retention: deleted %s", path)

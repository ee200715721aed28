"""Every job the app ran or will run, in one small SQLite file under the outputs folder.

The store is the app's memory across restarts: the history gallery reads it, and a job that was queued or
running when the process died is marked ``interrupted`` at the next start (its half-written files swept by the
caller). One row per job; the request's settings, the result and the error are JSON columns so the schema stays
small. Writes are short transactions from any thread (one connection per call; WAL journal).
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FILE_NAME = "jobs.sqlite3"
STATES = ("queued", "running", "done", "failed", "cancelled", "interrupted")
FINISHED_STATES = ("done", "failed", "cancelled", "interrupted")
SCHEMA_VERSION = 2  # 2: the owner column
SQLITE_IOERR, SQLITE_FULL = 10, 13  # primary result codes (an extended code's low byte)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    settings TEXT NOT NULL,
    image_path TEXT,
    result TEXT,
    error_kind TEXT,
    error_message TEXT,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
"""


@dataclass
class JobRecord:
    id: str
    state: str
    created_at: float
    settings: dict[str, Any]  # what the user asked for, in the form "load these settings" needs
    image_path: str | None = None  # the app's own copy of the input picture
    started_at: float | None = None
    finished_at: float | None = None
    result: dict[str, Any] | None = None  # videos, notices, warnings, params (see JobManager)
    error_kind: str | None = None
    error_message: str | None = None
    owner: str | None = None  # SHA-256 of the submitter's secret (JobManager); None: anyone may steer it

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class JobStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)
            _add_missing_columns(db)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def in_folder(cls, folder: Path) -> "JobStore":
        return cls(Path(folder) / FILE_NAME)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._open()
            try:
                db.row_factory = sqlite3.Row
                with db:  # one transaction: committed on success, rolled back on error
                    yield db
            finally:
                db.close()

    def _open(self) -> sqlite3.Connection:
        """A connection in WAL mode. On a full disk SQLite cannot even open the database that way: the last
        connection to close checkpointed the log and removed ``-wal`` and ``-shm``, and creating them again needs
        space ("disk I/O error"). The file then holds everything, so it is opened read-only as it stands: the
        history and the job states stay readable, and writes fail as they would anyway."""
        db = None
        try:
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            return db
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF not in (SQLITE_IOERR, SQLITE_FULL):
                raise
            log.warning("the job database cannot be opened for writing (%s): read as it stands", exc)
            return sqlite3.connect(f"{self.path.absolute().as_uri()}?immutable=1", uri=True)

    # -- writes --------------------------------------------------------------------------------------------
    def add(self, record: JobRecord) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, state, created_at, settings, image_path, owner) VALUES (?, ?, ?, ?, ?, ?)",
                (record.id, record.state, record.created_at, json.dumps(record.settings), record.image_path,
                 record.owner),
            )

    def mark_running(self, job_id: str) -> None:
        self._update(job_id, state="running", started_at=time.time())

    # ``finished_at``: when the job ended, if that was earlier than now (a write retried after a full disk).
    def mark_done(self, job_id: str, result: dict[str, Any], *, finished_at: float | None = None) -> None:
        self._update(job_id, state="done", finished_at=finished_at or time.time(), result=json.dumps(result))

    def mark_failed(self, job_id: str, kind: str, message: str, result: dict[str, Any] | None = None, *,
                    finished_at: float | None = None) -> None:
        self._update(job_id, state="failed", finished_at=finished_at or time.time(), error_kind=kind,
                     error_message=message, result=json.dumps(result) if result is not None else None)

    def mark_cancelled(self, job_id: str, *, finished_at: float | None = None) -> None:
        self._update(job_id, state="cancelled", finished_at=finished_at or time.time())

    def mark_unfinished_interrupted(self) -> list[JobRecord]:
        """At start-up: jobs a previous process left queued or running did not finish. Returns them."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs WHERE state IN ('queued', 'running')").fetchall()
            db.execute(
                "UPDATE jobs SET state = 'interrupted', finished_at = ?, error_kind = 'interrupted', "
                "error_message = ? WHERE state IN ('queued', 'running')",
                (time.time(), "The app stopped before this job finished; nothing was saved from it."),
            )
        return [_record(row) for row in rows]

    def mark_queued_again(self, job_id: str) -> None:
        """A running job's worker died under it (the app lives on): it waits again, first in the queue."""
        self._update(job_id, state="queued", started_at=None)

    def mark_requeued(self, job_id: str, new_id: str) -> None:
        """An interrupted job was queued again as ``new_id``: say so in its history entry (it stays interrupted)."""
        with self._connect() as db:
            db.execute("UPDATE jobs SET result = ?, error_message = COALESCE(error_message, '') || ? WHERE id = ?",
                       (json.dumps({"requeued_as": new_id}), f" Re-queued as job {new_id}.", job_id))

    def delete_finished_before(self, cutoff: float) -> list[JobRecord]:
        """Retention: remove finished jobs that ended (or, never started, were created) before ``cutoff``.
        Returns them, so their files can be deleted too."""
        condition = "state IN ('done', 'failed', 'cancelled', 'interrupted') AND COALESCE(finished_at, created_at) < ?"
        with self._connect() as db:
            rows = db.execute(f"SELECT * FROM jobs WHERE {condition}", (cutoff,)).fetchall()
            db.execute(f"DELETE FROM jobs WHERE {condition}", (cutoff,))
        return [_record(row) for row in rows]

    def protected_files(self) -> tuple[set[str], set[str]]:
        """Retention must not touch these: the output paths of the jobs still recorded, and the ids of jobs in
        flight (their file names carry the id before the result is recorded)."""
        paths: set[str] = set()
        with self._connect() as db:
            for (result,) in db.execute("SELECT result FROM jobs WHERE result IS NOT NULL"):
                for video in json.loads(result).get("videos", []):
                    paths.update(str(video[key]) for key in ("path", "sidecar", "poster") if video.get(key))
            active = {row[0] for row in db.execute("SELECT id FROM jobs WHERE state IN ('queued', 'running')")}
        return paths, active

    def image_paths(self) -> set[str]:
        """The kept input pictures some job still refers to: its picture and its last frame (in its settings)."""
        with self._connect() as db:
            pictures = {row[0] for row in db.execute(
                "SELECT DISTINCT image_path FROM jobs WHERE image_path IS NOT NULL")}
            last_frames = {row[0] for row in db.execute(
                "SELECT DISTINCT json_extract(settings, '$.last_image') FROM jobs "
                "WHERE json_extract(settings, '$.last_image') IS NOT NULL")}
        return pictures | last_frames

    def _update(self, job_id: str, **columns: Any) -> None:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        with self._connect() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*columns.values(), job_id))

    # -- reads ---------------------------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _record(row) if row else None

    def recent(self, limit: int = 50, states: tuple[str, ...] = STATES) -> list[JobRecord]:
        """Newest first."""
        marks = ", ".join("?" for _ in states)
        with self._connect() as db:
            rows = db.execute(
                f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created_at DESC LIMIT ?", (*states, limit)
            ).fetchall()
        return [_record(row) for row in rows]


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A database from an older version keeps its rows: a column added since is added empty (its jobs have no
    owner, so whoever may see them may steer them, as before)."""
    present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    if "owner" not in present:
        db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT")


def _record(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        id=row["id"], state=row["state"], created_at=row["created_at"], settings=json.loads(row["settings"]),
        image_path=row["image_path"], started_at=row["started_at"], finished_at=row["finished_at"],
        result=json.loads(row["result"]) if row["result"] else None, error_kind=row["error_kind"],
        error_message=row["error_message"], owner=row["owner"] if "owner" in row.keys() else None,
    )

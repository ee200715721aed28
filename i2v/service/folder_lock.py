"""One app per output folder. Start-up marks the jobs the folder's database says are running as interrupted and
deletes their files, which is right after a crash but would destroy the work of a second app still running on the
same folder. An advisory lock (flock) on ``outputs/.app.lock`` tells the two cases apart; the kernel drops it when
its process dies, kill -9 included, so a crash never leaves a stale lock behind.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from i2v.errors import I2VError

LOCK_NAME = ".app.lock"


class FolderInUseError(I2VError):
    """Another app (or ``python -m i2v requeue``) works on this output folder now."""

    kind = "fatal"


class FolderLock:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._file = None

    def acquire(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise FolderInUseError(
                f"Another I2V Studio (PID {holder}) is using the output folder {self.folder} right now. Stop it "
                "first (./start_app.sh stop), or give this one its own folder with --output-dir."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor drops the flock
            self._file = None

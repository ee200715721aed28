"""Keep Gradio's file routes to the app's own files.

Gradio serves ``/gradio_api/file=<path>`` (and the older ``/gradio_api/file/<path>``) from ``allowed_paths`` (our
outputs folder) and from its own upload/cache folders, and refuses the ``blocked_paths`` (the job database). Two
gaps remain, measured against Gradio 6 (tests/test_file_safety.py):

* its block list is checked on the *lower-cased* path, which no longer resolves symlinks when the outputs folder
  has capitals in its name, so a link in outputs/ pointing at ``jobs.sqlite3`` handed out the database;
* it serves everything else in outputs/, hidden half-written ``.name.partial.mp4`` files included, and fetches
  any public ``http(s)`` URL on the caller's behalf.

``FileGuardMiddleware`` answers those requests itself (403) before Gradio sees them: the requested path is
resolved with ``os.path.realpath`` exactly as Gradio will read it, and must land in the real outputs folder (not
a hidden file, not the job database or its journals) or in Gradio's upload/cache folders (uploads and the copies
of results the page shows).

Everything the file routes do serve gets ``X-Content-Type-Options: nosniff`` and a sandboxing
``Content-Security-Policy``, and whatever is not a picture, video or sound is sent as a download
(``Content-Disposition: attachment``): Gradio serves files inline with a type guessed from their name, so an HTML
or SVG file in outputs/ or in the upload folder ran its script in the app's origin, with the visitor's credentials.
An SQLite database is refused by its content, whatever its name (a ``backup_jobs.db`` copy of the job database).

``guard_files`` also switches on Gradio's check that files given as *inputs* were uploaded: Gradio skips it until
``Blocks.launch()`` has run, which ``mount_gradio_app`` never calls, so a script could send
``{"path": "/etc/passwd"}`` to ``/generate``, have it copied into the cache, and read the copy back.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from gradio import utils as gradio_utils

from i2v.service.jobstore import FILE_NAME as JOBS_DB

log = logging.getLogger(__name__)

# The Gradio routes that read a file named by the caller (gradio/routes.py: ``file`` and ``file_deprecated``).
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")
_REFUSAL = json.dumps({"detail": "File not allowed."}).encode("utf-8")
# Shown inline (the page's players and gallery need that); anything else is a download. Not SVG: it runs scripts.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/avif",
                          "video/mp4", "video/webm", "audio/mpeg", "audio/wav", "audio/x-wav", "audio/ogg",
                          "audio/mp4"})
# Even opened on its own, a served file may run nothing, load nothing and is a sandboxed, unique origin.
FILE_POLICY = b"default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox"
# The first bytes of an SQLite database, its write-ahead log (two byte orders) and its rollback journal.
SQLITE_MAGIC = (b"SQLite format 3\x00", b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83", b"\xd9\xd5\x05\xf9\x20\xa1\x63\xd7")


def guard_files(api, blocks, outputs: Path) -> None:
    """Put the file guard in front of ``api`` and make Gradio check that input files were uploaded."""
    # Gradio's input check (processing_utils._check_allowed) only runs once ``has_launched`` is set.
    blocks.has_launched = True
    api.add_middleware(FileGuardMiddleware, outputs=outputs)


class FileGuardMiddleware:
    """Refuse file-route requests whose real path is not one the app means to serve."""

    def __init__(self, app, *, outputs: Path):
        self.app = app
        self.outputs = os.path.realpath(outputs)
        # Where Gradio keeps uploads and the copies of results it hands to the page (GRADIO_TEMP_DIR, default
        # /tmp/gradio), and cached examples; read once, as Gradio itself does at start.
        self.gradio_folders = tuple(os.path.realpath(folder) for folder in
                                    (gradio_utils.get_upload_folder(), gradio_utils.get_cache_folder()))

    async def __call__(self, scope, receive, send) -> None:
        requested = _requested_file(scope) if scope["type"] == "http" else None
        reason = None if requested is None else self.refusal(requested)
        if reason is None:
            await self.app(scope, receive, send if requested is None else _with_safe_headers(send))
            return
        # %r: a requested path with encoded newlines must not forge log lines
        log.warning("refused %s %r: %s", scope.get("method", "?"), requested[:200], reason)
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(_REFUSAL)).encode("ascii")),
            (b"cache-control", b"no-store"),
        ]})
        await send({"type": "http.response.body", "body": _REFUSAL})

    def refusal(self, requested: str) -> str | None:
        """Why ``requested`` (the path as Gradio will receive it) must not be served, or None to let Gradio decide."""
        if not os.path.isabs(requested):
            # The page only ever asks for absolute paths; anything else is a URL Gradio would fetch for the
            # caller, or a path relative to the server's working directory (the project, its .venv).
            return "not an absolute path"
        try:
            real = os.path.realpath(requested)
        except (OSError, ValueError):  # NUL bytes, names too long: nothing we serve looks like that
            return "unreadable path"
        inside_outputs = _relative_parts(real, self.outputs)
        if inside_outputs is not None:
            reason = _outputs_refusal(inside_outputs)
        elif any(_relative_parts(real, folder) is not None for folder in self.gradio_folders):
            reason = None
        else:
            return "outside the outputs folder"
        return reason or ("an SQLite database" if _is_sqlite(real) else None)


def _requested_file(scope) -> str | None:
    """The path after a file route's prefix, percent-decoded as Starlette routes it; None for other routes."""
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    for prefix in FILE_ROUTES:
        if path.startswith(prefix):
            return path[len(prefix):]
    return None


def _relative_parts(real: str, folder: str) -> tuple[str, ...] | None:
    """The parts of ``real`` below ``folder`` (both real paths), or None when it is not inside."""
    if real == folder:
        return ()
    if not real.startswith(folder.rstrip(os.sep) + os.sep):
        return None
    return tuple(Path(real[len(folder):].lstrip(os.sep)).parts)


def _outputs_refusal(parts: tuple[str, ...]) -> str | None:
    if not parts:
        return "the outputs folder itself"
    if any(part.startswith(".") for part in parts):
        return "a hidden or half-written file"  # .name.partial.mp4 while a video is written, dotfiles
    # The database and every journal SQLite may keep beside it (-wal, -shm, -journal); case-folded for
    # case-insensitive file systems.
    if parts[-1].casefold().startswith(JOBS_DB.casefold()):
        return "the job database"
    return None


def _is_sqlite(real: str) -> bool:
    """Whether the file starts like a database, its log or its journal. A copy under any name is still the job
    history (prompts, settings, errors), so the name alone cannot decide."""
    try:
        with open(real, "rb") as file:
            head = file.read(16)
    except OSError:  # a folder, or unreadable: Gradio cannot serve it either
        return False
    return head.startswith(SQLITE_MAGIC)


def _with_safe_headers(send):
    """``send`` with the response start's headers made safe (see the module docstring)."""

    async def safe_send(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": _safe_headers(message.get("headers", []))}
        await send(message)

    return safe_send


def _safe_headers(headers) -> list[tuple[bytes, bytes]]:
    replaced = (b"x-content-type-options", b"content-security-policy", b"content-disposition")
    kept = [(name, value) for name, value in headers if name.lower() not in replaced]
    content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
    disposition = next((value for name, value in headers if name.lower() == b"content-disposition"), b"")
    if content_type.split(b";")[0].strip().decode("latin-1").lower() not in INLINE_TYPES:
        _kind, _, rest = disposition.partition(b";")  # keep Gradio's file name, make it a download
        disposition = b"attachment" + (b";" + rest if rest else b"")
    if disposition:
        kept.append((b"content-disposition", disposition))
    return kept + [(b"x-content-type-options", b"nosniff"), (b"content-security-policy", FILE_POLICY)]

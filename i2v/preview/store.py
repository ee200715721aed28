"""Where each model's preview map is kept: in memory for the resident model, and as a small JSON file in our cache
folder per model revision, so the fit (a few VAE encodes) runs once per model, not once per start or job.

A model's identity: its backend class, what the user named (hub id, folder or built-in name) and its revision (the
hub commit, the built-in build key; for a local folder, the names, sizes and times of its VAE files, so a folder
whose VAE was replaced is fitted again).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from pathlib import Path

from i2v.preview.fitting import fit_map
from i2v.preview.latent_map import LatentRgbMap

log = logging.getLogger(__name__)

FORMAT = 1  # bump when the fitting changes: older files are then fitted again, not reused


class PreviewMaps:
    """The maps of the models this process has run, and their files in ``folder`` (default: our cache)."""

    def __init__(self, folder: Path | None = None):
        self._folder = folder
        self._maps: dict[str, LatentRgbMap] = {}
        self._guard = threading.Lock()  # two jobs on two devices may ask for the same model's map at once
        self.fits = 0  # how many maps this process fitted (a reused file does not count)

    @property
    def folder(self) -> Path:
        from i2v.paths import cache_dir

        return self._folder if self._folder is not None else cache_dir() / "preview-maps"

    def map_for(self, backend, report) -> LatentRgbMap:
        """The loaded model's map: from memory, else from its file, else fitted now and saved."""
        identity = model_identity(backend, report)
        with self._guard:
            known = self._maps.get(identity)
            if known is None:
                known = self._read(identity, backend) or self._fit_and_save(identity, backend)
                self._maps[identity] = known
            return known

    def path_for(self, identity: str, model_id: str) -> Path:
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(model_id).name or model_id)[:60]
        digest = hashlib.sha256(f"{identity}|format{FORMAT}".encode()).hexdigest()[:16]
        return self.folder / f"{readable}-{digest}.json"

    def _read(self, identity: str, backend) -> LatentRgbMap | None:
        path = self.path_for(identity, backend.model_id)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            found = LatentRgbMap.from_dict(data)
        except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged file is fitted again, not fatal
            log.warning("ignoring the preview map %s (%s); fitting it again", path, exc)
            return None
        if data.get("identity") != identity or found.channels != backend.spec.latent_channels:
            log.warning("the preview map %s is for another model or channel count; fitting it again", path)
            return None
        log.info("live-preview map of %s read from %s", backend.model_id, path)
        return found

    def _fit_and_save(self, identity: str, backend) -> LatentRgbMap:
        fitted = fit_map(backend)
        self.fits += 1
        path = self.path_for(identity, backend.model_id)
        try:
            _write_atomically(path, {"identity": identity, "model_id": backend.model_id, "format": FORMAT,
                                     "channels": fitted.channels, **fitted.to_dict()})
        except OSError as exc:  # only the reuse is lost: this process keeps the map in memory
            log.warning("could not save the preview map in %s: %s", path, exc)
        return fitted


def model_identity(backend, report) -> str:
    revision = report.revision if report.revision else _folder_fingerprint(backend)
    return f"{type(backend).__name__}|{report.model_id}|{revision}"


def _folder_fingerprint(backend) -> str:
    """A local folder has no revision: its VAE files' names, sizes and modification times stand in for one."""
    folder = Path(backend.model_id).expanduser()
    vae = folder / "vae" if (folder / "vae").is_dir() else folder
    entries = sorted((p.relative_to(vae).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
                     for p in vae.rglob("*") if p.is_file()) if vae.is_dir() else []
    return "folder-" + hashlib.sha256(repr(entries).encode()).hexdigest()[:16]


def _write_atomically(path: Path, data: dict) -> None:
    """Written beside and renamed: a crash or a second process never leaves half a file to be read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, scratch = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(scratch, path)
    finally:
        if os.path.exists(scratch):
            os.unlink(scratch)

"""The files of a job that runs on a Ray actor, on the app's side: the pictures sent with it, and the videos,
records and posters that come back into the app's output folder under the names they had in the actor's scratch
folder (``20261205/141503_<job>_01_seed7.mp4`` stays that). Paths that name the scratch folder in what comes back
(the result, its summary, the JSON record) are rewritten to the output folder, so the history and the record point
at the files the app has. The record embedded in the mp4 itself keeps the actor's paths (rewriting it would mean
re-muxing the video)."""
from __future__ import annotations

import json
import os
from dataclasses import fields, is_dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from i2v.engine.request import GenerationRequest
from i2v.workers.outcome import RunOutcome
from i2v.workers.ray_actor import PICTURE_FIELDS

RECORD_SUFFIX = ".json"


class ShippedFileError(ValueError):
    """A file from an actor named a place outside the output folder: refused, never written."""


def pictures_of(request: GenerationRequest) -> dict[str, tuple[str, bytes]]:
    """The picture files the request names, as (file name, bytes) per field; pictures given as bytes or images
    travel inside the request already."""
    pictures = {}
    for field in PICTURE_FIELDS:
        value = getattr(request, field)
        if isinstance(value, (str, os.PathLike)):
            path = Path(value)
            pictures[field] = (path.name, path.read_bytes())
    return pictures


def write_shipped(output_dir: Path, relative: str, data: bytes, scratch: str) -> Path:
    """Write one file that came back, atomically (a ``.partial`` beside it first, named with the job id so a lost
    job's sweep finds it); a JSON record gets its paths rewritten."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or ".." in parts:
        raise ShippedFileError(f"a Ray worker sent a file named {relative!r}, outside the output folder")
    target = output_dir.joinpath(*parts)
    if target.suffix == RECORD_SUFFIX:
        record = moved(json.loads(data.decode("utf-8")), scratch, str(output_dir))
        data = (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        partial.write_bytes(data)
        partial.replace(target)
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return target


def relocated(outcome: RunOutcome, scratch: str, output_dir: Path) -> RunOutcome:
    """The outcome with every path under the actor's scratch folder moved to the output folder."""
    return moved(outcome, scratch, str(output_dir))


def moved(value: Any, old: str, new: str) -> Any:
    """``value`` with the folder ``old`` replaced by ``new`` in every path and string in it (also inside a text, as
    the reproduce line names the picture; the scratch folder's name is unique, so nothing else matches)."""
    if isinstance(value, str):
        if not old:
            return value
        return new if value == old else value.replace(old.rstrip("/") + "/", new.rstrip("/") + "/")
    if isinstance(value, Path):
        return Path(moved(str(value), old, new))
    if isinstance(value, dict):
        return {key: moved(item, old, new) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(moved(item, old, new) for item in value)
    if is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: moved(getattr(value, f.name), old, new) for f in fields(value)
                   if f.init and _holds_paths(getattr(value, f.name))}
        return replace(value, **changes) if changes else value
    return value


def _holds_paths(value: Any) -> bool:
    return isinstance(value, (str, Path, dict, list, tuple)) or (is_dataclass(value) and not isinstance(value, type))

"""What the page and the history keep of a finished job: ``result_summary`` (JSON-able) and a poster per video.

Runs where the frames are: in a worker process the posters are written there, so the frames (hundreds of MB for a
long video) never cross to the app; only the summary and the result without frames do (``without_frames``)."""
from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from PIL import Image

from i2v.engine.run import GenerationResult

log = logging.getLogger(__name__)

POSTER_SUFFIX = ".jpg"


def result_summary(result: GenerationResult) -> dict[str, Any]:
    """What the page and the history need from a result (JSON-able); writes a poster image per video."""
    videos = []
    for video in result.videos:
        poster = write_poster(video.path, video.frames)
        videos.append({
            "path": str(video.path), "sidecar": str(video.sidecar_path), "seed": video.seed,
            "poster": str(poster) if poster else None,
        })
    return {
        "videos": videos,
        "params": result.params,
        "plan": result.plan,
        "notices": [n.to_dict() for n in result.notices],
        "warnings": [w.to_dict() for w in result.warnings],
        "model_warnings": [w.to_dict() for w in result.model_warnings],
        "timings_s": result.timings_s,
    }


def without_frames(result: GenerationResult) -> GenerationResult:
    """The result as it travels from a worker process: everything but the decoded frames."""
    return replace(result, videos=[replace(video, frames=None) for video in result.videos])


def write_poster(video_path: Path, frames: Any) -> Path | None:
    """The middle frame as a small JPEG for the history gallery."""
    if frames is None or len(frames) == 0:
        return None
    poster = Path(video_path).with_suffix(POSTER_SUFFIX)
    picture = Image.fromarray(frames[len(frames) // 2])
    picture.thumbnail((320, 320))
    partial = poster.with_name(f".{poster.name}.partial")
    try:
        picture.save(partial, format="JPEG", quality=85)
        partial.replace(poster)
    except OSError as exc:  # a nicety: the video is saved, and the gallery falls back to the input picture
        partial.unlink(missing_ok=True)
        log.warning("no poster for %s: %s", Path(video_path).name, exc)
        return None
    return poster

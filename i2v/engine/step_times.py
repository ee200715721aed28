"""Seconds per denoising step learned from finished jobs, so a plan can say how long it will take.

Stored per (device name, model family, dtype, speedups that change a step's time) as seconds per step per million
pixel-frames (a step's work grows with width × height × frames), as a moving average, in one small JSON file in the app's cache folder (it
describes this machine, not any output).
"""
from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from i2v.engine.record import write_json_atomic

log = logging.getLogger(__name__)

FILE_NAME = ".step_times.json"
SMOOTHING = 0.3  # weight of the newest job in the moving average
_lock = threading.Lock()


def _key(device_name: str, family: str, dtype: str, variant: str = "") -> str:
    base = f"{device_name}|{family}|{dtype}"
    return f"{base}|{variant}" if variant else base


def speed_variant(speedups) -> str:
    """The part of ``speedups`` (``i2v.speedups.Speedups``) that changes how long a step takes, as a key suffix:
    "" for the defaults, so estimates learned before speedups existed keep their key."""
    parts = []
    if speedups.step_cache_interval > 1:
        parts.append(f"cache{speedups.step_cache_interval}")
    if speedups.compile:
        parts.append("compiled")
    if speedups.channels_last:
        parts.append("channels-last")
    if speedups.attention != "sdpa":
        parts.append(speedups.attention)
    return "+".join(parts)


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:  # a damaged file only loses the estimates
        log.warning("ignoring unreadable %s: %s", path, exc)
        return {}


def record(folder: Path, *, device_name: str, family: str, dtype: str, width: int, height: int, frames: int,
           steps: int, seconds: float, variant: str = "") -> None:
    if steps <= 0 or seconds <= 0:
        return
    rate = seconds / steps / (width * height * frames / 1e6)
    path = Path(folder) / FILE_NAME
    with _lock:
        data = _load(path)
        key = _key(device_name, family, dtype, variant)
        previous = data.get(key, {})
        old = previous.get("seconds_per_step_per_mpf")
        data[key] = {
            "seconds_per_step_per_mpf": rate if old is None else (1 - SMOOTHING) * old + SMOOTHING * rate,
            "jobs": int(previous.get("jobs", 0)) + 1,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, data)


def estimate(folder: Path, *, device_name: str, family: str, dtype: str, width: int, height: int, frames: int,
             steps: int, variant: str = "") -> float | None:
    """Expected denoising seconds, or None when this device has not run this model in this dtype yet."""
    entry = _load(Path(folder) / FILE_NAME).get(_key(device_name, family, dtype, variant))
    if not entry:
        return None
    return entry["seconds_per_step_per_mpf"] * steps * width * height * frames / 1e6

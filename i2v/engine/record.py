"""The reproduction record: one JSON document per video, written as a sidecar file and embedded in the mp4."""
from __future__ import annotations

import json
import os
import platform
import shlex
from importlib import metadata
from pathlib import Path

from i2v import __version__
from i2v.errors import OutputWriteError

SCHEMA = "i2v-studio/video/v1"
_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "numpy", "pillow", "imageio-ffmpeg")


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "i2v-studio": __version__}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def reproduce_command(params: dict, image_hint: str, last_image_hint: str | None = None) -> str:
    """The CLI line that makes this video again (same device class and versions give the same frames)."""
    args = [
        "python", "-m", "i2v", "generate",
        "--image", image_hint,
        "--prompt", params["prompt"],
        "--model", params["model"],
        *(["--family", params["family"]] if params.get("family") else []),
        *(["--transformer-file", params["transformer_file"]] if params.get("transformer_file") else []),
        "--width", str(params["width"]),
        "--height", str(params["height"]),
        "--frames", str(params["frames"]),
        "--steps", str(params["steps"]),
        "--cfg", repr(params["guidance"]),
        "--fps", str(params["fps"]),
        "--seed", str(params["seed"]),
        "--dtype", params["dtype"],
    ]
    if params.get("negative_prompt"):
        args += ["--negative-prompt", params["negative_prompt"]]
    if params.get("auto_enhance"):
        args.append("--auto-enhance")
    if last_image_hint:
        args += ["--last-image", last_image_hint]
    if params.get("audio") is False:
        args.append("--no-audio")
    if params.get("framing", "crop") != "crop":
        args += ["--framing", params["framing"]]
    focus = tuple(params.get("crop_focus") or (0.5, 0.5))
    if focus != (0.5, 0.5):
        args += ["--crop-focus", f"{focus[0]:g},{focus[1]:g}"]
    # A step-distilled or two-stage tier: its shift, schedule, upsampler and LoRAs come with the tier.
    if any(params.get(key) is not None for key in ("flow_shift", "sigmas", "two_stage")):
        args += ["--preset", params["preset"]]
    for lora in params.get("loras") or ():
        expert = lora.get("expert", "both")
        args += ["--lora", f"{lora['source']}:{lora['strength']:g}" + ("" if expert == "both" else f"@{expert}")]
    return shlex.join(args)


def write_json_atomic(path: Path, data: dict) -> Path:
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def write_sidecar(path: Path, record: dict) -> Path:
    """A video's record beside it. A full or unwritable disk becomes an ``OutputWriteError`` that says where and
    what to do (``write_json_atomic`` has removed its partial file by then)."""
    try:
        return write_json_atomic(path, record)
    except OSError as exc:
        raise OutputWriteError.from_os_error(exc, path, "the video's record (its .json file)") from exc

"""Parts a tier needs beside a model's own components (LTX-2's ×2 latent upsampler for the two-stage path), found
on this machine without touching the network, or refused with the exact command that fetches them: a tier never
falls back silently to a path the user did not choose.

A tier names a part as a hub folder ``owner/repo/subfolder`` (``Lightricks/LTX-2/latent_upsampler``, where diffusers'
docs load it from) or as a built-in part (``registry.BUILT_IN_PARTS``: the test models' random-weight ones). A hub
folder is looked for in the model's own folder, then in the Hugging Face cache under the model's repo and under the
named repo; it counts as there when its config.json and a safetensors file are.
"""
from __future__ import annotations

import re
from pathlib import Path

from i2v.backends.hub import looks_like_hub_id
from i2v.backends.registry import BUILT_IN_PARTS
from i2v.errors import BadInputError

HUB_FOLDER = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)/((?:[\w.-]+/)*[\w.-]+)$")
CONFIG = "config.json"


def required_part(source: str, model: str, what: str, needed_by: str) -> Path:
    """The folder of the part ``source`` (``what`` names it in the refusal) for ``model``; one refusal with the
    command that fetches it when it is not on this machine."""
    found = find_part(source, model)
    if found is not None:
        return found
    match = HUB_FOLDER.match(source)
    if match is None:
        raise BadInputError(f"{needed_by} needs {what} {source!r}, which is neither a built-in part "
                            f"({', '.join(BUILT_IN_PARTS)}) nor a hub folder owner/repo/folder.")
    repo, folder = match[1], match[2]
    local = Path(model).expanduser()
    beside = f" (or put it in {local / folder})" if local.is_dir() else ""
    raise BadInputError(f"{needed_by} needs {what} ({folder} of {repo}), which is not on this machine: download it "
                        f"with `hf download {repo} --include '{folder}/*'`{beside}; then run again (or choose another "
                        "tier).")


def find_part(source: str, model: str) -> Path | None:
    if source in BUILT_IN_PARTS:
        return BUILT_IN_PARTS[source]()
    match = HUB_FOLDER.match(source)
    if match is None:
        return None
    repo, folder = match[1], match[2]
    local = Path(model).expanduser()
    if local.is_dir() and _complete(local / folder):
        return local / folder
    repos = ([model.partition("@")[0]] if looks_like_hub_id(model) else []) + [repo]
    for repo_id in dict.fromkeys(repos):
        cached = _cached_folder(repo_id, folder)
        if cached is not None:
            return cached
    return None


def _cached_folder(repo_id: str, folder: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, f"{folder}/{CONFIG}")
    if not isinstance(found, str):
        return None
    path = Path(found).parent
    return path if _complete(path) else None


def _complete(folder: Path) -> bool:
    return (folder / CONFIG).is_file() and any(folder.glob("*.safetensors"))

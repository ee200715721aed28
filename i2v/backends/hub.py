"""Where a model's files come from, for every family: a hub id (fetched into the Hugging Face cache unless offline)
or a local folder in diffusers layout, and what its ``model_index.json`` declares."""
from __future__ import annotations

import json
import re
from pathlib import Path

from i2v.errors import ModelLoadError, ModelNotAvailableError

HUB_ID_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w.-]+)?$")


def looks_like_hub_id(model: str) -> bool:
    return bool(HUB_ID_PATTERN.match(model)) and not Path(model).exists()


def download_or_cached(model: str, allow_patterns: list[str]) -> tuple[Path, str, str | None]:
    """A hub id (``owner/name[@revision]``) → local snapshot folder (downloading what is missing unless offline),
    with its commit. Only the files ``allow_patterns`` name are fetched (each family names what its pipeline
    needs)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, _, revision = model.partition("@")
    how_to_get = (
        f"Download it once with `./start_app.sh download {repo_id}` on a machine with network access, "
        "or pass a local folder in diffusers layout with --model PATH."
    )
    try:
        folder = Path(snapshot_download(repo_id, revision=revision or None, allow_patterns=allow_patterns))
    except LocalEntryNotFoundError as exc:
        raise ModelNotAvailableError(
            f"Model '{model}' is not in the local Hugging Face cache and the hub cannot be reached. {how_to_get}"
        ) from exc
    except (RepositoryNotFoundError, GatedRepoError) as exc:
        raise ModelNotAvailableError(
            f"Model '{repo_id}' was not found on the hub or needs access rights ({type(exc).__name__}). "
            "Check the id, or log in with `hf auth login` if the model is gated."
        ) from exc
    except RevisionNotFoundError as exc:
        raise ModelNotAvailableError(f"Revision '{revision}' of '{repo_id}' does not exist.") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(f"Could not fetch model '{model}': {exc}. {how_to_get}") from exc
    return folder, "hub", folder.name  # snapshots/<commit hash>


def pipeline_class_in(folder: Path) -> str | None:
    """The ``_class_name`` in ``folder``/model_index.json (None if it has none), with clear errors."""
    return _class_name(_model_index(folder), folder)


def read_model_index(folder: Path, pipeline_class: str, *, hint: dict[str, str] | None = None,
                     accepts: str = "") -> dict:
    """``folder``'s model_index.json, refused unless it declares ``pipeline_class``. ``hint`` names what a
    mistaken pipeline class usually is ({class: " (what it is)"}); ``accepts`` says which checkpoint we load."""
    index = _model_index(folder)
    declared = _class_name(index, folder)
    if declared != pipeline_class:
        what = (hint or {}).get(declared or "", "")
        raise ModelLoadError(
            f"{folder} holds a {declared!r} pipeline{what}; this backend loads {pipeline_class}{accepts} only."
        )
    return index


def _model_index(folder: Path) -> dict:
    index_path = folder / "model_index.json"
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(f"{folder} has no model_index.json: it is not a diffusers pipeline folder.") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{index_path} cannot be read: {exc}") from exc
    if not isinstance(index, dict):
        raise ModelLoadError(f"{index_path} is not a JSON object: it is not a diffusers pipeline folder.")
    return index


def _class_name(index: dict, folder: Path) -> str | None:
    name = index.get("_class_name")
    return name if isinstance(name, str) else None

"""Finding a LoRA's file: a ``.safetensors`` path, a file in the app's LoRA folder (``I2V_LORA_DIR``) or a hub file
``owner/repo/path/file.safetensors``. Pickle formats (``.pt``, ``.pth``, ``.ckpt``, ``.bin``, ``.pkl``) are refused:
unpickling a stranger's file can run any code. Only safetensors headers and tensors are ever read."""
from __future__ import annotations

import hashlib
import json
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from i2v.errors import BadInputError, ModelNotAvailableError
from i2v.loras.choice import LoraChoice
from i2v.paths import lora_dir

SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")
HUB_FILE_PATTERN = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w.-]+))?/((?:[\w.-]+/)*[\w.-]+\.safetensors)$")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


@dataclass(frozen=True)
class LoraFile:
    """A LoRA found on this machine (``path`` None: a hub file not downloaded yet), with its strength."""

    source: str  # as the request gave it
    strength: float
    path: Path | None
    name: str  # the file name, as the record and the page show it
    expert: str = "both"  # the denoiser(s) it goes into (choice.EXPERTS)

    def choice(self) -> LoraChoice:
        return LoraChoice(self.source, self.strength, self.expert)

    def describe(self) -> dict:
        """For the record: file name, sha256 (None before a hub file is downloaded), strength, source."""
        return {"file": self.name, "sha256": file_sha256(self.path) if self.path else None,
                "strength": self.strength, "source": self.source, "expert": self.expert}


def available_loras() -> list[str]:
    """The ``.safetensors`` files in the LoRA folder (and its sub-folders), as names relative to it."""
    folder = lora_dir()
    if not folder.is_dir():
        return []
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(f"*{SUFFIX}") if p.is_file())


def find_lora(choice: LoraChoice, *, download: bool) -> LoraFile:
    """The file ``choice`` names, refused in one line when it is a pickle, missing or not a safetensors file. A hub
    file is fetched when ``download`` (else looked up in the local cache, ``path`` None when not there)."""
    source = choice.source
    _refuse_pickle(source)
    path = _local(source)
    if path is not None:
        if path.suffix.lower() != SUFFIX:
            raise BadInputError(f"LoRA {source!r} is not a .safetensors file: LoRAs are read from safetensors only.")
        check_safetensors(path)
        return LoraFile(source, choice.strength, path, path.name, choice.expert)
    match = HUB_FILE_PATTERN.match(source)
    if match is None:
        raise BadInputError(_not_found(source))
    repo, revision, filename = match[1], match[2], match[3]
    path = _from_hub(source, repo, revision, filename, download=download)
    if path is not None:
        check_safetensors(path)
    return LoraFile(source, choice.strength, path, Path(filename).name, choice.expert)


def required_loras(wanted: list[tuple[str, str]], strength: float, needed_by: str) -> tuple[LoraFile, ...]:
    """The LoRAs a tier needs, as (source, expert) pairs (``needed_by`` names the tier and model): each in the LoRA
    folder under its file name (or its hub path), or the hub file in the local cache. Any not on this machine: one
    refusal with the exact command that fetches each (a tier never runs its few steps without the LoRA that makes few
    steps work)."""
    found, commands = [], []
    for source, expert in wanted:
        path = _on_this_machine(source)
        if path is None:
            commands.append(_fetch_command(source))
        else:
            check_safetensors(path)
            found.append(LoraFile(source, strength, path, Path(source).name, expert))
    if commands:
        names = ", ".join(Path(source).name for source, _ in wanted)
        raise BadInputError(f"{needed_by} needs the step-distilled LoRA {names}, which is not on this machine: "
                            f"{'; '.join(commands)}; then run again (or choose another tier).")
    return tuple(found)


def _on_this_machine(source: str) -> Path | None:
    match = HUB_FILE_PATTERN.match(source)
    for candidate in (lora_dir() / Path(source).name, lora_dir() / match[3] if match else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return _from_hub(source, match[1], match[2], match[3], download=False) if match else None


def _fetch_command(source: str) -> str:
    match = HUB_FILE_PATTERN.match(source)
    if match is None:
        return f"put {Path(source).name} in the LoRA folder {lora_dir()}"
    revision = f" --revision {match[2]}" if match[2] else ""
    return f"download it with `hf download {match[1]} {match[3]}{revision} --local-dir {lora_dir()}`"


def _refuse_pickle(source: str) -> None:
    suffix = Path(source).suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise BadInputError(f"LoRA {source!r} is a pickle file ({suffix}): loading it could run code hidden in it, so "
                            "it is refused. Use the .safetensors version of the LoRA.")


def _local(source: str) -> Path | None:
    given = Path(source).expanduser()
    if given.is_file():
        return given
    folder = lora_dir()
    for candidate in (folder / source, folder / f"{source}{SUFFIX}"):
        try:
            resolved = candidate.resolve()
        except OSError:
            continue
        # A name in the folder stays in the folder ("../x" is not a LoRA folder file).
        if resolved.is_file() and folder.resolve() in resolved.parents:
            return resolved
    return None


def _not_found(source: str) -> str:
    names = available_loras()
    listed = f"it holds {', '.join(names[:8])}{' …' if len(names) > 8 else ''}" if names else "it is empty"
    return (f"LoRA {source!r} not found: not a file, not in the LoRA folder {lora_dir()} ({listed}), "
            "and not a hub file owner/repo/file.safetensors.")


def _from_hub(source: str, repo: str, revision: str | None, filename: str, *, download: bool) -> Path | None:
    if not download:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, filename, revision=revision)
        return Path(found) if isinstance(found, str) else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo, filename, revision=revision))
    except LocalEntryNotFoundError as exc:
        raise ModelNotAvailableError(f"LoRA {source} is not in the local Hugging Face cache and the hub cannot be "
                                     f"reached: run `hf download {repo} {filename}` on a machine with network "
                                     "access, or copy the file into the LoRA folder.") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(f"Could not fetch LoRA {source}: {exc}") from exc


def check_safetensors(path: Path) -> dict:
    """The file's safetensors header (tensor name → dtype, shape, offsets), refused in one line when the file is not
    safetensors (a pickle renamed .safetensors, a truncated download)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            length = struct.unpack("<Q", raw)[0] if len(raw) == 8 else -1
            if not 2 <= length <= MAX_HEADER_BYTES:
                raise ValueError("no safetensors header")
            header = json.loads(handle.read(length))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"LoRA {path.name} is not a readable safetensors file ({exc}): download it again.") from exc
    if not isinstance(header, dict):
        raise BadInputError(f"LoRA {path.name} is not a readable safetensors file: download it again.")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise BadInputError(f"LoRA {path.name} holds no tensors.")
    return tensors


def lora_parameter_count(path: Path) -> int:
    """Values in the LoRA's tensors, from its header (nothing else is read)."""
    import math

    return sum(math.prod(entry.get("shape", ())) for entry in check_safetensors(path).values()
               if isinstance(entry, dict))


_hashes: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """The file's sha256, computed once per (path, size, modification time): the page checks settings often."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if key in _hashes:
            return _hashes[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    with _hash_lock:
        _hashes[key] = digest.hexdigest()
    return _hashes[key]

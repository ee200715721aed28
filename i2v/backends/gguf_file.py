"""A quantized transformer from a GGUF file (the community's ``Q8_0``, ``Q5_K``, ``Q4_K`` … files), given as a local
path or a hub file ``owner/repo/path/file.gguf``, loaded through diffusers' GGUF support in place of the folder's
transformer weights; the other components come from the folder as usual.

Before a weight is read, the file's tensor names and shapes (``gguf.GGUFReader``, header only) are converted the way
diffusers converts them (the class's ``checkpoint_mapping_fn``) and compared with the architecture the folder's
config builds: a file for another model is refused naming the tensors that differ, instead of loading with weights
left on the meta device."""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from i2v.errors import BadInputError, ModelLoadError, ModelNotAvailableError

MAGIC = b"GGUF"
# owner/repo/path/to/file.gguf (a revision after "@" on the repo: owner/repo@rev/file.gguf)
HUB_FILE_PATTERN = re.compile(r"^([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w.-]+))?/((?:[\w.-]+/)*[\w.-]+\.gguf)$")
SHOWN = 5  # mismatched tensors named in the refusal; the counts say how many more


@dataclass(frozen=True)
class HubFile:
    repo_id: str
    revision: str | None
    filename: str


def hub_file(value: str) -> HubFile | None:
    """``owner/repo/path/file.gguf`` as its parts, or None when ``value`` is not written that way."""
    match = HUB_FILE_PATTERN.match(value)
    return HubFile(match[1], match[2], match[3]) if match else None


def check_transformer_file(value: object) -> None:
    """One-line refusal for anything but an existing local ``.gguf`` GGUF file or a hub ``owner/repo/file.gguf``."""
    if not isinstance(value, str) or not value.strip():
        raise BadInputError("transformer_file must be a .gguf file path or a hub file owner/repo/file.gguf.")
    path = Path(value).expanduser()
    if path.suffix.lower() != ".gguf":
        raise BadInputError(f"The transformer file must be a GGUF file (.gguf); got {value!r}.")
    if path.is_file():
        _check_magic(path)
    elif hub_file(value) is None:
        raise BadInputError(f"The transformer file {value!r} does not exist (nor is it a hub file owner/repo/file.gguf).")


def _check_magic(path: Path) -> None:
    # A pickle or safetensors file renamed .gguf is refused here, before anything parses it.
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as exc:
        raise BadInputError(f"The transformer file {path} cannot be read: {exc.strerror or exc}.") from exc
    if head != MAGIC:
        raise BadInputError(f"{path} is not a GGUF file (it does not start with 'GGUF'); give a .gguf transformer file.")


def local_path(value: str, *, download: bool) -> Path | None:
    """The file on this machine: the path itself, or the hub file from the Hugging Face cache (fetched when
    ``download``; None when it is not cached and ``download`` is False)."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    where = hub_file(value)
    if not download:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(where.repo_id, where.filename, revision=where.revision)
        return Path(found) if isinstance(found, str) else None
    return _download(value, where)


def _download(value: str, where: HubFile) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        path = Path(hf_hub_download(where.repo_id, where.filename, revision=where.revision))
    except LocalEntryNotFoundError as exc:
        raise ModelNotAvailableError(f"The transformer file {value} is not in the local Hugging Face cache and the "
                                     "hub cannot be reached; download it on a machine with network access.") from exc
    except (HfHubHTTPError, OSError) as exc:
        raise ModelNotAvailableError(f"Could not fetch the transformer file {value}: {exc}") from exc
    _check_magic(path)
    return path


def file_size(value: str) -> int:
    """Bytes of the file, for the planner: on disk, or as the hub announces it when not yet cached."""
    path = local_path(value, download=False)
    if path is not None:
        return path.stat().st_size
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    where = hub_file(value)
    try:
        infos = HfApi().get_paths_info(where.repo_id, [where.filename], revision=where.revision)
    except (HfHubHTTPError, OSError) as exc:
        raise BadInputError(f"The size of the transformer file {value} cannot be read from the hub ({exc}); "
                            "download it first or give a local path.") from exc
    if not infos or getattr(infos[0], "size", None) is None:
        raise BadInputError(f"The transformer file {value} is not on the hub.")
    return int(infos[0].size)


# -- what the file holds -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GgufTensors:
    shapes: dict[str, tuple[int, ...]]  # name -> the tensor's logical shape (torch order)
    types: dict[str, str]  # name -> GGML type name (Q8_0, Q4_K, F16, BF16, F32 …)
    # Tensors ComfyUI-GGUF's converter stored reshaped, their true shape in "comfy.gguf.orig_shape.<name>" metadata
    # (5-D convolutions, rows not a multiple of 256); diffusers 0.42.1 reads no such metadata.
    reshaped: frozenset[str] = frozenset()

    def quant_types(self) -> list[str]:
        """The types present, most frequent first."""
        return [name for name, _ in Counter(self.types.values()).most_common()]


def read_tensors(path: Path) -> GgufTensors:
    """Names, shapes and types from the file's header (the weights stay on disk)."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, KeyError) as exc:
        raise ModelLoadError(f"{path} is not a readable GGUF file: {exc}") from exc
    # GGUF lists a tensor's dimensions innermost first; torch lists them outermost first.
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape)) for t in reader.tensors}
    prefix = "comfy.gguf.orig_shape."
    reshaped = frozenset(key[len(prefix):] for key in reader.fields if key.startswith(prefix))
    return GgufTensors(shapes, {t.name: t.tensor_type.name for t in reader.tensors}, reshaped)


def file_record(path: Path, value: str, tensors: GgufTensors) -> dict:
    """What a video's record says about the file: enough to tell whether a reproduction used the same one."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "source": value, "sha256": digest.hexdigest(), "size": path.stat().st_size,
            "quant_types": tensors.quant_types()}


def describe(value: str, tensors: GgufTensors | None, size: int) -> str:
    """"FILE (Q4_K, 9.6 GiB)" for the plan's notice."""
    types = "/".join(tensors.quant_types()[:2]) if tensors and tensors.shapes else "types unknown until downloaded"
    return f"{value} ({types}, {size / 2**30:.1f} GiB)"


# -- does it fit the architecture ----------------------------------------------------------------------------
def expected_shapes(cls, config_folder: Path) -> dict[str, tuple[int, ...]]:
    """The state dict's shapes of ``cls`` built from ``config_folder``'s config on the meta device (no memory)."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        model = cls.from_config(cls.load_config(config_folder))
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def converted_shapes(cls, tensors: GgufTensors, expected: dict) -> dict[str, tuple[int, ...]]:
    """The file's tensors under the names diffusers will give them: the class's single-file key conversion run on
    meta tensors of the file's shapes (it renames, and for some families splits, tensors)."""
    import torch
    from diffusers.loaders.single_file_model import (SINGLE_FILE_LOADABLE_CLASSES,
                                                     _get_single_file_loadable_mapping_class)

    checkpoint = {name: torch.empty(shape, device="meta") for name, shape in tensors.shapes.items()}
    if set(checkpoint) == set(expected):  # already in diffusers' names: diffusers converts nothing either
        return dict(tensors.shapes)
    convert = SINGLE_FILE_LOADABLE_CLASSES[_get_single_file_loadable_mapping_class(cls)]["checkpoint_mapping_fn"]
    return {name: tuple(tensor.shape) for name, tensor in convert(checkpoint=checkpoint, config={}).items()}


def mismatch(expected: dict, found: dict) -> str | None:
    """None when the names and shapes agree, else the counts and the first mismatched tensors of each kind."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    reshaped = [f"{name} {list(found[name])} (expected {list(expected[name])})"
                for name in expected if name in found and found[name] != expected[name]]
    if not (missing or unexpected or reshaped):
        return None
    matching = len(expected) - len(missing) - len(reshaped)
    parts = [f"{matching} tensors match"]
    for count_name, items in (("missing", missing), ("unexpected", unexpected), ("with another shape", reshaped)):
        if items:
            more = f", … ({len(items) - SHOWN} more)" if len(items) > SHOWN else ""
            parts.append(f"{len(items)} {count_name}: {', '.join(items[:SHOWN])}{more}")
    return ", ".join(parts)


def check_fits(cls, path: Path, config_folder: Path, tensors: GgufTensors) -> None:
    expected = expected_shapes(cls, config_folder)
    try:
        found = converted_shapes(cls, tensors, expected)
    except (KeyError, IndexError, ValueError, RuntimeError) as exc:  # the converter choked on foreign names
        raise ModelLoadError(f"{path.name} is not a {cls.__name__} GGUF: its tensor names cannot be converted "
                             f"({type(exc).__name__}: {exc}).") from exc
    problem = mismatch(expected, found)
    if problem:
        hint = (" Some tensors are stored reshaped for ComfyUI (comfy.gguf.orig_shape), which diffusers cannot load."
                if tensors.reshaped else "")
        raise ModelLoadError(f"{path.name} does not match this model's transformer ({cls.__name__} from "
                             f"{config_folder}): {problem}.{hint} Use a GGUF made from this model.")


def record_for(value: str) -> dict:
    path = local_path(value, download=True)
    return file_record(path, value, read_tensors(path))


def load_quantized(cls, value: str, config_folder: Path, dtype):
    """The model: the file checked against the architecture, then loaded by diffusers, computing
    in ``dtype`` (a torch dtype) and dequantizing each layer's weights when it runs."""
    from diffusers import GGUFQuantizationConfig

    if not hasattr(cls, "from_single_file"):
        raise ModelLoadError(f"{cls.__name__} cannot be loaded from a single file by diffusers.")
    path = local_path(value, download=True)
    tensors = read_tensors(path)
    check_fits(cls, path, config_folder, tensors)
    try:
        model = cls.from_single_file(str(path), quantization_config=GGUFQuantizationConfig(compute_dtype=dtype),
                                     config=str(config_folder.parent), subfolder=config_folder.name,
                                     torch_dtype=dtype, local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load the transformer from {path.name}: {exc}") from exc
    return model.eval()

"""Loading a diffusers pipeline folder component by component, the way every backend does it: each component's
class is checked against what the family accepts before anything is imported or read, each is loaded on its own
so missing / unexpected / mis-shaped weight keys become model warnings (``Finding``) instead of the libraries' log
lines, and missing weights get usual initial values instead of meta tensors or garbage memory."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from i2v.errors import ModelLoadError
from i2v.findings import Finding
from i2v.backends.gguf_file import load_quantized
from i2v.backends.pipeline_backend import torch_dtype

# Component -> (library module, accepted class names), as each backend declares them.
Components = Mapping[str, tuple[str, Collection[str]]]


def load_components(folder: Path, index: dict, components: Components, dtype: str, *, weighted: Collection[str],
                    dtypes: Mapping[str, str] | None = None, gguf_files: Mapping[str, str] | None = None
                    ) -> tuple[dict, list[Finding], dict[str, str]]:
    """Every component of ``components`` from ``folder``/<name>, then the scheduler. ``weighted`` are the ones with
    weights (loaded in ``dtype``, or ``dtypes[name]``); the others (tokenizers, processors) are loaded as they are.
    ``gguf_files`` names a GGUF file whose quantized weights replace a component's (its config still comes from the
    folder). Returns (components by name, weight-key findings, class name by component)."""
    import importlib

    import diffusers
    import transformers

    # Their per-file progress bars go to stderr on every load; our own progress events cover loading.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    loaded: dict[str, object] = {}
    found: list[Finding] = []
    for name, (library, accepted) in components.items():
        declared = declared_class(index, name, folder)
        if declared not in accepted:
            raise ModelLoadError(
                f"{folder}: component {name} is a {declared}; expected one of {', '.join(sorted(accepted))}."
            )
        path = folder / name
        if not path.is_dir():
            raise ModelLoadError(f"{folder}: the {name} folder is missing.")
        # A library is a module name: "diffusers", "transformers", or a pipeline's own module for the classes
        # diffusers does not export at its top level (LTX-2's connectors and vocoder: "diffusers.pipelines.ltx2").
        cls = component_class(importlib.import_module(library), declared)
        if name in (gguf_files or {}):  # checked against the architecture before a weight is read
            loaded[name] = load_quantized(cls, gguf_files[name], path, torch_dtype(dtype))
            continue
        loaded[name] = load_component(cls, name, path, (dtypes or {}).get(name, dtype), found,
                                      weighted=name in weighted)
    loaded["scheduler"] = load_scheduler(folder, index)
    return loaded, found, {name: type(component).__name__ for name, component in loaded.items()}


def component_class(library, declared: str):
    # transformers 5 without torchvision serves the PIL image processor under its own name (and warns when the
    # generic name is used); both read the same preprocessor_config.json.
    if declared in ("CLIPImageProcessor", "CLIPFeatureExtractor") and hasattr(library, "CLIPImageProcessorPil"):
        declared = "CLIPImageProcessorPil"
    return getattr(library, declared)


def load_component(cls, name: str, path: Path, dtype: str, found: list[Finding], *, weighted: bool):
    try:
        if not weighted:
            return cls.from_pretrained(path)
        model, info = cls.from_pretrained(path, dtype=torch_dtype(dtype), output_loading_info=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"{path.parent}: cannot load {name}: {exc}") from exc
    initialise_missing(model, info.get("missing_keys") or [])
    found.extend(key_findings(name, info))
    return model.eval()


def declared_class(index: dict, name: str, folder: Path) -> str:
    entry = index.get(name)
    if not (isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
        raise ModelLoadError(f"{folder}/model_index.json: component {name} is missing or malformed.")
    return entry[1]


def load_scheduler(folder: Path, index: dict):
    import diffusers
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    declared = declared_class(index, "scheduler", folder)
    cls = getattr(diffusers, declared, None)
    if not (isinstance(cls, type) and issubclass(cls, SchedulerMixin)):
        raise ModelLoadError(f"{folder}: scheduler {declared!r} is not a diffusers scheduler.")
    try:
        return cls.from_pretrained(folder / "scheduler")
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{folder}: cannot load scheduler: {exc}") from exc


def initialise_missing(model, missing_keys: list[str]) -> None:
    """diffusers leaves missing weights on the meta device (or, without its low-memory loader, as uninitialised
    memory: garbage that turns into NaN). Give them the usual initial values so the model runs; the missing keys
    are reported as a model warning either way."""
    import torch

    for key in missing_keys:
        owner_name, _, attribute = key.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        current = getattr(owner, attribute, None)
        if not isinstance(current, torch.Tensor) or current.device.type != "meta":
            continue
        fresh = torch.empty(current.shape, dtype=current.dtype)
        if fresh.ndim >= 2:
            torch.nn.init.kaiming_uniform_(fresh, a=5**0.5)  # torch's default for Linear/Conv weights
        elif attribute == "weight":
            torch.nn.init.ones_(fresh)  # 1-D weights are norm scales
        else:
            torch.nn.init.zeros_(fresh)
        if isinstance(current, torch.nn.Parameter):
            setattr(owner, attribute, torch.nn.Parameter(fresh, requires_grad=False))
        else:
            owner.register_buffer(attribute, fresh)


def key_findings(component: str, info: dict) -> list[Finding]:
    findings = []
    for kind, meaning in (
        ("missing_keys", "missing from the checkpoint (left at random values)"),
        ("unexpected_keys", "in the checkpoint but unused by the model"),
        ("mismatched_keys", "of the wrong shape in the checkpoint (left at random values)"),
    ):
        keys = [k if isinstance(k, str) else str(k[0]) for k in (info.get(kind) or [])]
        if keys:
            sample = ", ".join(keys[:3]) + (", …" if len(keys) > 3 else "")
            findings.append(
                Finding(
                    f"model.{kind}",
                    f"{component}: {len(keys)} weight(s) {meaning}: {sample}.",
                    "The weights do not match this architecture: re-download the model or check the folder; "
                    "videos from it may be wrong.",
                )
            )
    return findings

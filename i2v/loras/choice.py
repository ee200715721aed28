"""A LoRA as a request names it: where the file is and how strongly it applies."""
from __future__ import annotations

import math
from dataclasses import dataclass

from i2v.errors import BadInputError, shown

MAX_LORAS = 4  # per request; each adds weights and a little time per step
STRENGTH_RANGE = (-4.0, 4.0)  # trainers' own examples stay within ±2; beyond ±4 a LoRA only burns the picture
DEFAULT_STRENGTH = 1.0
# Which denoiser a LoRA goes into: "both" (every transformer the model has), or for Wan 2.2 I2V-A14B one expert:
# "high" (the high-noise ``transformer``) or "low" (the low-noise ``transformer_2``), as step-distilled and style
# LoRAs for it ship one file per expert.
EXPERTS = ("both", "high", "low")


@dataclass(frozen=True)
class LoraChoice:
    source: str  # a .safetensors path, a file name in the LoRA folder, or a hub file owner/repo/file.safetensors
    strength: float = DEFAULT_STRENGTH
    expert: str = "both"

    def to_dict(self) -> dict:
        return {"source": self.source, "strength": self.strength, "expert": self.expert}

    def as_argument(self) -> str:
        """The CLI's ``--lora`` value for this choice."""
        return f"{self.source}:{self.strength:g}" + ("" if self.expert == "both" else f"@{self.expert}")


def parse_lora(text: str) -> LoraChoice:
    """``PATH[:STRENGTH][@high|@low]`` (the CLI's ``--lora``): the strength is what follows the last colon when it is
    a number, so ``C:/loras/x.safetensors`` and hub files keep their colons; ``@high`` / ``@low`` at the very end puts
    it into one expert of Wan 2.2 I2V-A14B."""
    if not isinstance(text, str) or not text.strip():
        raise BadInputError("A LoRA is given as PATH[:STRENGTH], e.g. my_style.safetensors:0.8.")
    text, expert = text.strip(), "both"
    for name in EXPERTS[1:]:
        if text.endswith(f"@{name}"):
            text, expert = text[: -len(name) - 1], name
    source, colon, tail = text.rpartition(":")
    if colon and source:
        try:
            return check_choice(LoraChoice(source.strip(), float(tail), expert))
        except ValueError:
            pass  # the colon belongs to the path
    return check_choice(LoraChoice(text, DEFAULT_STRENGTH, expert))


def lora_choices(value: object) -> tuple[LoraChoice, ...]:
    """A request's ``loras`` from what an API caller sends: a list of ``LoraChoice``, of ``{"source"|"file"|"path",
    "strength"}`` objects, of ``[source, strength]`` pairs or of ``PATH[:STRENGTH]`` strings; None is none."""
    if value is None or value == "":
        return ()
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise BadInputError(f"loras must be a list of LoRAs (file and strength); got {type(value).__name__}.")
    return check_choices(tuple(_one_choice(item) for item in value))


def _one_choice(item: object) -> LoraChoice:
    if isinstance(item, LoraChoice):
        return check_choice(item)
    if isinstance(item, str):
        return parse_lora(item)
    if isinstance(item, dict):
        unknown = sorted(set(item) - {"source", "file", "path", "strength", "expert"})
        if unknown:
            raise BadInputError(f"Unknown LoRA field(s) {', '.join(unknown)}: give 'source', 'strength' and "
                                "optionally 'expert'.")
        source = item.get("source") or item.get("file") or item.get("path")
        return check_choice(LoraChoice(source, item.get("strength", DEFAULT_STRENGTH), item.get("expert", "both")))
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return check_choice(LoraChoice(item[0], item[1]))
    raise BadInputError(f"A LoRA is a file with a strength; got {shown(item)}.")


def check_choice(choice: LoraChoice) -> LoraChoice:
    if not isinstance(choice.source, str) or not choice.source.strip():
        raise BadInputError("A LoRA needs its file: a .safetensors path, a name in the LoRA folder or a hub file.")
    strength = choice.strength
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise BadInputError(f"The strength of LoRA {choice.source!r} must be a number; got {shown(strength)}.")
    lowest, highest = STRENGTH_RANGE
    if not lowest <= strength <= highest:
        raise BadInputError(f"The strength of LoRA {choice.source!r} is {strength:g}: use {lowest:g}..{highest:g} "
                            "(1 is the strength it was trained at; 0.5-1 is typical).")
    if choice.expert not in EXPERTS:
        raise BadInputError(f"The expert of LoRA {choice.source!r} is {choice.expert!r}: use "
                            f"{', '.join(EXPERTS)} (high and low only for Wan 2.2 I2V-A14B's two experts).")
    return LoraChoice(choice.source.strip(), float(strength), choice.expert)


def check_choices(choices: tuple[LoraChoice, ...]) -> tuple[LoraChoice, ...]:
    if len(choices) > MAX_LORAS:
        raise BadInputError(f"{len(choices)} LoRAs were given; at most {MAX_LORAS} apply at once.")
    keys = [(c.source, c.expert) for c in choices]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise BadInputError(f"LoRA {repeated[0][0]!r} is given twice: give it once with the strength you want.")
    return tuple(check_choice(c) for c in choices)

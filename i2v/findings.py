"""Findings: the warnings and notices the engine returns with every result.

A *warning* tells the user about a risk in what they asked for (blurry image, vague prompt).
A *notice* tells them what the engine changed on their behalf (a snapped frame count, a retry).
Both carry a stable ``code`` for programs and a sentence for people.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()

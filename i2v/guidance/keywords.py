"""Motion keyword library: the keyword categories the UI offers and the word lists the prompt linter uses.

The data lives in ``presets/motion_keywords.toml`` so it can be tuned without code changes;
``load_keyword_library`` reads it and validates it strictly, so a typo stops start-up instead of
silently switching a check off.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from i2v.errors import DataFileError
from i2v.paths import presets_dir

logger = logging.getLogger(__name__)

KEYWORD_FILE_NAME = "motion_keywords.toml"

# Phrases match as whole words; a hyphen counts as part of a word so that "clockwise" does
# not match inside "counter-clockwise", and as a separator inside a phrase ("time-lapse").
_PHRASE_START = r"(?<![\w-])"
_PHRASE_END = r"(?![\w-])"
_PHRASE_SEPARATOR = r"[\s-]+"


# --------------------------------------------------------------------------------------------
# Keyword library
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contradiction:
    """Two instructions a short clip cannot follow at once.

    ``a`` and ``b`` each list interchangeable phrasings ("counterclockwise", "anticlockwise").
    ``simultaneous_only`` marks pairs that are only contradictory when asked for at the same time
    (day and night), because the usual prompt mentioning both is a valid change over time.
    """

    a: tuple[str, ...]
    b: tuple[str, ...]
    why: str
    simultaneous_only: bool = False


@dataclass(frozen=True)
class _Matchers:
    """Regexes compiled once per library: the linter runs on every keystroke."""

    keywords: re.Pattern[str] | None
    abstract_phrases: re.Pattern[str] | None
    action_phrases: re.Pattern[str] | None
    speed_direction: re.Pattern[str] | None
    transitions: re.Pattern[str] | None
    simultaneity: re.Pattern[str] | None
    contradictions: tuple[tuple[Contradiction, re.Pattern[str], re.Pattern[str]], ...]


@dataclass(frozen=True)
class KeywordLibrary:
    """The motion keyword library (for the UI) and the word lists the linter uses.

    Build it with ``load_keyword_library``; a hand-built one must use lower-case word lists.
    """

    categories: dict[str, tuple[str, tuple[str, ...]]]  # id -> (label, keywords)
    abstract_words: frozenset[str]
    action_words: frozenset[str]
    speed_direction_words: tuple[str, ...]
    contradictions: tuple[Contradiction, ...]
    # Tuning lists beyond the core ones; empty defaults keep a hand-built library valid.
    non_action_ing_words: frozenset[str] = frozenset()
    transition_words: tuple[str, ...] = ()
    simultaneity_words: tuple[str, ...] = ()
    _matchers: _Matchers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_matchers", _build_matchers(self))

    @property
    def keywords(self) -> tuple[str, ...]:
        """Every keyword of every category, in file order."""
        return tuple(keyword for _label, keywords in self.categories.values() for keyword in keywords)

    def to_dict(self) -> dict[str, Any]:
        """The library as the UI shows it (JSON-serialisable)."""
        return {
            "categories": {
                category_id: {"label": label, "keywords": list(keywords)}
                for category_id, (label, keywords) in self.categories.items()
            }
        }


def add_keyword(prompt: str, keyword: str) -> str:
    """``prompt`` with ``keyword`` appended after a comma, unless the prompt already says it (whole words, any case,
    "time lapse" = "time-lapse"): a second "waves crashing" only spends the text encoder's few tokens."""
    prompt = (prompt or "").rstrip()
    if not prompt:
        return keyword
    words = " ".join(_phrase_words(keyword))
    if words and re.search(_PHRASE_START + _phrase_pattern(words, inflect=False) + _PHRASE_END, prompt.lower()):
        return prompt
    return f"{prompt}{'' if prompt.endswith(',') else ','} {keyword}"


def _build_matchers(library: KeywordLibrary) -> _Matchers:
    return _Matchers(
        keywords=_phrase_regex(library.keywords),
        abstract_phrases=_phrase_regex(_multi_word(library.abstract_words)),
        action_phrases=_phrase_regex(_multi_word(library.action_words)),
        speed_direction=_phrase_regex(library.speed_direction_words, inflect=True),
        transitions=_phrase_regex(library.transition_words),
        simultaneity=_phrase_regex(library.simultaneity_words),
        contradictions=tuple(
            (c, _require(_phrase_regex(c.a, inflect=True)), _require(_phrase_regex(c.b, inflect=True)))
            for c in library.contradictions
        ),
    )


def _require(pattern: re.Pattern[str] | None) -> re.Pattern[str]:
    # A contradiction side with no phrase could never match; the loader rejects it, so this
    # only trips on a hand-built library.
    if pattern is None:
        raise ValueError("a contradiction needs at least one phrase on each side")
    return pattern


def _multi_word(entries: Iterable[str]) -> list[str]:
    """Entries that single-word lookup cannot find ("high quality", "waves at", "award-winning")."""
    return [entry for entry in entries if len(_phrase_words(entry)) > 1]


def _phrase_words(phrase: str) -> list[str]:
    return [word for word in re.split(r"[\s-]+", phrase.strip().lower()) if word]


def _phrase_regex(phrases: Iterable[str], *, inflect: bool = False) -> re.Pattern[str] | None:
    """One regex matching any of the phrases as whole words, case-insensitively on normalised text.

    With ``inflect``, the first word of a multi-word phrase also matches its other verb forms,
    so "zoom in" matches "zooming in" and "zooms in". Single words are left alone: inflecting
    "fast" or "day" would only invent false matches ("fasting").
    """
    unique = {" ".join(_phrase_words(phrase)) for phrase in phrases} - {""}
    if not unique:
        return None
    # Longest first, so "slow motion" wins over "slow" where both start at the same place.
    ordered = sorted(unique, key=lambda phrase: (-len(phrase), phrase))
    alternatives = [_phrase_pattern(phrase, inflect=inflect) for phrase in ordered]
    return re.compile(_PHRASE_START + "(?:" + "|".join(alternatives) + ")" + _PHRASE_END)


def _phrase_pattern(phrase: str, *, inflect: bool) -> str:
    words = phrase.split()
    parts = [re.escape(word) for word in words]
    if inflect and len(words) > 1:
        forms = sorted(_verb_forms(words[0]), key=lambda form: (-len(form), form))
        parts[0] = "(?:" + "|".join(map(re.escape, forms)) + ")"
    return _PHRASE_SEPARATOR.join(parts)


def _verb_forms(verb: str) -> set[str]:
    """Regular inflections of a verb. Over-generating ("zoomming") is harmless: no prompt has them."""
    stem = verb[:-1] if verb.endswith("e") and len(verb) > 2 else verb
    forms = {verb, verb + "s", verb + "es", verb + "d", stem + "ing", stem + "ed"}
    forms |= {verb + verb[-1] + "ing", verb + verb[-1] + "ed"}  # pan -> panning, panned
    if verb.endswith("y"):
        forms |= {verb[:-1] + "ies", verb[:-1] + "ied"}
    return forms


# --------------------------------------------------------------------------------------------
# Loading and validating the data file
# --------------------------------------------------------------------------------------------

_TOP_LEVEL_KEYS = ("categories", "lint")
_CATEGORY_KEYS = ("label", "keywords")
_LINT_KEYS = (
    "abstract_words",
    "action_words",
    "speed_direction_words",
    "non_action_ing_words",
    "transition_words",
    "simultaneity_words",
    "contradictions",
)
_CONTRADICTION_KEYS = ("a", "b", "why")
_CONTRADICTION_OPTIONAL_KEYS = ("simultaneous_only",)

_TOML_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", float: "float", list: "array", dict: "table"}


def load_keyword_library(path: str | os.PathLike[str] | None = None) -> KeywordLibrary:
    """Load and strictly validate the keyword library; the default file is read once per process.

    Raises DataFileError naming the file and the offending key for anything unexpected, so a
    typo in the data file stops start-up instead of silently switching a check off.
    """
    if path is None:
        return _load_cached((presets_dir() / KEYWORD_FILE_NAME).resolve())
    # Explicit paths are not cached: they are tests and tools that may rewrite the file.
    return _load(Path(path))


@functools.lru_cache(maxsize=8)
def _load_cached(path: Path) -> KeywordLibrary:
    return _load(path)


def _load(path: Path) -> KeywordLibrary:
    checker = _Checker(path)
    data = checker.read()
    checker.keys(data, "", required=_TOP_LEVEL_KEYS)
    categories = _parse_categories(checker, data["categories"])
    lint = checker.table(data["lint"], "lint")
    checker.keys(lint, "lint", required=_LINT_KEYS)
    library = KeywordLibrary(
        categories=categories,
        abstract_words=frozenset(checker.words(lint["abstract_words"], "lint.abstract_words")),
        action_words=frozenset(checker.words(lint["action_words"], "lint.action_words")),
        speed_direction_words=checker.words(lint["speed_direction_words"], "lint.speed_direction_words"),
        contradictions=_parse_contradictions(checker, lint["contradictions"]),
        non_action_ing_words=frozenset(checker.words(lint["non_action_ing_words"], "lint.non_action_ing_words")),
        transition_words=checker.words(lint["transition_words"], "lint.transition_words"),
        simultaneity_words=checker.words(lint["simultaneity_words"], "lint.simultaneity_words"),
    )
    logger.debug("Loaded motion keyword library from %s: %d categories, %d keywords",
                 path, len(categories), len(library.keywords))
    return library


def _parse_categories(checker: _Checker, value: Any) -> dict[str, tuple[str, tuple[str, ...]]]:
    table = checker.table(value, "categories")
    if not table:
        raise checker.error("categories", "at least one category is required")
    categories: dict[str, tuple[str, tuple[str, ...]]] = {}
    for category_id, category_value in table.items():
        where = f"categories.{category_id}"
        category = checker.table(category_value, where)
        checker.keys(category, where, required=_CATEGORY_KEYS)
        label = checker.text(category["label"], f"{where}.label")
        keywords = checker.keywords(category["keywords"], f"{where}.keywords")
        categories[category_id] = (label, keywords)
    return categories


def _parse_contradictions(checker: _Checker, value: Any) -> tuple[Contradiction, ...]:
    entries = checker.array(value, "lint.contradictions")
    contradictions = []
    for index, entry_value in enumerate(entries):
        where = f"lint.contradictions[{index}]"
        entry = checker.table(entry_value, where)
        checker.keys(entry, where, required=_CONTRADICTION_KEYS, optional=_CONTRADICTION_OPTIONAL_KEYS)
        contradictions.append(
            Contradiction(
                a=checker.phrasings(entry["a"], f"{where}.a"),
                b=checker.phrasings(entry["b"], f"{where}.b"),
                why=checker.text(entry["why"], f"{where}.why").rstrip("."),
                simultaneous_only=checker.flag(entry.get("simultaneous_only", False), f"{where}.simultaneous_only"),
            )
        )
    return tuple(contradictions)


class _Checker:
    """Type and key checks that report errors as "<file>: <dotted.key>: <problem>"."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def error(self, key: str, problem: str) -> DataFileError:
        return DataFileError(f"{self.path}: {key}: {problem}")

    def read(self) -> dict[str, Any]:
        try:
            with open(self.path, "rb") as file:
                return tomllib.load(file)
        except OSError as exc:
            raise DataFileError(f"{self.path}: cannot read the keyword file: {exc.strerror or exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise DataFileError(f"{self.path}: TOML syntax error: {exc}") from exc

    def keys(self, table: dict[str, Any], where: str, *, required: tuple[str, ...],
             optional: tuple[str, ...] = ()) -> None:
        allowed = required + optional
        for key in table:
            if key not in allowed:
                raise self.error(_join_key(where, key), f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in table:
                raise self.error(_join_key(where, key), "missing required key")

    def table(self, value: Any, where: str) -> dict[str, Any]:
        return self._expect(value, dict, where)

    def array(self, value: Any, where: str) -> list[Any]:
        return self._expect(value, list, where)

    def flag(self, value: Any, where: str) -> bool:
        return self._expect(value, bool, where)

    def text(self, value: Any, where: str) -> str:
        text = " ".join(self._expect(value, str, where).split())
        if not text:
            raise self.error(where, "must not be empty")
        return text

    def texts(self, value: Any, where: str) -> tuple[str, ...]:
        return tuple(self.text(item, f"{where}[{index}]") for index, item in enumerate(self.array(value, where)))

    def words(self, value: Any, where: str) -> tuple[str, ...]:
        """A lint word list, lower-cased because matching is case-insensitive."""
        return tuple(text.lower() for text in self.texts(value, where))

    def keywords(self, value: Any, where: str) -> tuple[str, ...]:
        """Keywords keep their spelling for display; duplicates are caught case-insensitively."""
        keywords = self.texts(value, where)
        if not keywords:
            raise self.error(where, "at least one keyword is required")
        seen: set[str] = set()
        for index, keyword in enumerate(keywords):
            if keyword.lower() in seen:
                raise self.error(f"{where}[{index}]", f'duplicate keyword "{keyword}"')
            seen.add(keyword.lower())
        return keywords

    def phrasings(self, value: Any, where: str) -> tuple[str, ...]:
        """One phrase or a non-empty array of interchangeable phrases."""
        if isinstance(value, str):
            return (self.text(value, where).lower(),)
        phrases = self.words(value, where)
        if not phrases:
            raise self.error(where, "at least one phrase is required")
        return phrases

    def _expect(self, value: Any, expected: type, where: str) -> Any:
        if not isinstance(value, expected):
            raise self.error(where, f"expected {_toml_type_name(expected)}, got {_toml_type_name(type(value))}")
        return value


def _join_key(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _toml_type_name(python_type: type) -> str:
    return _TOML_TYPE_NAMES.get(python_type, python_type.__name__)

"""Prompt linter: checks a prompt while the user types, before any GPU time is spent.

I2VGen-XL reads the prompt through CLIP's text encoder. CLIP learnt motion from captions
("camera slowly panning left", "waves crashing"), not from adjectives ("beautiful",
"make it dynamic"), it does not understand negation, and it reads at most 77 tokens.
The linter points out prompts that run into these limits and suggests the formula that works:
subject + concrete action + direction/speed + environment.

The word lists live in ``presets/motion_keywords.toml`` so they can be tuned without code
changes; the same file is the motion keyword library the UI offers.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from i2v.findings import Finding
from i2v.guidance.keywords import KEYWORD_FILE_NAME, Contradiction, KeywordLibrary, _phrase_regex, load_keyword_library

# Re-exported: the keyword library used to live here and callers import it from this module.
__all__ = [
    "CLIP_MAX_TOKENS",
    "CLIP_SPECIAL_TOKENS",
    "EXAMPLE_CAMERA_MOTION",
    "EXAMPLE_PROMPT",
    "KEYWORD_FILE_NAME",
    "Contradiction",
    "KeywordLibrary",
    "estimate_clip_tokens",
    "lint_prompt",
    "load_keyword_library",
]

CLIP_MAX_TOKENS = 77  # including the start and end tokens
CLIP_SPECIAL_TOKENS = 2  # <|startoftext|> and <|endoftext|>

EXAMPLE_PROMPT = "a woman walking slowly along the beach, waves crashing, camera panning left"
# Camera motion suits any picture, so it is the safest action to suggest without seeing the image.
EXAMPLE_CAMERA_MOTION = "camera slowly panning left"

# Grammar and medium words that carry no content. Ignored when deciding whether a prompt is
# "only abstract words", so "a beautiful video, make it cinematic" still counts as abstract only.
_FILLER_WORDS = frozenset(
    """
    a an the and or but nor of with without in on at to for from by as into onto over under
    very so too really quite extremely super just it its it's this that these those there
    is are be being been was were has have having do does make makes made making let lets
    please some any more most much many i me my you your we our they them their he him his
    she her video image photo picture clip footage scene shot style
    """.split()
)

# Words that start a negation of a thing ("no blur") or of an action ("don't move").
_NEGATION = re.compile(
    r"(?<![\w'-])(?:"
    r"(?P<thing>no|without|avoid|avoiding)"
    r"|(?P<action>never|not|cannot|dont|doesnt|didnt|(?:do|does|did) not|[^\W\d_]+n't)"
    r")(?![\w'-])"
)
# After a negation, these words are not the thing being negated ("without a hat" negates "hat").
_ARTICLES = frozenset({"a", "an", "the", "any"})
_NEGATED_WORDS_MAX = 3

# "zoom in and out" / "panning left and right" mean both directions: spelled out as
# "zoom in and zoom out" before matching, so the contradiction list needs no special cases.
_OPPOSITE_DIRECTIONS = {
    frozenset(pair)
    for pair in (
        ("in", "out"), ("left", "right"), ("up", "down"), ("forward", "backward"), ("forwards", "backwards"),
    )
}
_DIRECTION = r"in|out|left|right|up|down|forwards?|backwards?"
_DIRECTION_PAIR = re.compile(
    rf"(?<![\w-])([^\W\d_]+)[\s-]+({_DIRECTION})[\s-]*(?:and|or|&|/)[\s-]*({_DIRECTION})(?![\w-])"
)

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")

# The pre-tokenisation regex of CLIP's BPE tokenizer, written for the standard library `re`
# (which has no \p{L}): contractions, runs of letters, single digits, runs of anything else.
_CLIP_PIECE = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+")
_CONTRACTION = re.compile(r"'(?:s|t|re|ve|m|ll|d)")
_MAX_QUOTED_CHARS = 40



# --------------------------------------------------------------------------------------------
# Token estimate
# --------------------------------------------------------------------------------------------


def estimate_clip_tokens(text: str) -> int:
    """Approximate CLIP BPE token count of ``text``, including the start and end tokens.

    The real vocabulary is not available offline, so this splits the text the way CLIP's
    tokenizer does (lower case; runs of letters, single digits, runs of punctuation) and counts
    one token per word of up to 7 letters and one more per further 6 letters, one per digit and
    punctuation character, and two per non-ASCII character (emoji, accents, CJK), which byte-level
    BPE usually splits. It is an approximation that errs on the high side for ordinary English
    (many long words are one real token); rare short words or names may be under-counted.
    """
    pieces = _CLIP_PIECE.findall(" ".join(text.lower().split()))
    return CLIP_SPECIAL_TOKENS + sum(_estimate_piece_tokens(piece) for piece in pieces)


def _estimate_piece_tokens(piece: str) -> int:
    if _CONTRACTION.fullmatch(piece) or piece.isdigit():
        return 1
    non_ascii = sum(1 for char in piece if not char.isascii())
    ascii_count = len(piece) - non_ascii
    if piece[0].isalpha():
        return _ascii_word_tokens(ascii_count) + 2 * non_ascii
    return ascii_count + 2 * non_ascii


def _ascii_word_tokens(length: int) -> int:
    if length == 0:
        return 0
    if length <= 7:
        return 1
    return 1 + (length - 1) // 6


# --------------------------------------------------------------------------------------------
# Linting
# --------------------------------------------------------------------------------------------


def lint_prompt(
    prompt: str,
    negative_prompt: str = "",
    library: KeywordLibrary | None = None,
    *,
    token_counter: Callable[[str], int] | None = None,
    max_tokens: int = CLIP_MAX_TOKENS,
) -> list[Finding]:
    """Findings about ``prompt``, most important first (empty, too long, contradictions, ...).

    ``token_counter`` counts real tokens (including the start and end tokens) when the engine
    has the tokenizer loaded; otherwise the count is estimated. ``negative_prompt`` is only used
    to tailor the advice for negations. ``max_tokens`` is what the model's text encoder reads (CLIP 77, T5 226
    in CogVideoX, UMT5 512 in Wan). Deterministic: the same input gives the same list.
    """
    if not prompt.strip():
        # Nothing else is worth saying about an empty prompt.
        return [_empty_finding()]
    if library is None:
        library = load_keyword_library()
    text = _normalise(prompt)
    findings: list[Finding] = []
    findings.extend(_check_length(prompt, token_counter, max_tokens))
    findings.extend(_check_contradictions(text, library))
    negation_findings = _check_negations(text, _normalise(negative_prompt))
    findings.extend(negation_findings)
    # A rewrite suggestion built from the prompt must not repeat a negation we just flagged.
    findings.extend(_check_motion(text, library, prompt_fit_for_hint=not negation_findings))
    return findings


def _normalise(text: str) -> str:
    text = " ".join(text.lower().replace("\u2019", "'").replace("\u2018", "'").split())
    return _DIRECTION_PAIR.sub(_spell_out_direction_pair, text)


def _spell_out_direction_pair(match: re.Match[str]) -> str:
    verb, first, second = match.groups()
    if frozenset((first, second)) in _OPPOSITE_DIRECTIONS:
        return f"{verb} {first} and {verb} {second}"
    return match.group(0)


def _empty_finding() -> Finding:
    return Finding(
        code="prompt.empty",
        message="The prompt is empty, so the model has nothing to tell it what should move.",
        hint=f'Describe subject + action + direction/speed + environment. Try: "{EXAMPLE_PROMPT}"',
    )


def _check_length(prompt: str, token_counter: Callable[[str], int] | None, max_tokens: int) -> list[Finding]:
    count_tokens = token_counter or estimate_clip_tokens
    total = count_tokens(prompt)
    if total <= max_tokens:
        return []
    words = prompt.split()
    fitting = _words_that_fit(words, count_tokens, max_tokens)
    about = "" if token_counter else "about "
    if fitting == 0:
        cut = "only the start of the first word is read"
    elif fitting < len(words):
        cut = f'words after about word {fitting} ("{_quote(words[fitting])}" onwards) are ignored'
    else:
        # Possible with a real tokenizer that counts differently from word to word; rare.
        cut = "the last words are ignored"
    return [
        Finding(
            code="prompt.too_long",
            message=(
                f"The prompt is {about}{total} tokens but the text encoder reads only {max_tokens} "
                f"(including its start and end tokens) and truncates the rest, so {cut}."
            ),
            hint=(
                "Keep the motion near the start and drop quality words: subject + action + "
                f'direction/speed + environment. Try: "{EXAMPLE_PROMPT}"'
            ),
        )
    ]


def _words_that_fit(words: list[str], count_tokens: Callable[[str], int], max_tokens: int) -> int:
    """How many leading words fit in the token limit (binary search: counts grow with the prefix)."""
    low, high = 0, len(words)
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(" ".join(words[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return low


def _check_contradictions(text: str, library: KeywordLibrary) -> list[Finding]:
    matchers = library._matchers
    asks_for_both_at_once = bool(matchers.simultaneity and matchers.simultaneity.search(text))
    findings = []
    for contradiction, a_pattern, b_pattern in matchers.contradictions:
        if contradiction.simultaneous_only and not asks_for_both_at_once:
            continue
        pair = _conflicting_pair(text, a_pattern, b_pattern, matchers.transitions)
        if pair is not None:
            findings.append(_contradiction_finding(contradiction, *pair))
    return findings


def _conflicting_pair(
    text: str, a_pattern: re.Pattern[str], b_pattern: re.Pattern[str], transitions: re.Pattern[str] | None
) -> tuple[str, str] | None:
    """The first a/b pair not separated by a transition ("day turning to night" is a sequence).

    Only neighbouring matches need checking: if some a and b have no transition between them,
    neither do the neighbours in between, and one of those neighbour pairs switches sides.
    """
    matches = sorted(
        [(match, "a") for match in a_pattern.finditer(text)] + [(match, "b") for match in b_pattern.finditer(text)],
        key=lambda item: (item[0].start(), item[0].end()),
    )
    for (first, first_side), (second, second_side) in zip(matches, matches[1:]):
        if first_side == second_side or first.end() > second.start():
            continue
        if transitions is not None and transitions.search(text, first.end(), second.start()):
            continue
        a_match, b_match = (first, second) if first_side == "a" else (second, first)
        return a_match.group(0), b_match.group(0)
    return None


def _contradiction_finding(contradiction: Contradiction, a_text: str, b_text: str) -> Finding:
    hint = f'Keep only one of them: e.g. keep "{a_text}" and delete "{b_text}".'
    if contradiction.simultaneous_only:
        hint += f' For a change over time, say so: "{a_text} turning to {b_text}, time-lapse".'
    return Finding(
        code="prompt.contradiction",
        message=f'"{a_text}" and "{b_text}" contradict each other because {contradiction.why}.',
        hint=hint,
    )


def _check_negations(text: str, negative_text: str) -> list[Finding]:
    negations = list(_find_negations(text))
    if not negations:
        return []
    quoted = ", ".join(f'"{_quote(phrase)}"' for phrase, _negated, _is_action in negations[:3])
    phrase, negated, is_action = negations[0]
    if negated:
        reading = f'may read it as asking for "{_quote(negated)}"'
    else:
        reading = "may ignore it"
    message = f"The prompt uses negation ({quoted}), which the text encoder does not understand: it {reading}."
    return [Finding(code="prompt.negation_in_prompt", message=message,
                    hint=_negation_hint(phrase, negated, is_action, negative_text))]


def _find_negations(text: str) -> Iterator[tuple[str, str, bool]]:
    """(phrase as written, negated words, whether an action is negated) for each negation in order."""
    for match in _NEGATION.finditer(text):
        negated, end = _negated_words(text, match.end())
        yield text[match.start():max(end, match.end())], negated, match.group("action") is not None


def _negated_words(text: str, start: int) -> tuple[str, int]:
    """The few words a negation applies to (up to punctuation or a filler word), and where they end."""
    clause_end = start + len(re.split(r"[,.;:!?()\[\]]", text[start:], maxsplit=1)[0])
    words = list(_WORD.finditer(text, start, clause_end))
    while words and words[0].group(0) in _ARTICLES:
        words.pop(0)
    negated: list[re.Match[str]] = []
    for word in words[:_NEGATED_WORDS_MAX]:
        if word.group(0) in _FILLER_WORDS:
            break
        negated.append(word)
    if not negated:
        return "", start
    return " ".join(word.group(0) for word in negated), negated[-1].end()


def _negation_hint(phrase: str, negated: str, is_action: bool, negative_text: str) -> str:
    if is_action or not negated:
        return (
            f'Delete "{_quote(phrase)}" and say what should happen instead (e.g. "static camera", '
            '"standing still"); put anything unwanted in the negative prompt.'
        )
    if _contains_phrase(negative_text, negated):
        return f'Delete "{_quote(phrase)}" here; "{_quote(negated)}" is already in the negative prompt.'
    return f'Delete "{_quote(phrase)}" here and put "{_quote(negated)}" in the negative prompt instead.'


def _contains_phrase(text: str, phrase: str) -> bool:
    pattern = _phrase_regex([phrase])
    return bool(pattern and pattern.search(text))


@dataclass(frozen=True)
class _MotionAnalysis:
    content_words: tuple[str, ...]
    abstract_words: tuple[str, ...]
    actions: tuple[str, ...]  # in prompt order
    has_speed_or_direction: bool

    @property
    def abstract_only(self) -> bool:
        return bool(self.content_words) and len(self.abstract_words) == len(self.content_words) and not self.actions


def _check_motion(text: str, library: KeywordLibrary, *, prompt_fit_for_hint: bool) -> list[Finding]:
    analysis = _analyse_motion(text, library)
    # abstract_only already says there is no action and its hint supplies one, so no_action
    # (and no_direction, which needs an action) would only repeat it as noise.
    if analysis.abstract_only:
        return [_abstract_only_finding(analysis)]
    if not analysis.actions:
        return [_no_action_finding(text if prompt_fit_for_hint else "")]
    if not analysis.has_speed_or_direction:
        return [_no_direction_finding(analysis.actions[0])]
    return []


def _analyse_motion(text: str, library: KeywordLibrary) -> _MotionAnalysis:
    matchers = library._matchers
    abstract_spans = _spans(matchers.abstract_phrases, text)
    action_spans = _spans(matchers.action_phrases, text) + _spans(matchers.keywords, text)
    actions: list[tuple[int, str]] = [(start, text[start:end]) for start, end in action_spans]
    content: list[str] = []
    abstract: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        if word in _FILLER_WORDS:
            continue
        content.append(word)
        is_abstract = word in library.abstract_words or _inside(match.span(), abstract_spans)
        if is_abstract:
            abstract.append(word)
        elif _is_action_word(word, library) and not _inside(match.span(), action_spans):
            actions.append((match.start(), word))
    has_speed_or_direction = bool(matchers.speed_direction and matchers.speed_direction.search(text))
    return _MotionAnalysis(
        content_words=tuple(content),
        abstract_words=tuple(abstract),
        actions=tuple(action for _start, action in sorted(actions)),
        has_speed_or_direction=has_speed_or_direction,
    )


def _is_action_word(word: str, library: KeywordLibrary) -> bool:
    if word in library.action_words:
        return True
    # CLIP's captions describe motion with "-ing" forms, so an unknown "-ing" word is far more
    # often an action ("meandering") than a thing ("painting", listed as an exception).
    return len(word) > 4 and word.endswith("ing") and word not in library.non_action_ing_words


def _spans(pattern: re.Pattern[str] | None, text: str) -> list[tuple[int, int]]:
    return [match.span() for match in pattern.finditer(text)] if pattern else []


def _inside(span: tuple[int, int], spans: list[tuple[int, int]]) -> bool:
    return any(start <= span[0] and span[1] <= end for start, end in spans)


def _abstract_only_finding(analysis: _MotionAnalysis) -> Finding:
    examples = ", ".join(f'"{word}"' for word in dict.fromkeys(analysis.abstract_words))
    return Finding(
        code="prompt.abstract_only",
        message=(
            f"The prompt only has quality or mood words ({_quote(examples, 80)}), which the text encoder "
            "cannot turn into motion because it learnt motion from descriptions of what moves."
        ),
        hint=f'Say who or what moves, how and where. Try: "{EXAMPLE_PROMPT}"',
    )


def _no_action_finding(text: str) -> Finding:
    """``text`` is the user's prompt to extend in the hint, or "" to use the stock example."""
    prompt = text.rstrip(" ,.;")
    if prompt and len(prompt) <= 60:
        example = f'Try: "{prompt}, {EXAMPLE_CAMERA_MOTION}"'
    else:
        example = f'Try: "{EXAMPLE_PROMPT}"'
    return Finding(
        code="prompt.no_action",
        message=(
            "The prompt names no concrete motion, so the model has to guess what moves "
            "and usually produces a near-still clip."
        ),
        hint=f"Add an action with a direction or speed, or pick one from the motion keywords. {example}",
    )


def _no_direction_finding(action: str) -> Finding:
    quoted = _quote(action)
    if " " in action:
        example = f'e.g. "slowly", "gently" or "to the left" next to "{quoted}"'
    else:
        example = f'e.g. "{quoted} slowly" or "{quoted} to the left"'
    return Finding(
        code="prompt.no_direction",
        message=f'"{quoted}" has no speed or direction, so the model picks one and the motion may look random.',
        hint=f"Add how it moves, {example}.",
    )


def _quote(text: str, limit: int = _MAX_QUOTED_CHARS) -> str:
    """Shorten user text quoted in a message, so a 10 000-character word cannot flood the UI."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"

"""Pure text features of the smart router: the request window, the hand-made "general" features and the TF-IDF.

Training (scripts/train_router.py) and serving call these same functions with the same word-rarity table
(exported into the model artifact), so the features the model learnt from are the features it is served.

The general features are chosen to carry across kinds of task (MMLU is the only training data, but the router
also meets math word problems and open multi-turn questions): length and shape, numbers and math notation,
reasoning and multi-step cues, word rarity, code. No feature names a subject.
"""

from __future__ import annotations

import math
import re
from collections import Counter

WINDOW_USER_MESSAGES = 3  # the last user message and up to 2 earlier ones
WINDOW_MAX_CHARS = 6000
# Words outside the exported table (wordfreq's most frequent English words, which end near zipf 2.5) count as
# rare words of this zipf value.
UNKNOWN_ZIPF = 1.5

_WORD = re.compile(r"[a-z][a-z']+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_SENTENCE_END = re.compile(r"[.?!](?:\s|$)")
_NUMERIC_LINE = re.compile(r"^\W*(?:[A-Za-z][.)]\s*)?[-+$]?\d[\d.,/%\s^*+-]*\W*$", re.M)
_CUES = {
    "calc": r"\b(?:calculate|compute|evaluate|solve|determine|estimate|simplify|derive|how many|how much|"
    r"what is the value|find the)\b",
    "prove": r"\b(?:prove|show that|justify|explain why|step by step|derive)\b",
    "logic": r"\b(?:if|then|unless|only if|implies|therefore|suppose|assume|given that)\b",
    "negation": r"\b(?:not|except|least|false|incorrect|never)\b",
    "compare": r"\b(?:more than|less than|twice|half|times as|percent|ratio|rate|per)\b",
    "steps": r"\b(?:after|each|every|total|remaining|left|then|first|second|finally|altogether|respectively)\b",
    "code": r"(?:```|\bdef |\breturn\b|\bfunction\b|\bclass \w+|[{};]\s*$|\bprintf?\b|\bint\b|==)",
    "write": r"\b(?:write|compose|draft|story|poem|essay|email|letter|blog|describe|summari[sz]e|imagine|pretend)\b",
    "math": r"(?:[=^+*/<>]|\bsqrt\b|\\frac|\blog\b|\bsin\b|\bcos\b|\bx\b|\by\b|\bn\b|∑|∫|π)",
    "unit": r"\b(?:kg|km|mph|m/s|cm|mm|mol|joules?|newtons?|watts?|volts?|dollars?|hours?|minutes?|seconds?)\b|\$",
}
_CUE_PATTERNS = {name: re.compile(rx, re.I | re.M) for name, rx in _CUES.items()}

GENERAL_FEATURE_NAMES = [
    "log_chars", "log_words", "log_lines", "log_sentences", "log_numbers", "numbers_per_word", "digit_share",
    "zipf_mean", "zipf_below_3_share", "zipf_below_2_share", "zipf_min", "word_length_mean", "type_token",
    "non_ascii_share", "question_marks", "numeric_line_share", "log_max_number", "upper_share",
    *(f"cue_{name}" for name in _CUES),
]


def request_text(messages, *, max_user_messages: int = WINDOW_USER_MESSAGES,
                 max_chars: int = WINDOW_MAX_CHARS) -> str:
    """The text the router scores: the last user messages (newest last), joined, keeping the newest max_chars.

    `messages` holds objects with `role` and `content` (routing.types.ChatMessage). Assistant messages and the
    system prompt are not scored: they say what was answered or how to answer, not how hard the user's ask is.
    """
    users = [m.content for m in messages if m.role == "user" and m.content]
    text = "\n\n".join(users[-max_user_messages:])
    return text[-max_chars:]


def general_features(text: str, zipf: dict[str, float]) -> list[float]:
    """The GENERAL_FEATURE_NAMES values of one text; `zipf` maps a lowercase word to its zipf frequency."""
    low = text.lower()
    words = _WORD.findall(low)
    n_words = max(len(words), 1)
    zipfs = [zipf.get(w, UNKNOWN_ZIPF) for w in words] or [7.0]
    numbers = _NUMBER.findall(text)
    n_chars = max(len(text), 1)
    lines = [line for line in text.split("\n") if line.strip()]
    max_number = 0.0
    for number in numbers:
        try:
            max_number = max(max_number, float(number.replace(",", "")))
        except ValueError:  # "1.2.3"
            pass
    features = [
        math.log1p(len(text)),
        math.log1p(len(words)),
        math.log1p(text.count("\n") + 1),
        math.log1p(len(_SENTENCE_END.findall(text)) + 1),
        math.log1p(len(numbers)),
        len(numbers) / n_words,
        sum(c.isdigit() for c in text) / n_chars,
        sum(zipfs) / len(zipfs),
        sum(z < 3 for z in zipfs) / len(zipfs),
        sum(z < 2 for z in zipfs) / len(zipfs),
        min(zipfs),
        sum(len(w) for w in words) / n_words,
        math.log1p(len(set(words))) / max(math.log1p(n_words), 1e-9),
        sum(not c.isascii() for c in text) / n_chars,
        float(text.count("?")),
        len(_NUMERIC_LINE.findall(text)) / max(len(lines), 1),
        math.log10(1.0 + min(max_number, 1e12)),
        sum(c.isupper() for c in text) / n_chars,
    ]
    features.extend(math.log1p(len(rx.findall(text))) for rx in _CUE_PATTERNS.values())
    return features


# sklearn's TfidfVectorizer defaults: lowercase, this token pattern, word n-grams joined by one space.
_TFIDF_TOKEN = re.compile(r"(?u)\b\w\w+\b")


def tfidf_terms(text: str, ngram_max: int = 2) -> Counter:
    """Term counts as sklearn's TfidfVectorizer(ngram_range=(1, ngram_max)) builds them, before the vocabulary."""
    tokens = _TFIDF_TOKEN.findall(text.lower())
    terms = Counter(tokens)
    for n in range(2, ngram_max + 1):
        terms.update(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return terms

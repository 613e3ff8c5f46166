"""Review text cleaning: normalisation rules and rejection rules, each counted.

The rules are versioned: `CLEANING_RULES_VERSION` changes whenever a rule changes, and
`Cleaner.version` adds the rule parameters, so a dataset fingerprint names exactly the
cleaning its texts went through.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

CLEANING_RULES_VERSION = "1"

# Normalisation rules (the text changes, the review stays) and rejection rules (the review is
# left out of training). Order matters and is the order they are applied in.
NORMALISE_RULES = ("nfc", "html", "url", "whitespace", "repeat")
REJECT_RULES = ("empty", "too_short", "too_long", "low_hangul", "duplicate")

_TAG = re.compile(r"<[^>]{0,200}>")
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"']+|\b[\w.-]+\.(?:com|net|org|co\.kr|kr|ly)(?:/[^\s]*)?", re.IGNORECASE)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u200b-\u200f\u2028\u2029\ufeff]")
_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff]")
_LETTER = re.compile(r"[^\W\d_]")
_KEY_DROP = re.compile(r"[\s\W_]+")


@dataclass(frozen=True)
class CleanResult:
    text: str
    rejected: str | None  # the rejection rule that fired, or None when the review is kept
    applied: tuple[str, ...]  # normalisation rules that changed the text


def hangul_ratio(text: str) -> float:
    """Share of letters that are Hangul (syllables or jamo); 0.0 when there are no letters."""
    letters = len(_LETTER.findall(text))
    return len(_HANGUL.findall(text)) / letters if letters else 0.0


def dedup_key(text: str) -> str:
    """Key of a text for duplicate detection: case, spacing and punctuation do not matter."""
    norm = _KEY_DROP.sub("", text.casefold())
    return hashlib.sha1(norm.encode("utf-8")).hexdigest()[:20]


class Cleaner:
    """Applies the rules to one text at a time and counts what each rule did."""

    def __init__(
        self,
        min_chars: int = 2,
        max_chars: int = 1000,
        min_hangul_ratio: float = 0.3,
        max_repeat: int = 2,
    ) -> None:
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.min_hangul_ratio = min_hangul_ratio
        self.max_repeat = max_repeat
        self._repeat = re.compile(rf"(.)\1{{{max_repeat},}}", re.DOTALL)
        self.counts: Counter[str] = Counter()
        params = f"{min_chars}:{max_chars}:{min_hangul_ratio}:{max_repeat}"
        self.version = f"v{CLEANING_RULES_VERSION}-{hashlib.sha1(params.encode()).hexdigest()[:8]}"

    @classmethod
    def from_settings(cls, settings) -> Cleaner:
        return cls(
            min_chars=settings.min_text_chars,
            max_chars=settings.max_text_chars,
            min_hangul_ratio=settings.min_hangul_ratio,
            max_repeat=settings.max_repeat,
        )

    def normalise(self, text: str) -> tuple[str, tuple[str, ...]]:
        applied: list[str] = []

        def step(name: str, new: str) -> str:
            if new != current:
                applied.append(name)
            return new

        current = text
        current = step("nfc", unicodedata.normalize("NFC", current))
        if "<" in current or "&" in current:
            current = step("html", _TAG.sub(" ", html.unescape(current)))
        current = step("url", _URL.sub(" ", current))
        current = step("whitespace", _SPACE.sub(" ", _CONTROL.sub("", current)).strip())
        current = step("repeat", self._repeat.sub(lambda m: m.group(1) * self.max_repeat, current))
        return current, tuple(applied)

    def clean(self, text: str | None) -> CleanResult:
        """Normalise `text` and decide whether the review is kept (duplicates are decided by
        the caller, who knows the other reviews of the movie: see `count_duplicate`)."""
        cleaned, applied = self.normalise(text or "")
        for rule in applied:
            self.counts[rule] += 1
        rejected = self._reject_reason(cleaned, raw_len=len(text or ""))
        if rejected:
            self.counts[rejected] += 1
        else:
            self.counts["kept"] += 1
        return CleanResult(cleaned, rejected, applied)

    def count_duplicate(self) -> None:
        """Record that a kept review turned out to duplicate another one of its movie."""
        self.counts["kept"] -= 1
        self.counts["duplicate"] += 1

    def _reject_reason(self, text: str, raw_len: int) -> str | None:
        if not text:
            return "empty"
        if raw_len > self.max_chars or len(text) > self.max_chars:
            return "too_long"
        if len(text) < self.min_chars:
            return "too_short"
        if hangul_ratio(text) < self.min_hangul_ratio:
            return "low_hangul"
        return None

    def summary(self) -> dict[str, int]:
        """Counts for every rule (zeros included), in rule order, then `kept`."""
        return {r: self.counts.get(r, 0) for r in (*NORMALISE_RULES, *REJECT_RULES, "kept")}

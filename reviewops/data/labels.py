"""Sentiment labels from what reviewers said themselves: a 1–10 rating or CGV's golden egg."""

from __future__ import annotations

from dataclasses import dataclass

from reviewops.errors import InputError
from reviewops.store.models import EXPECTATION

POSITIVE, NEGATIVE = 1, 0
LABEL_NAMES_KO = {POSITIVE: "긍정", NEGATIVE: "부정"}  # what users of the app and the API read
LABEL_IDS_KO = {name: label for label, name in LABEL_NAMES_KO.items()}
# A prediction's verdict is its label's name, or this when the score sits in the uncertain band or the
# input is outside what the model knows (`reviewops.predict`).
VERDICT_UNCERTAIN = "애매함"
# Why an input is outside what the model knows: the codes the API and the CLI answer, and their Korean.
FLAG_NAMES_KO = {
    "empty": "빈 텍스트",
    "no_hangul": "한글 없음",
    "emoji_only": "이모지·기호만",
    "mostly_unseen": "모르는 단어가 대부분",
}
SOURCE_NAMES = {"cgv": "CGV", "megabox": "메가박스", "naver": "NAVER", "nsmc": "NSMC"}  # review sites, as shown


def flags_ko(flags) -> str:
    """The API's input flags in Korean, joined ("" for none)."""
    return ", ".join(FLAG_NAMES_KO.get(f, f) for f in flags or ())


@dataclass(frozen=True)
class LabelPolicy:
    """Ratings up to `negative_max` are negative, from `positive_min` positive, between: none.

    The default is NSMC's: 1–4 negative, 9–10 positive, 5–8 left unlabelled.
    """

    negative_max: int = 4
    positive_min: int = 9

    def __post_init__(self) -> None:
        if not (1 <= self.negative_max < self.positive_min <= 10):
            raise InputError(
                f"label policy needs 1 <= negative_max < positive_min <= 10, got "
                f"{self.negative_max} and {self.positive_min}"
            )

    @classmethod
    def from_settings(cls, settings) -> LabelPolicy:
        return cls(settings.label.negative_max, settings.label.positive_min)

    @property
    def version(self) -> str:
        return f"rating<={self.negative_max}:0,>={self.positive_min}:1;egg1:0,egg2:1"

    def from_rating(self, rating: int | None) -> int | None:
        """Label of a 1–10 rating; None for a neutral one. An out-of-range rating is an error."""
        if rating is None:
            return None
        if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 10:
            raise InputError(f"unknown rating {rating!r}: expected an integer from 1 to 10")
        if rating <= self.negative_max:
            return NEGATIVE
        if rating >= self.positive_min:
            return POSITIVE
        return None

    @staticmethod
    def from_egg(egg: int | str | None) -> int | None:
        """CGV's golden egg: 2 is a thumbs up, 1 a thumbs down, anything else unknown."""
        try:
            value = int(egg) if egg is not None else None
        except (TypeError, ValueError):
            return None
        return {2: POSITIVE, 1: NEGATIVE}.get(value)


def gets_label(kind: str, label_expectations: bool = False) -> bool:
    """Whether a review of `kind` (`Review.kind`) may get a training label at all. A Megabox 기대평
    ("expectation") is written before the film is seen: its score rates a trailer or a cast, not the film,
    so it is stored and shown but left unlabelled unless `label_expectations`
    (REVIEWOPS_CRAWL_LABEL_EXPECTATIONS)."""
    return kind != EXPECTATION or label_expectations

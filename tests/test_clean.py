"""Cleaning rules, each with Korean examples."""

import pytest

from reviewops.text.clean import Cleaner, dedup_key, hangul_ratio


@pytest.fixture
def cleaner() -> Cleaner:
    return Cleaner(min_chars=2, max_chars=100, min_hangul_ratio=0.3, max_repeat=2)


def test_nfc_composes_decomposed_hangul(cleaner):
    decomposed = "\u1100\u1161\u11a8 영화"  # 각 written as three jamo
    res = cleaner.clean(decomposed)
    assert res.text == "각 영화"
    assert "nfc" in res.applied
    assert cleaner.counts["nfc"] == 1


def test_html_entities_and_tags(cleaner):
    res = cleaner.clean("<b>최고의</b> 영화 &amp; 배우&lt;3 &quot;강추&quot;")
    assert res.text == '최고의 영화 & 배우<3 "강추"'
    assert "html" in res.applied


def test_urls_are_removed(cleaner):
    res = cleaner.clean("예고편 보세요 https://example.com/watch?v=1 www.movie.co.kr 재밌음")
    assert res.text == "예고편 보세요 재밌음"
    assert "url" in res.applied and "whitespace" in res.applied


def test_whitespace_and_control_characters(cleaner):
    res = cleaner.clean("  진짜\t\t좋아요\u200b\n\n최고  ")
    assert res.text == "진짜 좋아요 최고"


def test_long_repeats_are_squeezed(cleaner):
    res = cleaner.clean("ㅋㅋㅋㅋㅋㅋ 웃기다!!!!! ㅠㅠㅠㅠ")
    assert res.text == "ㅋㅋ 웃기다!! ㅠㅠ"
    assert res.applied == ("repeat",)
    assert cleaner.clean("ㅋㅋ 재밌네").applied == ()  # two is not a long repeat


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("<br>", "empty"),
        ("굿", "too_short"),
        ("가" * 101, "too_long"),
        ("best movie ever!! 굿", "low_hangul"),
        ("10/10 !!!", "low_hangul"),
    ],
)
def test_rejections(cleaner, text, reason):
    res = cleaner.clean(text)
    assert res.rejected == reason
    assert cleaner.counts[reason] == 1
    assert cleaner.counts["kept"] == 0


def test_kept_review_and_summary(cleaner):
    res = cleaner.clean("배우들 연기가 정말 좋았어요")
    assert res.rejected is None
    summary = cleaner.summary()
    assert summary["kept"] == 1
    assert set(summary) >= {"nfc", "html", "url", "whitespace", "repeat", "empty", "too_short", "too_long",
                            "low_hangul", "duplicate", "kept"}


def test_duplicate_counting_moves_a_kept_review(cleaner):
    cleaner.clean("재밌어요")
    cleaner.count_duplicate()
    assert cleaner.counts["kept"] == 0 and cleaner.counts["duplicate"] == 1


def test_hangul_ratio():
    assert hangul_ratio("영화 good") == pytest.approx(2 / 6)
    assert hangul_ratio("ㅋㅋㅋ") == 1.0
    assert hangul_ratio("123 !!") == 0.0


def test_dedup_key_ignores_case_spacing_and_punctuation():
    assert dedup_key("정말 재밌어요!!") == dedup_key("정말재밌어요")
    assert dedup_key("OST 최고") == dedup_key("ost  최고.")
    assert dedup_key("정말 재밌어요") != dedup_key("정말 재미없어요")


def test_version_names_rules_and_parameters():
    a, b = Cleaner(max_repeat=2), Cleaner(max_repeat=3)
    assert a.version.startswith("v") and a.version != b.version
    assert Cleaner(max_repeat=2).version == a.version

"""Corpus ingest on SQLite and PostgreSQL: idempotent, counted, and all-or-nothing on bad input."""

import gzip

import pytest
import sqlalchemy as sa

from reviewops.errors import InputError
from reviewops.jobs.train import run_ingest
from reviewops.store import db
from reviewops.store.models import CollectionBatch, Movie, Review
from tests.conftest import sample_records, write_jsonl


def _count(url, model=Review, *where):
    with db.session_scope(url) as s:
        return s.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_ingest_jsonl_is_idempotent_and_counted(db_url, settings, small_corpus):
    first = run_ingest(settings, small_corpus)
    assert first.read == 6000 and first.new == 6000 and first.already_stored == 0
    c = first.cleaning
    assert c["kept"] + c["empty"] + c["too_short"] + c["too_long"] + c["low_hangul"] + c["duplicate"] == 6000
    assert c["kept"] == sum(first.labels.values())
    assert first.labels["positive"] > first.labels["negative"] > 0 and first.labels["unlabelled"] > 0
    assert _count(db_url) == 6000
    assert _count(db_url, Review, Review.reject_reason.is_(None)) == c["kept"]

    second = run_ingest(settings, small_corpus)
    assert second.new == 0 and second.already_stored == 6000
    assert _count(db_url) == 6000
    with db.session_scope(db_url) as s:
        statuses = [b.status for b in s.scalars(sa.select(CollectionBatch).order_by(CollectionBatch.id))]
    assert statuses == ["succeeded", "succeeded"]


def test_labels_follow_the_nsmc_policy(db_url, settings, tmp_path):
    recs = [{"review_id": i, "movie_id": 1, "date": f"2015-01-0{1 + i % 9}", "rating": r,
             "text": f"리뷰 번호 {i} 평점 {r}점 입니다"} for i, r in enumerate(range(1, 11))]
    run_ingest(settings, write_jsonl(tmp_path / "r.jsonl", recs, gz=False))
    with db.session_scope(db_url) as s:
        got = dict(s.execute(sa.select(Review.rating, Review.label)).all())
    assert got == {1: 0, 2: 0, 3: 0, 4: 0, 5: None, 6: None, 7: None, 8: None, 9: 1, 10: 1}
    # the NAVER corpus has neither 기대평 nor ticked points: every review a 관람평, aspects SQL NULL (not JSON null)
    assert _count(db_url, Review, Review.kind == "review", Review.aspects.is_(None)) == 10
    with db.session_scope(db_url) as s:
        assert s.scalar(sa.text("SELECT count(*) FROM reviews WHERE aspects IS NULL")) == 10


def test_a_nul_character_is_removed_not_fatal(db_url, settings, tmp_path):
    """PostgreSQL's text cannot hold NUL: an ingest with one such review used to fail whole (exit 1, a
    traceback, nothing stored). The store removes NUL, as it does for the crawler and the API."""
    recs = [{"review_id": 1, "movie_id": 7, "rating": 10, "text": "정말\u0000 재밌어요", "author": "a\u0000b"},
            {"review_id": 2, "movie_id": 7, "rating": 1, "text": "시간 아까운 영화"}]
    summary = run_ingest(settings, write_jsonl(tmp_path / "nul.jsonl", recs, gz=False))
    assert summary.new == 2 and summary.cleaning["kept"] == 2
    with db.session_scope(db_url) as s:
        got = s.execute(sa.select(Review.text, Review.clean_text, Review.author).order_by(Review.id)).all()
    assert got[0] == ("정말 재밌어요", "정말 재밌어요", "ab") and got[1][0] == "시간 아까운 영화"


def test_duplicates_within_a_movie(db_url, settings, tmp_path):
    recs = [
        {"review_id": 1, "movie_id": 7, "rating": 10, "text": "정말 재밌어요!!"},
        {"review_id": 2, "movie_id": 7, "rating": 9, "text": "정말   재밌어요"},  # same normalised text
        {"review_id": 3, "movie_id": 8, "rating": 10, "text": "정말 재밌어요"},  # another movie: kept
    ]
    s = run_ingest(settings, write_jsonl(tmp_path / "d.jsonl", recs, gz=False))
    assert s.cleaning["duplicate"] == 1 and s.cleaning["kept"] == 2
    # a later batch sees the stored review too
    later = [{"review_id": 4, "movie_id": 8, "rating": 1, "text": "정말 재밌어요."}]
    s2 = run_ingest(settings, write_jsonl(tmp_path / "d2.jsonl", later, gz=False))
    assert s2.cleaning["duplicate"] == 1
    with db.session_scope(db_url) as sess:
        assert sess.scalar(sa.select(sa.func.count(Movie.id))) == 2


def test_nsmc_tsv(db_url, settings, tmp_path):
    path = tmp_path / "ratings_test.txt"
    path.write_text("id\tdocument\tlabel\n6270596\t굳 ㅋ\t1\n9274899\tGDNTOPCLASSINTHECLUB\t0\n"
                    "8544678\t뭐야 이 평점들은.... 나쁘진 않지만 10점 짜리는 더더욱 아니잖아\t0\n", encoding="utf-8")
    s = run_ingest(settings, path)
    assert s.source == "nsmc" and s.read == 3
    assert s.labels == {"positive": 1, "negative": 1, "unlabelled": 0}
    assert s.cleaning["low_hangul"] == 1


def _bad_files(tmp_path):
    good = [{"review_id": i, "movie_id": 1, "rating": 10, "text": f"좋은 영화 {i}"} for i in range(10)]
    lines = [__import__("json").dumps(r, ensure_ascii=False) for r in good]
    yield "malformed JSON", ":4: malformed JSON", "\n".join(lines[:3] + ['{"review_id": 99, "text": "깨진'] + lines[3:])
    yield "missing field", ":2: missing field 'review_id'", "\n".join(
        [lines[0], '{"movie_id": 1, "rating": 3, "text": "별로"}', *lines[1:]])
    yield "unknown rating", ":3: unknown rating 11", "\n".join(
        [*lines[:2], '{"review_id": 50, "movie_id": 1, "rating": 11, "text": "최고"}', *lines[2:]])
    yield "not an object", ":1: expected a JSON object", "\n".join(["[1, 2]", *lines])


@pytest.mark.parametrize("case", range(4))
def test_bad_lines_abort_the_whole_batch(db_url, settings, tmp_path, case):
    run_ingest(settings, write_jsonl(tmp_path / "before.jsonl", [{"review_id": 1000, "movie_id": 1, "rating": 1,
                                                                   "text": "이미 저장된 리뷰"}], gz=False))
    name, expected, content = list(_bad_files(tmp_path))[case]
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as exc:
        run_ingest(settings, path)
    assert str(path) + expected in str(exc.value), name
    assert _count(db_url) == 1  # only what was stored before
    with db.session_scope(db_url) as s:
        failed = s.scalars(sa.select(CollectionBatch).where(CollectionBatch.status == "failed")).one()
    assert expected.split(": ", 1)[1] in failed.error


def test_non_utf8_bytes_name_the_line(db_url, settings, tmp_path):
    path = tmp_path / "latin.jsonl.gz"
    with gzip.open(path, "wb") as fh:
        fh.write('{"review_id": 1, "movie_id": 1, "rating": 9, "text": "좋아요"}\n'.encode())
        fh.write(b'{"review_id": 2, "movie_id": 1, "rating": 9, "text": "\xb1\xe2\xb4\xeb"}\n')  # EUC-KR
    with pytest.raises(InputError, match=r"latin.jsonl.gz:2: not UTF-8"):
        run_ingest(settings, path)
    assert _count(db_url) == 0


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.jsonl", b"", "file is empty"),
        ("blank.jsonl", b"\n\n", "no reviews in the file"),
        ("cols.tsv", "id\ttext\n1\t좋다\n".encode(), "missing column(s) document, label"),
        ("label.tsv", "id\tdocument\tlabel\n1\t좋다\t7\n".encode(), ":2: unknown label '7'"),
        ("corpus.csv", b"id,document\n", "unknown corpus format"),
        ("trunc.jsonl.gz", gzip.compress(b"".join(
            b'{"review_id": %d, "movie_id": 1, "rating": 9, "text": "%d"}\n' % (i, i * 7919) for i in range(4000)
         ))[:9000], "unreadable"),
    ],
)
def test_bad_files(db_url, settings, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as exc:
        run_ingest(settings, path)
    assert message in str(exc.value) and str(path) in str(exc.value)
    assert _count(db_url) == 0


def test_missing_file(settings, tmp_path):
    with pytest.raises(InputError, match="no such file"):
        run_ingest(settings, tmp_path / "nope.jsonl.gz")


def test_sample_is_bundled():
    assert len(sample_records(5)) == 5

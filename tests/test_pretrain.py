"""Encoder pretraining: the MLM loss falls, the folder loads as a Hugging Face classifier with the
pretrained encoder, Korean tokenizes, runs repeat, bad corpora are refused, failures leave no trace."""

from __future__ import annotations

import gzip
import json

import pytest
import torch

from reviewops.errors import ConfigError, InputError
from reviewops.models.pretrain import PretrainConfig, _mask_batch, pretrain, read_texts
from tests.conftest import SAMPLE, write_jsonl

TINY = PretrainConfig(vocab_size=600, hidden_size=32, layers=2, heads=2, intermediate=64, max_length=64,
                      batch_size=32, lr=2e-3, max_steps=30, max_texts=2000, seed=0)


def _run(out_dir, cfg=TINY, **kw):
    losses: list[float] = []
    stats = pretrain(SAMPLE, out_dir, cfg, device="cpu", log_every=10,
                     on_step=lambda step, loss: losses.append(loss), **kw)
    return stats, losses


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "encoder"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run")  # a successful run replaces the folder
    stats, losses = _run(out)
    return out, stats, losses


def test_mlm_loss_goes_down(trained):
    _, stats, losses = trained
    assert stats["steps"] == 30 == len(losses)
    assert stats["device"] == "cpu"
    assert stats["first_loss"] == losses[0]
    assert stats["final_loss"] < stats["first_loss"] - 0.3
    assert stats["samples_per_second"] > 0 and stats["seconds"] > 0


def test_folder_replaced_with_checkpoint_and_record(trained):
    out, stats, _ = trained
    assert not (out / "stale.txt").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind
    meta = json.loads((out / "pretrain.json").read_text())
    assert meta["config"]["hidden_size"] == 32 and meta["config"]["max_texts"] == 2000
    assert meta["stats"] == stats
    assert len(meta["loss_curve"]) == 3


def test_loads_as_sequence_classifier_with_pretrained_encoder(trained):
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, stats, _ = trained
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2)
    saved = load_file(out / "model.safetensors")
    for name in ("bert.embeddings.word_embeddings.weight", "bert.encoder.layer.1.output.dense.weight"):
        assert torch.equal(model.state_dict()[name], saved[name]), name
    assert model.config.vocab_size == len(tok) == stats["vocab_size"]

    model.eval()
    batch = tok(["정말 재밌어요", "최악의 영화 돈 아깝다"], padding=True, truncation=True,
                return_tensors="pt")
    with torch.no_grad():
        assert model(**batch).logits.shape == (2, 2)
    long = tok(["영화 " * 500], truncation=True)["input_ids"][0]
    assert len(long) == TINY.max_length == tok.model_max_length  # fits the position table


def test_tokenizer_round_trips_korean(trained):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained[0])
    ids = tok("정말 재밌어요")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "정말 재밌어요"
    # the same normalisation as the cleaner: decomposed Hangul (NFD) tokenizes like composed
    import unicodedata
    assert tok(unicodedata.normalize("NFD", "정말 재밌어요"))["input_ids"] == ids


def test_same_seed_same_run(trained, tmp_path):
    _, stats, losses = trained
    again, again_losses = _run(tmp_path / "again")
    assert again["first_loss"] == stats["first_loss"]
    assert again_losses == losses
    other, _ = _run(tmp_path / "other", PretrainConfig(**{**TINY.__dict__, "seed": 1, "max_steps": 1}))
    assert other["first_loss"] != stats["first_loss"]


def test_failure_leaves_out_dir_untouched(tmp_path):
    out = tmp_path / "encoder"
    out.mkdir()
    (out / "model.safetensors").write_text("the previous model")

    def boom(step, loss):
        if step == 3:
            raise RuntimeError("logging backend down")

    with pytest.raises(RuntimeError, match="logging backend down"):
        pretrain(SAMPLE, out, PretrainConfig(**{**TINY.__dict__, "max_steps": 5}), device="cpu", on_step=boom)
    assert [p.name for p in out.iterdir()] == ["model.safetensors"]
    assert (out / "model.safetensors").read_text() == "the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encoder"]


def test_failure_without_earlier_folder_creates_nothing(tmp_path):
    with pytest.raises(InputError):
        pretrain(tmp_path / "missing.jsonl.gz", tmp_path / "encoder", TINY, device="cpu")
    assert list(tmp_path.iterdir()) == []


# --- corpora ------------------------------------------------------------------------------------


def test_read_texts_normalises_and_drops_empties(tmp_path):
    recs = [{"review_id": 1, "rating": 5, "text": "재밌다ㅋㅋㅋㅋㅋ   <b>강추</b>"},
            {"review_id": 2, "rating": 1, "text": "   "},
            {"review_id": 3, "rating": 10, "text": "좋아요"}]
    path = write_jsonl(tmp_path / "c.jsonl.gz", recs)
    assert read_texts(path) == ["재밌다ㅋㅋ 강추", "좋아요"]
    assert read_texts(path, max_texts=1) == ["재밌다ㅋㅋ 강추"]
    assert len(read_texts(SAMPLE, max_texts=500)) == 500


def test_read_texts_nsmc_tsv(tmp_path):
    path = tmp_path / "ratings.txt"
    path.write_text("id\tdocument\tlabel\n1\t아 더빙.. 진짜 짜증나네요\t0\n2\t\t1\n3\t최고의 영화\t1\n",
                    encoding="utf-8")
    assert read_texts(path) == ["아 더빙.. 진짜 짜증나네요", "최고의 영화"]


def _gz(path, data: bytes):
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(data)
    return path


@pytest.mark.parametrize("name,make,message", [
    ("bad.jsonl.gz", lambda p: p.write_bytes(b"\x1f\x8b\x08\x00garbage"), "unreadable"),
    ("bad.jsonl.gz", lambda p: _gz(p, b'{"text": "ok"}\n{"text": oops}\n'), ":2: malformed JSON"),
    ("bad.jsonl.gz", lambda p: _gz(p, b'{"rating": 3}\n'), "missing field 'text'"),
    ("bad.jsonl", lambda p: p.write_bytes(b'{"text": "\xff\xfe"}\n'), "not UTF-8"),
    ("empty.jsonl.gz", lambda p: _gz(p, b""), "no review texts"),
    ("blank.jsonl", lambda p: p.write_text('{"text": "  "}\n'), "no review texts"),
    ("bad.tsv", lambda p: p.write_text("id\ttext\n1\tx\n"), "missing column 'document'"),
    ("reviews.csv", lambda p: p.write_text("text\nx\n"), "unknown corpus format"),
])
def test_bad_corpus_is_refused(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError, match=message):
        read_texts(path)


def test_bad_corpus_refused_by_pretrain_before_any_work(tmp_path):
    path = _gz(tmp_path / "empty.jsonl.gz", b"")
    with pytest.raises(InputError, match="no review texts"):
        pretrain(path, tmp_path / "encoder", TINY, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.jsonl.gz"]


@pytest.mark.parametrize("change", [{"hidden_size": 30, "heads": 4}, {"max_steps": 0}, {"mask_prob": 0.0},
                                    {"batch_size": 0}, {"warmup_ratio": 1.0}])
def test_unusable_config_is_refused_up_front(tmp_path, change):
    with pytest.raises(ConfigError, match=next(iter(change))):
        pretrain(SAMPLE, tmp_path / "encoder", PretrainConfig(**{**TINY.__dict__, **change}), device="cpu")
    assert list(tmp_path.iterdir()) == []


# --- masking ------------------------------------------------------------------------------------


def test_masking_follows_bert():
    import numpy as np

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 40, size=400)
    ids = rng.integers(5, 1000, size=int(lengths.sum())).astype(np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(len(lengths)):  # [CLS] ... [SEP] like the tokenizer makes
        ids[offsets[i]], ids[offsets[i + 1] - 1] = 2, 3
    b = _mask_batch(ids, offsets, np.arange(400), pad_id=0, mask_id=4, n_special=5, vocab=1000,
                    mask_prob=0.15, gen=torch.Generator().manual_seed(0))
    original = torch.zeros_like(b["input_ids"])
    for r in range(400):
        original[r, :lengths[r]] = torch.from_numpy(ids[offsets[r]:offsets[r + 1]].astype(np.int64))
    real = original.ge(5)
    chosen = torch.zeros(original.numel(), dtype=torch.bool)
    chosen[b["positions"]] = True
    chosen = chosen.view(original.shape)

    assert not (chosen & ~real).any()  # never [CLS], [SEP] or [PAD]
    assert torch.equal(b["targets"], original.view(-1)[b["positions"]])
    assert abs(chosen.sum() / real.sum() - 0.15) < 0.02
    new = b["input_ids"][chosen]
    assert abs(new.eq(4).float().mean() - 0.8) < 0.04
    assert abs(new.eq(original[chosen]).float().mean() - 0.1) < 0.03  # kept (a random draw may equal too)
    assert torch.equal(b["input_ids"][~chosen], original[~chosen])
    assert torch.equal(b["attention_mask"], original.ne(0))



def test_pretrain_command_then_train_takes_the_checkpoint(tmp_path):
    from typer.testing import CliRunner

    from reviewops.cli import app

    corpus = tmp_path / "c.jsonl"
    from tests.conftest import sample_records, write_jsonl

    write_jsonl(corpus, sample_records(800), gz=False)
    r = CliRunner().invoke(app, ["pretrain", "--corpus", str(corpus), "--out", str(tmp_path / "enc"),
                                 "--vocab-size", "600", "--hidden-size", "32", "--layers", "1",
                                 "--heads", "2",
                                 "--max-length", "32", "--batch-size", "16", "--max-steps", "5"])
    assert r.exit_code == 0, r.output
    from reviewops.models.transformer import TransformerModel, TransformerParams

    params = TransformerParams(checkpoint=str(tmp_path / "enc"), max_length=32)
    model = TransformerModel.from_checkpoint(params)
    assert model.predict_proba(["정말 재밌어요"]).shape == (1,)

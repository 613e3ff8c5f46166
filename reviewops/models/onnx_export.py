"""ONNX export of a fine-tuned Hugging Face sentiment classifier, for CPU serving.

`export_onnx(hf_dir, out_dir, sample_texts)` writes, into `out_dir`:

- `model.onnx`: the fp32 graph (legacy TorchScript exporter, opset 17; inputs `input_ids`,
  `attention_mask` and, when the tokenizer gives them, `token_type_ids`; output `logits`; batch and
  sequence axes dynamic);
- `model.int8.onnx`: the same graph with dynamically quantised weights (QInt8 in 7 bits, MatMul/Attention);
- `parity.json`: how far both graphs are from PyTorch fp32 on `sample_texts`.

Every file is written under a temporary name in `out_dir` and moved into place only once the
parity check passed, so a failed export leaves nothing half-written (and keeps an earlier export).

`OnnxClassifier` serves either graph with onnxruntime on CPU (the int8 one a text per run, so that a
text's answer does not depend on its batch); `TorchClassifier` /
`torch_predict_proba` are the plain PyTorch fp32 reference with the same batching. Both tokenise
with `loading.load_tokenizer`, the loader training uses.
Labels: 0 negative, 1 positive; `predict_proba` gives P(positive).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from reviewops.errors import InputError, ModelArtifactError
from reviewops.models.loading import load_classifier, load_tokenizer
from reviewops.models.training import ONNX_CALL_COST, TORCH_CALL_COST, length_groups

FP32_FILE, INT8_FILE, PARITY_FILE = "model.onnx", "model.int8.onnx", "parity.json"
INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
QUANTIZED_OPS = ["MatMul", "Attention"]  # Gemm has no dynamic (integer) kernel in onnxruntime
# Weights in [-64, 64]: on x86 CPUs without VNNI (AVX2 only, e.g. many AMD hosts) onnxruntime multiplies
# uint8 activations by int8 weights with VPMADDUBSW, whose int16 pair sums saturate for 8-bit weights
# (255 * 127 * 2 > 32767) and flip labels; 7-bit weights cannot saturate, so the graph gives the same
# answers on every x86 host, not only on the one that exported and checked it.
REDUCE_RANGE = True
PARITY_BATCH = 32


class OnnxExportError(ModelArtifactError):
    """An ONNX export failed, or an ONNX model file is missing or broken."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


# --- loading -------------------------------------------------------------------------------------


def load_hf_classifier(hf_dir: str | Path, attn_implementation: str | None = None):
    """The checkpoint's sequence classifier, fp32, on CPU, in eval mode: the export's source and reference."""
    import torch

    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise OnnxExportError(f"Hugging Face checkpoint folder {hf_dir} does not exist")
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    return load_classifier(hf_dir, dtype=torch.float32, **kw).to("cpu").float().eval()


# --- batching (shared by ONNX and PyTorch paths, so both see the same padded batches) ----------


def _check_texts(texts) -> list[str]:
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise InputError(f"texts to classify must be strings: item {i} is {type(t).__name__}")
    return texts


def _encode(tokenizer, texts: list[str], max_length: int) -> dict[str, list[list[int]]]:
    enc = tokenizer(texts, truncation=True, max_length=max_length)
    return {k: enc[k] for k in INPUT_ORDER if k in enc}


def _pad(tokenizer, enc: dict[str, list[list[int]]], idx: Sequence[int],
         extra: int = 0) -> dict[str, np.ndarray]:
    """Rows `idx` of `enc`, padded to the longest (+ `extra`) on the tokenizer's padding side, int64."""
    width = max(len(enc["input_ids"][i]) for i in idx) + extra
    left = getattr(tokenizer, "padding_side", "right") == "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = {}
    for key, rows in enc.items():
        fill = pad_id if key == "input_ids" else 0
        arr = np.full((len(idx), width), fill, dtype=np.int64)
        for r, i in enumerate(idx):
            row = rows[i]
            if left:
                arr[r, width - len(row):] = row
            else:
                arr[r, : len(row)] = row
        out[key] = arr
    if "attention_mask" not in out:
        mask = np.zeros((len(idx), width), dtype=np.int64)
        for r, i in enumerate(idx):
            n = len(enc["input_ids"][i])
            if left:
                mask[r, width - n:] = 1
            else:
                mask[r, :n] = 1
        out["attention_mask"] = mask
    return out


def _batches(tokenizer, texts: list[str], batch_size: int, max_length: int, by_length: bool = True,
             call_cost: float = ONNX_CALL_COST) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray]]]:
    """(row indices, padded inputs) per batch of at most `batch_size` rows: grouped by token length
    (`length_groups`) unless `by_length` is False, then in input order."""
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, not {batch_size}")
    enc = _encode(tokenizer, texts, max_length)
    if by_length:
        groups = length_groups([len(x) for x in enc["input_ids"]], batch_size, call_cost)
    else:
        groups = [np.arange(s, min(s + batch_size, len(texts))) for s in range(0, len(texts), batch_size)]
    for idx in groups:
        yield idx, _pad(tokenizer, enc, idx)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _positive(logits: np.ndarray, where: str) -> np.ndarray:
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise OnnxExportError(f"{where} gives logits of shape {tuple(logits.shape)}, not (batch, 2): "
                              "only 2-label (negative, positive) classifiers are served")
    return _softmax(logits)[:, 1]


# --- PyTorch reference -----------------------------------------------------------------------------


class TorchClassifier:
    """Plain fp32 PyTorch on CPU, batched exactly like `OnnxClassifier` (the comparison baseline)."""

    def __init__(self, hf_dir: str | Path, max_length: int = 128, tokenizer=None,
                 attn_implementation: str | None = None) -> None:
        self.hf_dir = Path(hf_dir)
        self.max_length = max_length
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(self.hf_dir)
        self.model = load_hf_classifier(self.hf_dir, attn_implementation)
        self.type_vocab_size = getattr(self.model.config, "type_vocab_size", 2)
        self.accepts_token_types = _accepts(self.model, "token_type_ids")

    def logits(self, texts: list[str], batch_size: int = 64, by_length: bool = True) -> np.ndarray:
        import torch

        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.model.config.num_labels), dtype=np.float32)
        self.model.eval()
        with torch.inference_mode():
            for idx, batch in _batches(self.tokenizer, texts, batch_size, self.max_length, by_length,
                                       call_cost=TORCH_CALL_COST):
                types = batch.pop("token_type_ids", None)
                if types is not None and self.accepts_token_types and types.max() < self.type_vocab_size:
                    batch["token_type_ids"] = types  # else the model's default (zeros), see _input_names
                feed = {k: torch.from_numpy(v) for k, v in batch.items()}
                out[idx] = self.model(**feed).logits.float().numpy()
        return out

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        texts = _check_texts(texts)
        if not texts:
            return np.empty(0, dtype=np.float64)
        return _positive(self.logits(texts, batch_size), f"checkpoint {self.hf_dir}")


def torch_predict_proba(hf_dir: str | Path, texts: list[str], batch_size: int = 64,
                        max_length: int = 128) -> np.ndarray:
    """P(positive) from the Hugging Face checkpoint with plain fp32 PyTorch (loads it each call)."""
    return TorchClassifier(hf_dir, max_length=max_length).predict_proba(texts, batch_size)


def _accepts(model, name: str) -> bool:
    import inspect

    return name in inspect.signature(model.forward).parameters


# --- ONNX serving ----------------------------------------------------------------------------------


def _session(onnx_path: Path, threads: int | None = None):
    import onnxruntime as ort

    if not onnx_path.is_file():
        raise OnnxExportError(f"ONNX model {onnx_path} does not exist")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3  # errors only
    # idle worker threads sleep instead of spinning: a server's CPU goes to requests, not to waiting
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's InvalidProtobuf, Fail, InvalidGraph...
        raise OnnxExportError(f"ONNX model {onnx_path} is corrupt or unreadable: "
                              f"{_first_line(exc)}") from None


def _quantizes_per_batch(onnx_path: Path) -> bool:
    """Whether the graph quantises activations dynamically: one scale for the whole input tensor, so a
    text's answer would depend on the texts batched with it."""
    import onnx

    try:
        nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    except Exception:  # noqa: BLE001 - a missing or broken file: `_session` says what is wrong with it
        return False
    return any(n.op_type in ("DynamicQuantizeLinear", "DynamicQuantizeMatMul") for n in nodes)


class OnnxClassifier:
    """P(positive) from an exported graph (`model.onnx` or `model.int8.onnx`) with onnxruntime on CPU.

    A dynamically quantised graph (int8) scales each input tensor by its own range, padding included, so
    in a batch one review's score moved with its neighbours' (e5-small: 2.3% of labels differed from the
    same reviews scored alone); such a graph is run one text at a time, and the same text always gets the
    same answer, whatever else is being served. Its texts go to `threads` runs at once, one thread each
    (onnxruntime releases the GIL): on 2 cores 555 held-out e5 reviews/s against 308 with both threads
    inside each run (bench/README.md, "int8 answers").
    """

    def __init__(self, onnx_path: str | Path, tokenizer_dir: str | Path, max_length: int = 128,
                 threads: int | None = None, tokenizer=None) -> None:
        self.onnx_path = Path(onnx_path)
        self.max_length = max_length
        self.one_text_per_run = _quantizes_per_batch(self.onnx_path)
        self.workers = threads or os.cpu_count() or 1
        self.session = _session(self.onnx_path, 1 if self.one_text_per_run else self.workers)
        # made once: `logits` runs per served micro-batch, and starting threads there is work on the hot path
        self._pool = ThreadPoolExecutor(self.workers) if self.one_text_per_run and self.workers > 1 else None
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(tokenizer_dir)
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = sorted(set(self.input_names) - set(INPUT_ORDER))
        if unknown or "input_ids" not in self.input_names:
            raise OnnxExportError(f"ONNX model {self.onnx_path} has inputs {self.input_names}, expected "
                                  f"input_ids, attention_mask[, token_type_ids]")
        outputs = [o.name for o in self.session.get_outputs()]
        self.output_name = "logits" if "logits" in outputs else outputs[0]

    def _feed(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        zeros = np.zeros_like(batch["input_ids"])
        return {name: batch.get(name, zeros) for name in self.input_names}

    def logits(self, texts: list[str], batch_size: int = 64, by_length: bool = True) -> np.ndarray:
        texts = _check_texts(texts)
        if self.one_text_per_run:
            batch_size = 1
        batches = list(_batches(self.tokenizer, texts, batch_size, self.max_length, by_length))
        if not batches:
            return np.zeros((0, 2), dtype=np.float32)

        def run(batch: dict[str, np.ndarray]) -> np.ndarray:
            return self.session.run([self.output_name], self._feed(batch))[0]

        if self._pool is not None and len(batches) > 1:
            results = list(self._pool.map(run, (batch for _, batch in batches)))
        else:
            results = [run(batch) for _, batch in batches]
        out = np.zeros((len(texts), results[0].shape[1]), dtype=np.float32)
        for (idx, _), res in zip(batches, results, strict=True):
            out[idx] = res
        return out

    def predict_proba(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """P(positive) = softmax(logits)[:, 1], in input order (batches are formed by token length)."""
        texts = _check_texts(texts)
        if not texts:
            return np.empty(0, dtype=np.float64)
        return _positive(self.logits(texts, batch_size), f"ONNX model {self.onnx_path}")


# --- export ----------------------------------------------------------------------------------------


def _logits_module(model, names: list[str]):
    """The HF model as a module taking positional tensors (in `names` order) and returning the logits."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors, strict=True))).logits

    return Logits().eval()  # eval: the exporter puts the module back into the mode it found it in


def _input_names(tokenizer, model, sample: list[str], max_length: int) -> list[str]:
    enc = _encode(tokenizer, sample, max_length)
    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in enc and _accepts(model, "token_type_ids"):
        # KoBERT's XLNet tokenizer marks [CLS] with segment 2, which a BERT with 2 token types cannot
        # embed; the models are then fed no token_type_ids at all (zeros), as in training.
        top = max((max(row, default=0) for row in enc["token_type_ids"]), default=0)
        if top < getattr(model.config, "type_vocab_size", 2):
            names.append("token_type_ids")
    return names


def _trace_inputs(tokenizer, sample: list[str], names: list[str], max_length: int):
    """A 2-row batch with one padding position in every row, so the traced graph is the masked path."""
    import torch

    texts = (sample * 2)[:2]
    enc = _encode(tokenizer, texts, max(2, min(max_length, 32) - 1))
    batch = _pad(tokenizer, enc, [0, 1], extra=1)
    return tuple(torch.from_numpy(batch[n]) if n in batch else torch.zeros_like(torch.from_numpy(
        batch["input_ids"])) for n in names)


def _export_fp32(model, names: list[str], trace: tuple, path: Path, opset: int) -> None:
    import torch

    wrapper = _logits_module(model, names)
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(wrapper, trace, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes=dynamic, opset_version=opset, do_constant_folding=True, dynamo=False)
    model.eval()  # the exporter restores the wrapper's mode; make sure nothing was left in train mode
    import onnx

    onnx.checker.check_model(str(path))


class _DropPreprocessHint(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def _quantize(src: Path, dst: Path, per_channel: bool) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessHint()
    root = logging.getLogger()
    root.addFilter(hint)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS,
                         per_channel=per_channel, reduce_range=REDUCE_RANGE,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.removeFilter(hint)


def _compare(ref: np.ndarray, got: np.ndarray) -> dict:
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    return {
        "max_abs_logit_diff": float(diff.max()),
        "mean_abs_logit_diff": float(diff.mean()),
        "max_abs_proba_diff": float(np.abs(_softmax(got) - _softmax(ref)).max()),
        "label_agreement": float((got.argmax(axis=1) == ref.argmax(axis=1)).mean()),
    }


def _prepare_out_dir(out_dir: Path) -> bool:
    """Make sure `out_dir` exists; True when this call created it."""
    if out_dir.is_dir():
        return False
    if not out_dir.parent.is_dir():
        raise OnnxExportError(f"cannot create ONNX output folder {out_dir}: "
                              f"{out_dir.parent} is not an existing folder")
    try:
        out_dir.mkdir()
    except OSError as exc:
        raise OnnxExportError(f"cannot create ONNX output folder {out_dir}: {exc.strerror or exc}") from None
    return True


def export_onnx(hf_dir: str | Path, out_dir: str | Path, sample_texts: list[str], max_length: int = 128,
                opset: int = 17, *, fp32_max_diff: float = 1e-3, fp32_min_agreement: float = 1.0,
                int8_min_agreement: float = 0.9, per_channel: bool = True, tokenizer=None) -> dict:
    """Export `hf_dir`'s classifier to `out_dir/model.onnx` and `model.int8.onnx`, check both against
    PyTorch on `sample_texts` and write the result to `out_dir/parity.json`; returns that report.

    `out_dir` is created if missing (its parent must exist). Raises OnnxExportError, leaving no new
    file in `out_dir` (and no `out_dir` if this call created it), when loading, exporting or quantising
    fails or when parity is worse than the thresholds (fp32: max |logit diff| <= fp32_max_diff and label
    agreement >= fp32_min_agreement; int8: label agreement >= int8_min_agreement). `tokenizer` overrides
    the tokenizer of `hf_dir`.
    """
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    texts = _check_export_args(hf_dir, sample_texts, max_length)
    tok = tokenizer if tokenizer is not None else load_tokenizer(hf_dir)
    model = load_hf_classifier(hf_dir, attn_implementation="eager")  # plain ops: the most portable trace
    created = _prepare_out_dir(out_dir)
    thresholds = {"fp32_max_diff": fp32_max_diff, "fp32_min_agreement": fp32_min_agreement,
                  "int8_min_agreement": int8_min_agreement}

    tag = uuid.uuid4().hex[:8]
    tmp = {name: out_dir / f".{name}.{tag}.tmp" for name in (FP32_FILE, INT8_FILE, PARITY_FILE)}
    try:
        names = _input_names(tok, model, texts[:64], max_length)
        _write_graphs(model, tok, texts, names, max_length, opset, per_channel, tmp, hf_dir)
        report = {"n": len(texts), **_parity(model, tok, texts, names, max_length, tmp, hf_dir)}
        report["files"] = {FP32_FILE: tmp[FP32_FILE].stat().st_size, INT8_FILE: tmp[INT8_FILE].stat().st_size}
        report.update({"inputs": names, "opset": opset, "max_length": max_length, "source": str(hf_dir),
                       "quantization": {"weight_type": "QInt8", "ops": QUANTIZED_OPS,
                                        "per_channel": per_channel, "reduce_range": REDUCE_RANGE},
                       "thresholds": thresholds})
        _check_parity(report, hf_dir, **thresholds)
        tmp[PARITY_FILE].write_text(json.dumps(report, indent=2) + "\n")
        for name in (FP32_FILE, INT8_FILE, PARITY_FILE):
            os.replace(tmp[name], out_dir / name)
        return report
    except OSError as exc:
        raise OnnxExportError(f"writing the ONNX export to {out_dir} failed: {exc.strerror or exc}") from None
    finally:
        for path in tmp.values():
            path.unlink(missing_ok=True)
        if created and not (out_dir / PARITY_FILE).exists():
            with contextlib.suppress(OSError):  # a folder made for a failed export goes too, if empty
                out_dir.rmdir()


def _check_export_args(hf_dir: Path, sample_texts, max_length: int) -> list[str]:
    texts = _check_texts(sample_texts)
    if not texts:
        raise OnnxExportError("export_onnx needs at least one sample text for the parity check")
    if max_length < 2:
        raise OnnxExportError(f"max_length must be at least 2, not {max_length}")
    if not hf_dir.is_dir():
        raise OnnxExportError(f"Hugging Face checkpoint folder {hf_dir} does not exist")
    return texts


def _write_graphs(model, tok, texts: list[str], names: list[str], max_length: int, opset: int,
                  per_channel: bool, tmp: dict[str, Path], hf_dir: Path) -> None:
    """The fp32 graph and its int8 quantisation, written to their temporary files."""
    out_dir = tmp[FP32_FILE].parent
    try:
        tmp[FP32_FILE].open("xb").close()
    except OSError as exc:
        raise OnnxExportError(f"cannot write to ONNX output folder {out_dir}: "
                              f"{exc.strerror or exc}") from None
    try:
        _export_fp32(model, names, _trace_inputs(tok, texts, names, max_length), tmp[FP32_FILE], opset)
    except OnnxExportError:
        raise
    except Exception as exc:  # noqa: BLE001 - the tracer and exporter raise many types
        raise OnnxExportError(f"ONNX export of {hf_dir} failed: {_first_line(exc)}") from None
    try:
        _quantize(tmp[FP32_FILE], tmp[INT8_FILE], per_channel)
    except Exception as exc:  # noqa: BLE001 - the quantiser raises many types
        raise OnnxExportError(f"int8 quantisation of {hf_dir} failed: {_first_line(exc)}") from None


def _parity(model, tok, texts: list[str], names: list[str], max_length: int, tmp: dict[str, Path],
            hf_dir: Path) -> dict:
    """How far each graph's logits are from PyTorch fp32 on `texts`, batched alike."""
    ref = _reference_logits(model, tok, texts, names, max_length)
    report = {}
    for key, name in (("fp32", FP32_FILE), ("int8", INT8_FILE)):
        clf = OnnxClassifier(tmp[name], hf_dir, max_length=max_length, tokenizer=tok)
        report[key] = _compare(ref, clf.logits(texts, PARITY_BATCH, by_length=False))
    return report


def _check_parity(report: dict, hf_dir: Path, fp32_max_diff: float, fp32_min_agreement: float,
                  int8_min_agreement: float) -> None:
    fp32, int8, n = report["fp32"], report["int8"], report["n"]
    if not fp32["max_abs_logit_diff"] <= fp32_max_diff:
        raise OnnxExportError(f"ONNX fp32 parity failed for {hf_dir}: max |logit diff| "
                              f"{fp32['max_abs_logit_diff']:.3g} > {fp32_max_diff:g} on {n} texts")
    if fp32["label_agreement"] < fp32_min_agreement:
        raise OnnxExportError(f"ONNX fp32 parity failed for {hf_dir}: label agreement "
                              f"{fp32['label_agreement']:.4f} < {fp32_min_agreement:g} on {n} texts")
    if int8["label_agreement"] < int8_min_agreement:
        raise OnnxExportError(f"ONNX int8 parity failed for {hf_dir}: label agreement "
                              f"{int8['label_agreement']:.4f} < {int8_min_agreement:g} on {n} texts")


def _reference_logits(model, tokenizer, texts: list[str], names: list[str], max_length: int) -> np.ndarray:
    import torch

    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    model.eval()
    with torch.inference_mode():
        for idx, batch in _batches(tokenizer, texts, PARITY_BATCH, max_length, by_length=False):
            zeros = torch.zeros_like(torch.from_numpy(batch["input_ids"]))
            feed = {n: torch.from_numpy(batch[n]) if n in batch else zeros for n in names}
            out[idx] = model(**feed).logits.float().numpy()
    return out

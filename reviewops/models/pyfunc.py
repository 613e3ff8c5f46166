"""The MLflow pyfunc face of our models, and a predictor from any model folder or model URI.

Model folders load through `loading.py`, the one place that knows their formats."""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

from reviewops.errors import ModelArtifactError
from reviewops.models.loading import META_FILE, load_model_folder


class SentimentPyfunc(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a `text` column (or a list of strings). Output: `label`, `score`."""

    # Validation comes from the explicit signature we log, not from type hints on predict().
    _skip_type_hint_validation = True

    @staticmethod
    def output_example() -> pd.DataFrame:
        return pd.DataFrame({"label": np.array([1, 0], dtype=np.int64), "score": np.array([0.9, 0.1])})

    def load_context(self, context) -> None:
        self.model = load_model_folder(context.artifacts["model"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input["text" if "text" in model_input else model_input.columns[0]].tolist()
        else:
            texts = list(model_input)
        score = self.model.predict_proba(texts)
        return pd.DataFrame({"label": (score >= 0.5).astype(np.int64), "score": score.astype(np.float64)})


class Predictor:
    """P(positive) from a model URI (`models:/name@alias`, `runs:/...`) or a local model folder."""

    def __init__(self, model, name: str = "", version: str = "") -> None:
        self.model, self.name, self.version = model, name, version

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict_proba(texts), dtype=float)


def load_predictor(uri: str) -> Predictor:
    from mlflow.exceptions import MlflowException

    path = Path(uri)
    if path.is_dir() and (path / META_FILE).exists():
        return Predictor(load_model_folder(path), name=path.name, version="local")
    if path.is_dir() and (path / "MLmodel").exists():
        uri = str(path)
    try:
        pyfunc = mlflow.pyfunc.load_model(uri)
    except ModelArtifactError:
        raise
    except MlflowException as exc:
        raise ModelArtifactError(f"cannot load model {uri}: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ModelArtifactError(f"cannot load model {uri}: {exc}") from None
    try:
        inner = pyfunc.unwrap_python_model()
        model = inner.model
    except (AttributeError, MlflowException):
        model = _PyfuncAdapter(pyfunc)
    meta = pyfunc.metadata
    return Predictor(model, name=uri, version=str(getattr(meta, "model_id", "") or ""))


class _PyfuncAdapter:
    """Any other pyfunc whose output has a `score` column (or is P(positive) itself)."""

    def __init__(self, pyfunc) -> None:
        self.pyfunc = pyfunc

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        out = self.pyfunc.predict(pd.DataFrame({"text": texts}))
        if isinstance(out, pd.DataFrame):
            return out["score"].to_numpy(dtype=float)
        return np.asarray(out, dtype=float).reshape(-1)

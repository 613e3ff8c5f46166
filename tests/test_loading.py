"""Loading saved models: the backend serving picks, and one tokenizer for training and serving."""

from __future__ import annotations

import pytest

from reviewops.errors import ModelArtifactError
from reviewops.models import loading, onnx_export
from reviewops.models.onnx_export import TorchClassifier, export_onnx
from reviewops.models.transformer import TransformerModel, TransformerParams
from tests.tiny_hf import korean_texts, make_tiny_kobert_checkpoint

MAX_LENGTH = 64


@pytest.fixture(scope="module")
def texts() -> list[str]:
    odd = ["1,000원 아깝다 ㅋㅋㅋ", "Good 영화!! 10점 만점에 10점", "", "   ", "😀 최고", "가" * 300]
    return korean_texts(300)[:120] + odd


@pytest.fixture(scope="module")
def kobert_model(tmp_path_factory, texts):
    """A KoBERT-style checkpoint as `fine_tune` saves it, with the ONNX export the trainer adds."""
    checkpoint = make_tiny_kobert_checkpoint(tmp_path_factory.mktemp("kobert") / "ckpt")
    params = TransformerParams(checkpoint=str(checkpoint), max_length=MAX_LENGTH)
    trained = TransformerModel.from_checkpoint(params, device="cpu")
    folder = trained.save(tmp_path_factory.mktemp("model") / "m")
    sample = [trained.cleaner.normalise(t)[0] for t in texts]
    # the export loads its own tokenizer from the saved folder: the path serving takes
    export_onnx(folder / "hf", folder / "onnx", sample, max_length=MAX_LENGTH, fp32_min_agreement=0.0,
                int8_min_agreement=0.0)
    return trained, folder


def test_served_kobert_tokenises_as_the_trained_one(kobert_model, texts):
    trained, folder = kobert_model
    expected = trained.encode(texts)  # what fine-tuning fed the model
    assert any(len(ids) == MAX_LENGTH for ids in expected) and len({tuple(ids) for ids in expected}) > 100
    normalised = [trained.cleaner.normalise(t)[0] for t in texts]

    backend, onnx_served = loading.load_for_serving(folder, prefer_onnx=True)
    assert backend == "onnx-int8"
    onnx_tok = onnx_served.model.tokenizer
    assert type(onnx_tok) is type(trained.tokenizer)
    assert onnx_export._encode(onnx_tok, normalised, MAX_LENGTH)["input_ids"] == expected

    backend, torch_served = loading.load_for_serving(folder, prefer_onnx=False)
    assert backend == "transformer"
    assert torch_served.encode(texts) == expected
    reference = TorchClassifier(folder / "hf", max_length=MAX_LENGTH)  # the export's parity reference
    assert onnx_export._encode(reference.tokenizer, normalised, MAX_LENGTH)["input_ids"] == expected
    assert loading.load_model_folder(folder).encode(texts) == expected  # the MLflow pyfunc's model


def test_served_predictions_follow_the_trained_model(kobert_model, texts):
    trained, folder = kobert_model
    _, onnx_served = loading.load_for_serving(folder, prefer_onnx=True)
    _, torch_served = loading.load_for_serving(folder, prefer_onnx=False)
    assert abs(torch_served.predict_proba(texts) - trained.predict_proba(texts)).max() < 1e-5
    assert abs(onnx_served.predict_proba(texts) - trained.predict_proba(texts)).max() < 0.05


def test_model_folder_is_found_inside_a_download_or_refused(kobert_model, tmp_path):
    _, folder = kobert_model
    assert loading.find_model_folder(folder) == folder
    assert loading.find_model_folder(folder.parent) == folder
    with pytest.raises(ModelArtifactError, match="no meta.json inside"):
        loading.find_model_folder(tmp_path)
    with pytest.raises(ModelArtifactError, match="meta.json is missing"):
        loading.load_for_serving(tmp_path)
    (tmp_path / "meta.json").write_text('{"format": "someone-else/1"}')
    with pytest.raises(ModelArtifactError, match="unknown model format"):
        loading.load_for_serving(tmp_path)

"""The ONNX Runtime teacher backend (issue 24): features equal to eager PyTorch's on BERT, MPNet and GPT-2 teachers,
its own cache key (float32 and int8 apart from torch), one export per teacher reused across datasets, a damaged export
made again, and the teachers it cannot run refused in one line."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest
import tiny
import torch

from hf_aft import extract_teacher_features
from hf_aft.errors import AFTError
from hf_aft.features import read_from_cache, read_teacher_infos
from hf_aft.teachers.backends import check_backend

# Lengths from 0 words to past the teachers' 24-token cap, in blocks of 16 rows (3 blocks, the last of 8).
TEXTS = ["", *(" ".join(tiny.WORDS[(i * 7 + j) % len(tiny.WORDS)] for j in range(i % 30)) for i in range(1, 40))]


def _save_mpnet(folder: Path) -> Path:
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    MPNetModel(MPNetConfig(vocab_size=len(tiny.WORDS) + 5, hidden_size=12, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=24, max_position_embeddings=66)).save_pretrained(folder)
    tiny.make_tokenizer(folder).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    root = tmp_path_factory.mktemp("backend_teachers")
    return {"bert": tiny.save_teacher(root / "bert", hidden=12), "mpnet": _save_mpnet(root / "mpnet"),
            "gpt2": tiny.save_decoder_teacher(root / "gpt2", "gpt2")}


def _features(teacher, cache, backend, texts=TEXTS, **kwargs) -> datasets.Dataset:
    data = datasets.Dataset.from_dict({"text": texts})
    return extract_teacher_features(data, [str(teacher)], cache_dir=cache, backend=backend, map_batch_size=2,
                                    batch_size=4, max_length=24, **kwargs)


def _cosines(a: datasets.Dataset, b: datasets.Dataset) -> np.ndarray:
    x, y = (np.asarray(d["teacher_features"], np.float64) for d in (a, b))
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


@pytest.mark.parametrize("kind,pooling", [("bert", "mean"), ("bert", "cls"), ("bert", "pooler"), ("mpnet", "mean"),
                                          ("gpt2", "last")])
def test_onnxruntime_features_equal_eager(teachers, tmp_path, kind, pooling):
    eager = _features(teachers[kind], tmp_path, "torch", pooling=pooling)
    onnx = _features(teachers[kind], tmp_path, "onnxruntime", pooling=pooling)
    assert read_from_cache(onnx) == [False]  # the backend has its own cache key: the teacher ran again
    assert _cosines(eager, onnx).min() >= 0.99999
    np.testing.assert_allclose(np.asarray(onnx["teacher_features"]), np.asarray(eager["teacher_features"]),
                               atol=1e-4)
    assert read_teacher_infos(onnx)[0].backend == "onnxruntime" and read_teacher_infos(eager)[0].backend == "torch"


def test_int8_is_its_own_cache_entry_and_close(teachers, tmp_path, caplog):
    eager = _features(teachers["bert"], tmp_path, "torch")
    float32 = _features(teachers["bert"], tmp_path, "onnxruntime")
    int8 = _features(teachers["bert"], tmp_path, "onnxruntime-int8")
    assert read_from_cache(int8) == [False]
    assert not np.array_equal(np.asarray(int8["teacher_features"]), np.asarray(float32["teacher_features"]))
    assert _cosines(eager, int8).mean() > 0.9  # quantised: close, not equal
    assert "in int8: its features are at cosine" in caplog.text
    again = {backend: _features(teachers["bert"], tmp_path, backend)
             for backend in ("torch", "onnxruntime", "onnxruntime-int8")}
    assert all(read_from_cache(d) == [True] for d in again.values())  # each backend's features were kept apart
    np.testing.assert_array_equal(np.asarray(again["onnxruntime-int8"]["teacher_features"]),
                                  np.asarray(int8["teacher_features"]))


def test_export_is_made_once_and_reused_on_other_data(teachers, tmp_path, monkeypatch):
    from hf_aft.teachers import backends

    _features(teachers["bert"], tmp_path, "onnxruntime")
    (folder,) = (tmp_path / "onnx").iterdir()
    assert (folder / "model.onnx").is_file() and not list(tmp_path.glob("onnx/.partial-*"))
    monkeypatch.setattr(backends, "_export", lambda *a: pytest.fail("exported again"))
    other = _features(teachers["bert"], tmp_path, "onnxruntime", texts=["the plot", "a good film"])
    assert read_from_cache(other) == [False]  # new data: the teacher ran, from the export already made


def test_damaged_export_is_made_again(teachers, tmp_path):
    eager = _features(teachers["bert"], tmp_path, "torch")
    _features(teachers["bert"], tmp_path, "onnxruntime", texts=["the plot"])
    (data_file,) = (tmp_path / "onnx").glob("*/model.onnx.data")
    data_file.write_bytes(b"\0" * data_file.stat().st_size)  # weights zeroed: loads, but gives other features
    onnx = _features(teachers["bert"], tmp_path, "onnxruntime")
    assert _cosines(eager, onnx).min() >= 0.99999


def test_teachers_the_backend_cannot_run_are_refused(tmp_path):
    teacher = tiny.save_image_teacher(tmp_path / "convnext")
    with pytest.raises(AFTError, match="runs text teachers; .* is an image model: run it with --teacher_backend"):
        extract_teacher_features(tiny.image_dataset(4), [str(teacher)], image_column="image",
                                 cache_dir=tmp_path / "cache", backend="onnxruntime")
    with pytest.raises(AFTError, match="runs on CPU, but the teachers are placed on cuda"):
        check_backend("onnxruntime", "t", "text", torch.device("cuda"), None)
    with pytest.raises(AFTError, match="unknown teacher_backend 'tensorrt'"):
        check_backend("tensorrt", "t", "text", torch.device("cpu"), None)


def test_int8_too_far_from_the_teacher_is_refused(teachers, tmp_path, monkeypatch):
    from hf_aft.teachers import backends

    monkeypatch.setattr(backends, "INT8_FLOOR", 1.01)  # no quantised model reaches it
    with pytest.raises(AFTError, match=r"in int8: its features are at cosine [01]\.\d+ \(lowest .* below 1\.01: "
                                       r"dynamic int8 quantisation loses too much of this teacher; run it with "
                                       r"--teacher_backend onnxruntime \(float32\) or torch"):
        _features(teachers["bert"], tmp_path, "onnxruntime-int8")


def test_damaged_int8_file_is_made_again(teachers, tmp_path):
    first = _features(teachers["bert"], tmp_path, "onnxruntime-int8", texts=["the plot", "a good film"])
    (int8_file,) = (tmp_path / "onnx").glob("*/model-int8.onnx")
    int8_file.write_bytes(b"not an onnx file")
    again = _features(teachers["bert"], tmp_path, "onnxruntime-int8", texts=["the plot", "a good film", "dull"])
    assert int8_file.stat().st_size > 1000
    np.testing.assert_allclose(np.asarray(again["teacher_features"][:2]), np.asarray(first["teacher_features"]),
                               atol=1e-5)  # the same quantised teacher (the third text changes the padding only)


def test_features_of_another_backend_are_refused_when_teachers_are_named(teachers, tmp_path):
    from hf_aft import TeacherArguments
    from hf_aft.features import with_teacher_features

    int8 = _features(teachers["bert"], tmp_path, "onnxruntime-int8", texts=["the plot", "a good film"])
    options = TeacherArguments(teachers=[str(teachers["bert"])])  # teacher_backend: torch, the default
    with pytest.raises(AFTError, match="made with --teacher_backend onnxruntime-int8, not torch: pass that backend"):
        with_teacher_features(int8, options)
    options.teacher_backend = "onnxruntime-int8"
    assert with_teacher_features(int8, options) is int8


def test_a_file_in_the_way_of_the_export_is_one_line(teachers, tmp_path):
    (tmp_path / "onnx").write_text("not a folder")
    with pytest.raises(AFTError, match=r"could not write teacher .*'s ONNX export in .* MB free there\): remove what"):
        _features(teachers["bert"], tmp_path, "onnxruntime")


def test_what_a_killed_export_left_is_swept(teachers, tmp_path):
    import socket
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    left = tmp_path / "onnx" / f".partial-{socket.gethostname()}-{dead.stdout.strip()}-bert-x"
    left.mkdir(parents=True)
    _features(teachers["bert"], tmp_path, "onnxruntime")
    assert not left.exists() and not list((tmp_path / "onnx").glob(".partial-*"))

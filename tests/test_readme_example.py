"""The README's Python example runs as written, with tiny stand-ins for the demo's teacher and data."""

import re
from pathlib import Path

import datasets
import tiny

import hf_aft.demo

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    section = README.read_text().split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, teacher_dirs):
    teacher = tiny.save_teacher(tmp_path / "minilm", hidden=16)  # a BERT the example can cut to 3 layers
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=len(tiny.WORDS) + 5, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(teacher)
    splits = {name: tiny.sentiment_dataset(n, seed=seed) for name, n, seed in (("train", 32, 0), ("test", 16, 1))}
    labelled = datasets.DatasetDict({name: part.cast_column("label", datasets.ClassLabel(names=["rotten", "fresh"]))
                                     for name, part in splits.items()})
    monkeypatch.setattr(hf_aft.demo, "minilm_path", lambda: teacher)
    monkeypatch.setattr(hf_aft.demo, "rotten_tomatoes", lambda: labelled)
    monkeypatch.chdir(tmp_path)
    code = python_example().replace("num_train_epochs=3", "max_steps=2").replace("per_device_train_batch_size=32",
                                                                                 "per_device_train_batch_size=8")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = tmp_path / "runs" / "api" / "student"
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(out).id2label == {0: "rotten", 1: "fresh"}
    assert (out / "transfer_state.safetensors").exists() and (out / "README.md").exists()

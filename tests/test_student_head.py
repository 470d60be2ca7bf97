"""A student whose trained head names the data's classes in another order keeps what each row learned."""

import pytest
import tiny
import torch
from transformers import AutoModelForSequenceClassification

from hf_aft.data import Labels
from hf_aft.student import load_student, name_labels


@pytest.fixture
def reversed_student(tmp_path):
    """A tiny classifier whose head says 0 = pos, 1 = neg (the data's sorted order is neg, pos)."""
    folder = tiny.save_student(tmp_path / "student", seed=3)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    model.config.id2label, model.config.label2id = {0: "pos", 1: "neg"}, {"pos": 0, "neg": 1}
    model.save_pretrained(folder)
    return folder


def logits(model, tokens):
    with torch.no_grad():
        return model.eval()(**tokens).logits


def test_the_head_rows_follow_the_data_class_order(reversed_student):
    original = AutoModelForSequenceClassification.from_pretrained(reversed_student)
    model, tokenizer = load_student(str(reversed_student), Labels(["neg", "pos"], "label", False))
    tokens = tokenizer(["a good film", "a dull one"], return_tensors="pt", padding=True)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    assert torch.allclose(logits(model, tokens), logits(original, tokens)[:, [1, 0]])  # each class kept its row


def test_the_python_api_reorders_the_rows_too(reversed_student):
    import datasets

    model = AutoModelForSequenceClassification.from_pretrained(reversed_student)
    original = AutoModelForSequenceClassification.from_pretrained(reversed_student)
    data = datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["neg", "pos"]})
    train, _ = name_labels(model, data)
    tokenizer = tiny.make_tokenizer(reversed_student)
    tokens = tokenizer(["a good film"], return_tensors="pt")
    assert train["labels"] == [0, 1] and model.config.id2label == {0: "neg", 1: "pos"}
    assert torch.allclose(logits(model, tokens), logits(original, tokens)[:, [1, 0]])


def test_a_head_in_the_data_order_or_of_other_classes_is_left_alone(reversed_student):
    original = AutoModelForSequenceClassification.from_pretrained(reversed_student)
    model, tokenizer = load_student(str(reversed_student), Labels(["pos", "neg"], "label", False))
    tokens = tokenizer(["a good film"], return_tensors="pt")
    assert torch.allclose(logits(model, tokens), logits(original, tokens))


def test_a_head_named_for_other_classes_is_renamed_and_said(reversed_student, caplog):
    import datasets

    for load, other in (("command", "top"), ("api", "up")):  # other names: each line is said once per process
        caplog.clear()
        if load == "command":
            model, _ = load_student(str(reversed_student), Labels(["neg", other], "label", False))
        else:
            model = AutoModelForSequenceClassification.from_pretrained(reversed_student)
            name_labels(model, datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["neg", other]}))
        assert model.config.id2label == {0: "neg", 1: other}, load  # the saved student names the data's classes
        assert "the student's head was trained for other classes (['pos', 'neg'])" in caplog.text, load

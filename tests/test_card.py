"""The model card as a pure function of what a run knows."""

import json

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import save_file

from hf_aft import AFTError
from hf_aft.card import read_baseline, render_model_card, terms_note, write_model_card
from hf_aft.scales_plot import teacher_scales

TEACHER = {"name": "sentence-transformers/all-mpnet-base-v2", "revision": "e8c3b32e", "pooling": "mean", "dim": 768,
           "max_length": 128}


def test_card_with_every_field():
    card = render_model_card(
        "aft", beta=1.0, teachers=[TEACHER], scales={"all-mpnet-base-v2": {"mean": 0.512, "frac_above_half": 0.61}},
        eval_results={"eval_accuracy": 0.7712, "eval_macro_f1": 0.7655, "eval_runtime": 3.1},
        base_model="nreimers/MiniLM-L6-H384-uncased", dataset_name="rotten_tomatoes", repo_id="me/aft-student",
        hyperparameters={"learning_rate": 2e-4}, versions={"hf-aft": "0.1.0"},
        baseline_results={"eval_accuracy": 0.7601, "eval_macro_f1": 0.7512}, scales_plot="scales.png",
    )
    data = card.data.to_dict()
    assert data["base_model"] == "nreimers/MiniLM-L6-H384-uncased" and data["datasets"] == ["rotten_tomatoes"]
    assert "adaptive-feature-transfer" in data["tags"] and data["library_name"] == "transformers"
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"accuracy": 0.7712, "macro_f1": 0.7655}
    for text in ("Adaptive Feature Transfer (AFT)", "beta = 1.0", "`sentence-transformers/all-mpnet-base-v2`",
                 "`e8c3b32e`", "| 768 |", "0.512", "61.0%", "| accuracy | 0.7712 |", "learning_rate: 0.0002",
                 'from_pretrained("me/aft-student")', "2406.07337", "| accuracy | 0.7712 | 0.7601 | +0.0111 |",
                 "| macro_f1 | 0.7655 | 0.7512 | +0.0143 |", "](scales.png)", "- hf-aft 0.1.0"):
        assert text in card.content, text
    assert "runtime" not in card.content
    assert ModelCard(card.content).data.to_dict()["tags"] == data["tags"]  # the YAML header parses back


def test_card_names_the_unlabelled_data_in_its_text_and_hub_metadata(tmp_path):
    """What a student was made from: the pool's source beside the labelled data's, a Hub id in the metadata too
    (a local path never: it could pass for someone else's repo), its split when not `train`."""
    card = render_model_card("aft", versions={}, dataset_name="rotten_tomatoes",
                             unlabeled_data={"name": "stanfordnlp/imdb", "split": "unsupervised"})
    assert "Training data: `rotten_tomatoes`; unlabelled data: `stanfordnlp/imdb` (split `unsupervised`)." in \
        card.content
    assert card.data.to_dict()["datasets"] == ["rotten_tomatoes", "stanfordnlp/imdb"]
    local = render_model_card("aft", versions={}, dataset_name="rotten_tomatoes",
                              unlabeled_data={"name": str(tmp_path), "split": "train"})
    assert f"; unlabelled data: `{tmp_path}`." in local.content and local.data.to_dict()["datasets"] == [
        "rotten_tomatoes"]


def test_card_with_optional_fields_missing():
    card = render_model_card("none", versions={})
    assert "plain fine-tuning" in card.content and "## Evaluation" not in card.content
    assert "| teacher |" not in card.content and "beta" not in card.content
    assert "base_model" not in card.data.to_dict() and "model-index" not in card.data.to_dict()


def test_image_students_get_an_image_classification_card():
    card = render_model_card("aft", beta=1.0, teachers=[TEACHER], repo_id="me/vit-student", versions={},
                             eval_results={"eval_accuracy": 0.71}, dataset_name="animals", task="image-classification")
    assert card.data.to_dict()["pipeline_tag"] == "image-classification"
    assert card.data.to_dict()["model-index"][0]["results"][0]["task"]["type"] == "image-classification"
    for text in ("image classification student", "AutoModelForImageClassification.from_pretrained(\"me/vit-student\")",
                 "image_processor = AutoImageProcessor.from_pretrained"):
        assert text in card.content, text
    assert "Tokenizer" not in card.content and "text classification" not in card.content
    assert "balance_teachers" not in card.content  # only said when the run used it
    with pytest.raises(AFTError, match="unknown task"):
        render_model_card("aft", task="translation")


def test_card_shows_the_baseline_and_the_scale_plot_only_when_given():
    args = dict(transfer="aft", beta=0.3, teachers=[TEACHER], eval_results={"eval_accuracy": 0.7712}, versions={})
    card = render_model_card(**args, baseline_results={"eval_accuracy": 0.75, "eval_loss": 0.5},
                             scales_plot="scales.png")
    assert "| metric | this model | STL baseline | difference |" in card.content
    assert "| accuracy | 0.7712 | 0.7500 | +0.0212 |" in card.content and "| loss |" not in card.content
    assert "![Distribution of the learned scales per teacher](scales.png)" in card.content
    plain = render_model_card(**args)
    assert "STL baseline" not in plain.content and "![" not in plain.content
    assert "| accuracy | 0.7712 |" in plain.content


def test_write_model_card_draws_the_scales_keeps_its_inputs_and_reads_a_baseline(tmp_path):
    logits = torch.tensor([0.0, 2.0, -2.0, 0.5, -0.5])
    save_file({"scale_logits": logits}, tmp_path / "transfer_state.safetensors")
    (tmp_path / "transfer_summary.json").write_text(json.dumps({"teachers": [{**TEACHER, "dim": 3},
                                                                             {**TEACHER, "name": "b", "dim": 2}],
                                                                "scales": {"mpnet": {}, "b": {}}}))
    scales = teacher_scales(str(tmp_path))
    assert list(scales) == ["mpnet", "b"]
    np.testing.assert_allclose(scales["mpnet"], torch.sigmoid(logits[:3]).numpy(), rtol=1e-6)
    card = write_model_card(str(tmp_path), transfer="aft", beta=0.1, repo_id="me/s", versions={})
    assert (tmp_path / "scales.png").read_bytes().startswith(b"\x89PNG") and "](scales.png)" in card.content
    assert (tmp_path / "README.md").read_text() == card.content
    inputs = json.loads((tmp_path / "model_card.json").read_text())
    assert render_model_card(**inputs).content == card.content  # enough to render the same card again

    stl = tmp_path / "stl"
    stl.mkdir()
    with pytest.raises(AFTError, match="could not read the baseline's results"):
        read_baseline(str(stl))
    (stl / "eval_results.json").write_text(json.dumps({"eval_accuracy": 0.7}))
    assert read_baseline(str(stl)) == {"eval_accuracy": 0.7}
    (stl / "model_card.json").write_text(json.dumps({"transfer": "aft", "dataset_name": "x"}))
    with pytest.raises(AFTError, match="must be plain fine-tuning"):
        read_baseline(str(stl))
    (stl / "model_card.json").write_text(json.dumps({"transfer": "none", "dataset_name": "x"}))
    with pytest.raises(AFTError, match="was trained on 'x', not 'y'"):
        read_baseline(str(stl), "y")


def test_a_card_from_an_older_runs_terms_renders_and_a_short_runs_says_what_it_drew():
    """`hf-aft push` renders the card again from a run's stored inputs: terms written before `unlabeled_rows_drawn`
    existed must still render (a test of that key against None failed on them), and a short run's say it."""
    terms = {"distill": "probe", "distill_weight": 1.0, "distill_temperature": 1.0, "probe_accuracy": 0.8,
             "probe_metric": "accuracy", "labeled_rows": 24,
             "unlabeled_rows": 16, "augmented_rows": 0, "generated_rows": 0, "labeled_fraction": 0.5}
    older = str(render_model_card("aft", beta=0.1, terms=terms, versions={}))
    assert "- Unlabelled data: 16 rows beside 24 labelled; 50% of each batch labelled" in older
    short = str(render_model_card("aft", beta=0.1, terms={**terms, "unlabeled_rows_drawn": 12}, versions={}))
    assert "- Unlabelled data: 16 rows, 12 of them drawn in the steps trained beside 24 labelled" in short
    none = str(render_model_card("aft", beta=0.1, terms={**terms, "labeled_rows_drawn": 0}, versions={}))
    assert "beside 24 labelled (none of them drawn: the task loss never trained);" in none
    some = str(render_model_card("aft", beta=0.1, terms={**terms, "labeled_rows_drawn": 5}, versions={}))
    assert "beside 24 labelled (5 of them drawn);" in some
    # the printed terms line: the rows drawn are of all the unlabelled rows, not of the copies named before them
    copies = terms_note({**terms, "augmented_rows": 8, "augmented_from": "texts", "unlabeled_rows_drawn": 12})
    assert "16 unlabelled rows, 8 of them augmented copies of the labelled texts (12 of the 16 drawn in the steps" \
        in copies


def test_the_cost_table_tells_the_student_row_by_its_place_not_its_name():
    """A teacher folder named `student` (a user's own naming) is a teacher row: its probe score, not a student's
    eval score (it crashed the card, after training, when rows were told apart by name)."""
    from hf_aft.cost import card_summary

    report = {"device": "cpu", "metric": "accuracy", "training_seconds": 1.0, "train_extraction_seconds": 0.5,
              "summary": [], "student": {"parameters": 10, "eval_score": 0.75},
              "teachers": [{"name": "student", "parameters": 20, "probe_score": 0.8}]}
    content = render_model_card("aft", versions={}, cost=card_summary(report)).content
    assert "| student | 10 | - | - | - | 0.7500 |" in content
    assert "| student | 20 | - | - | - | 0.8000 (linear probe) |" in content

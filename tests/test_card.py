"""The model card as a pure function of what a run knows."""

from huggingface_hub import ModelCard

from hf_aft.card import render_model_card

TEACHER = {"name": "sentence-transformers/all-mpnet-base-v2", "revision": "e8c3b32e", "pooling": "mean", "dim": 768,
           "max_length": 128}


def test_card_with_every_field():
    card = render_model_card(
        "aft", beta=1.0, teachers=[TEACHER], scales={"all-mpnet-base-v2": {"mean": 0.512, "frac_above_half": 0.61}},
        eval_results={"eval_accuracy": 0.7712, "eval_macro_f1": 0.7655, "eval_runtime": 3.1},
        base_model="nreimers/MiniLM-L6-H384-uncased", dataset_name="rotten_tomatoes", repo_id="me/aft-student",
        hyperparameters={"learning_rate": 2e-4}, versions={"hf-aft": "0.1.0"},
    )
    data = card.data.to_dict()
    assert data["base_model"] == "nreimers/MiniLM-L6-H384-uncased" and data["datasets"] == ["rotten_tomatoes"]
    assert "adaptive-feature-transfer" in data["tags"] and data["library_name"] == "transformers"
    metrics = data["model-index"][0]["results"][0]["metrics"]
    assert {m["type"]: m["value"] for m in metrics} == {"accuracy": 0.7712, "macro_f1": 0.7655}
    for text in ("Adaptive Feature Transfer (AFT)", "beta = 1.0", "`sentence-transformers/all-mpnet-base-v2`",
                 "`e8c3b32e`", "| 768 |", "0.512", "61.0%", "| accuracy | 0.7712 |", "learning_rate: 0.0002",
                 'from_pretrained("me/aft-student")', "2406.07337"):
        assert text in card.content, text
    assert "runtime" not in card.content
    assert ModelCard(card.content).data.to_dict()["tags"] == data["tags"]  # the YAML header parses back


def test_card_with_optional_fields_missing():
    card = render_model_card("none", versions={})
    assert "plain fine-tuning" in card.content and "## Evaluation" not in card.content
    assert "| teacher |" not in card.content and "beta" not in card.content
    assert "base_model" not in card.data.to_dict() and "model-index" not in card.data.to_dict()

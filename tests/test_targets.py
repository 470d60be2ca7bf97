"""Multi-label and regression students (issue 27): targets read from the label column (or --problem_type), their
encoding, losses, metrics, the regression's standardisation folded back into the head, and the one-line refusals."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch
from test_hub import one_error_line
from tiny import save_student, save_teacher, sentiment_dataset

from hf_aft.commands import main
from hf_aft.data import load_labelled_splits, read_targets
from hf_aft.errors import AFTError
from hf_aft.metrics import multi_label_metrics, regression_metrics
from hf_aft.targets import MULTI, REGRESSION, SINGLE, infer_problem_type


def _tagged(n: int, seed: int) -> datasets.Dataset:
    """Texts with a multi-label `tags` column (a row may hold two classes) and a `score` far from 0."""
    data = sentiment_dataset(n, seed)
    tags = [(["pos"] if label else []) + (["odd"] if i % 2 else []) for i, label in enumerate(data["label"])]
    score = [1000.0 + 40 * label + 0.5 * (i % 3) for i, label in enumerate(data["label"])]
    drift = [-50.0 - 6 * label + 0.25 * (i % 4) for i, label in enumerate(data["label"])]  # a second target
    return data.add_column("tags", tags).add_column("score", score).add_column("drift", drift)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("targets")
    datasets.DatasetDict(train=_tagged(64, 0), test=_tagged(32, 1)).save_to_disk(root / "data")
    return {"root": root, "data": root / "data", "student": save_student(root / "student"),
            "teacher": save_teacher(root / "teacher")}


def _train(world, out, *extra, teacher=None) -> int:
    return main(["train", "--model_name_or_path", str(world["student"]), "--dataset_name", str(world["data"]),
                 "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps", "24",
                 "--learning_rate", "1e-2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
                 "--teachers", str(teacher or world["teacher"]), *extra])


def test_problem_types_come_from_the_column_and_can_be_overridden():
    data = datasets.Dataset.from_dict({"c": ["a", "b"], "i": [0, 1], "f": [0.5, 1.5], "l": [["a"], ["a", "b"]],
                                       "d": [{"x": 1}, {"x": 2}]})
    assert [infer_problem_type(data, c) for c in ("c", "i", "f", "l")] == [SINGLE, SINGLE, REGRESSION, MULTI]
    assert infer_problem_type(data, "i", REGRESSION) == REGRESSION
    with pytest.raises(AFTError, match=r"--problem_type multi_label_classification does not fit .*'f'.* can be "
                                       r"regression or single_label_classification"):
        infer_problem_type(data, "f", MULTI)
    with pytest.raises(AFTError, match=r"label column 'd' holds .*lists of them \(multi-label\) or numbers"):
        infer_problem_type(data, "d")


def test_a_multi_label_row_with_two_labels_is_multi_hot():
    data = datasets.Dataset.from_dict({"text": ["x", "y", "z"], "tags": [["b", "a"], [], ["b"]]})
    targets = read_targets(data, "tags")
    assert targets.names == ["a", "b"]
    assert np.asarray(targets.encode(data)["labels"]).tolist() == [[1, 1], [0, 0], [0, 1]]


CLASSES = ["funny", "long", "scary"]


def _class_lists(path, form: str, eval_classes: list[int], names: list[str] = CLASSES) -> None:
    """A save_to_disk folder of texts with a set of classes per row in `form`: a Sequence(ClassLabel) of `names`,
    lists of their ids, or lists of the names; no training row has the last class, the eval split's rows have
    `eval_classes`."""
    train, test = [[0], [1], [0, 1], []], [eval_classes, [1]]
    inner = datasets.ClassLabel(names=names) if form == "ClassLabel" else datasets.Value(
        "int64" if form == "ids" else "string")
    features = datasets.Features({"text": datasets.Value("string"), "tags": datasets.Sequence(inner)})

    def split(rows):
        tags = rows if form != "names" else [[names[i] for i in row] for row in rows]
        return datasets.Dataset.from_dict({"text": [f"row {i}" for i in range(len(rows))], "tags": tags},
                                          features=features)

    datasets.DatasetDict(train=split(train), test=split(test)).save_to_disk(path)


@pytest.mark.parametrize("form", ["ClassLabel", "ids", "names"])
def test_an_eval_class_no_training_row_has_is_refused_as_single_label_refuses_it(tmp_path, form):
    """A Sequence(ClassLabel) took any of its names as a class in the eval split: 'scary', in no training row,
    trained and scored as a class of its own (exit 0)."""
    _class_lists(tmp_path / "data", form, [0, 2])
    unseen, seen = ("'2'", "'0', '1'") if form == "ids" else ("'scary'", "'funny', 'long'")
    with pytest.raises(AFTError) as refusal:
        load_labelled_splits(str(tmp_path / "data"), label_column="tags")
    assert str(refusal.value) == (f"the eval split 'test' has labels [{unseen}] that the training split lacks (it has "
                                  f"[{seen}]): the student cannot predict them; drop those rows or choose another "
                                  "--eval_split.")


def test_a_class_label_name_no_row_has_is_said_and_left_out_of_macro_f1(tmp_path, caplog):
    _class_lists(tmp_path / "data", "ClassLabel", [0])
    labels = load_labelled_splits(str(tmp_path / "data"), label_column="tags").labels
    assert labels.names == CLASSES and labels.trained == {0, 1}  # the ids stay the data's: a head output for each
    assert "no training row has the class(es) ['scary'] of the label column 'tags'" in caplog.text
    # funny right (F1 1), long half right (F1 2/3), scary in no row and never predicted: no F1, not one of 0
    scores, references = np.array([[0.9, 0.6, 0.1], [0.2, 0.4, 0.3]]), np.array([[1, 1, 0], [0, 1, 0]])
    assert multi_label_metrics(scores, references)["macro_f1"] == pytest.approx((1 + 2 / 3) / 2)
    assert multi_label_metrics(scores, np.zeros((2, 3)), threshold=1)["macro_f1"] == 0.0


def test_a_regression_target_far_from_zero_is_standardised_and_decoded():
    data = datasets.Dataset.from_dict({"text": ["x"] * 4, "y": [1000.0, 1002.0, 1004.0, 1006.0]})
    targets = read_targets(data, "y")
    encoded = np.asarray(targets.encode(data)["labels"])
    assert targets.mean == pytest.approx(1003.0) and encoded.mean() == pytest.approx(0, abs=1e-6)
    assert encoded.std() == pytest.approx(1, abs=1e-5)


def test_metrics_match_a_hand_computation():
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.4]])
    references = np.array([[1, 0], [1, 1], [0, 1]])
    # predicted [[1,0],[1,1],[0,0]]: tp 3, fp 0, fn 1 -> micro F1 6/7; class 0 F1 1, class 1 F1 2/3
    result = multi_label_metrics(scores, references)
    assert result == pytest.approx({"micro_f1": 6 / 7, "macro_f1": (1 + 2 / 3) / 2, "subset_accuracy": 2 / 3})
    reg = regression_metrics(np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 3.0]))
    assert reg["mse"] == pytest.approx(2 / 3) and reg["mae"] == pytest.approx(2 / 3)
    assert reg["pearson"] == pytest.approx(np.corrcoef([1, 2, 4], [1, 3, 3])[0, 1])
    assert reg["spearman"] == pytest.approx(0.8660254)


def test_a_multi_label_student_trains_with_bce_and_saves_its_threshold(world):
    out = world["root"] / "tags"
    assert _train(world, out, "--label_column", "tags") == 0
    results = json.loads((out / "eval_results.json").read_text())
    assert {"eval_micro_f1", "eval_macro_f1", "eval_subset_accuracy"} <= set(results)
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == MULTI and config["decision_threshold"] == 0.5
    assert config["id2label"] == {"0": "odd", "1": "pos"}
    card = (out / "README.md").read_text()
    assert "multi-label" in card and "| micro_f1 |" in card


def test_a_regression_student_predicts_in_the_data_units(world):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out = world["root"] / "score"
    assert _train(world, out, "--label_column", "score", "--max_steps", "60") == 0
    results = json.loads((out / "eval_results.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    test = datasets.load_from_disk(str(world["data"]))["test"]
    with torch.no_grad():
        predicted = model(**tokenizer(list(test["text"]), padding=True, return_tensors="pt")).logits[:, 0].numpy()
    truth = np.asarray(test["score"])
    assert predicted.mean() == pytest.approx(truth.mean(), abs=25)  # in the data's units, not standardised ones
    assert results["eval_mse"] == pytest.approx(float(((predicted - truth) ** 2).mean()), rel=1e-4)
    scores = pipeline("text-classification", model=model, tokenizer=tokenizer, function_to_apply="none")(
        list(test["text"][:3]))
    assert [s["score"] for s in scores] == pytest.approx(predicted[:3].tolist(), abs=1e-4)
    assert "regression" in (out / "README.md").read_text()


@pytest.mark.parametrize("case,argv,fragments", [
    ("nan target", ["--label_column", "score", "--dataset_name", "NAN"], ("does not hold a finite number at row 3",)),
    ("unknown class in eval", ["--label_column", "tags", "--dataset_name", "UNKNOWN"],
     ("the eval split 'test' has labels ['new'] that the training split lacks (it has ['odd', 'pos'])",)),
    # a constant target trained to exit 0 with NaN correlations and a card saying "standard deviation 1"
    ("constant target", ["--label_column", "score,drift", "--dataset_name", "CONST"],
     ("the regression target 'drift' is 3 in every training row", "nothing to learn")),
    ("problem type that does not fit", ["--label_column", "tags", "--problem_type", "regression"],
     ("does not fit", "multi_label_classification")),
    ("unknown problem type", ["--problem_type", "ranking"], ("--problem_type 'ranking'",)),
    ("a text column among several targets", ["--label_column", "score,text"], ("column 'text'", "not numbers")),
    ("a number column with a stray word", ["--label_column", "rating", "--dataset_name", "STRAY"],
     ("'high' at row 4 is not a number", "--problem_type single_label_classification")),
    ("numbers written as text", ["--label_column", "rating", "--dataset_name", "TEXTNUM"],
     ("numbers written as text",)),
    ("a row with one target of two", ["--label_column", "pair", "--dataset_name", "RAGGED"],
     ("does not hold 2 finite numbers at row 5",)),
    ("groups with multi-label", ["--label_column", "tags", "--group_column", "text"], ("--group_column",)),
    ("a task teacher's logits for a regression", ["--label_column", "score", "--distill", "logits",
                                                  "--distill_teacher", "x/y"], ("--distill logits", "regression")),
    ("a temperature for numbers", ["--label_column", "score", "--distill", "probe", "--distill_temperature", "2"],
     ("--distill_temperature", "regression")),
    ("metric of another type", ["--label_column", "score", "--metric_for_best_model", "accuracy",
                                "--load_best_model_at_end", "true", "--eval_strategy", "epoch", "--save_strategy",
                                "epoch"], ("mse, mae",)),
])
def test_refusals_are_one_line_before_any_teacher_runs(world, capsys, monkeypatch, case, argv, fragments):
    import hf_aft.features

    def no_teacher(*args, **kwargs):
        raise AssertionError("a teacher ran")

    monkeypatch.setattr(hf_aft.features, "extract_teacher_features", no_teacher)
    markers = ("NAN", "UNKNOWN", "RAGGED", "STRAY", "TEXTNUM", "CONST")
    if any(marker in argv for marker in markers):
        bad = _tagged(16, 2)
        if "STRAY" in argv or "TEXTNUM" in argv:  # what a CSV reader makes of a number column with a word in it
            ratings = [f"{v / 7:.3f}" for v in bad["score"]]
            bad = bad.add_column("rating", ratings[:4] + ["high" if "STRAY" in argv else ratings[4]] + ratings[5:])
        elif "RAGGED" in argv:
            bad = bad.add_column("pair", [[1.0, 2.0]] * 5 + [[1.0]] + [[1.0, 2.0]] * 10)
        elif "CONST" in argv:
            bad = bad.map(lambda row: {"drift": 3.0})
        elif "NAN" in argv:
            bad = bad.map(lambda row, i: {"score": float("nan") if i == 3 else row["score"]}, with_indices=True)
        else:
            bad = bad.map(lambda row, i: {"tags": ["new"] if i == 2 else row["tags"]}, with_indices=True)
        path = world["root"] / f"bad-{case.replace(' ', '-')}"
        datasets.DatasetDict(train=_tagged(32, 0) if "UNKNOWN" in argv else bad, test=bad).save_to_disk(path)
        argv = [str(path) if a in markers else a for a in argv]
    assert _train(world, world["root"] / f"out-{case.replace(' ', '-')}", *argv) == 2
    one_error_line(capsys, *fragments)


def test_load_labelled_splits_reads_the_problem_type_in_python(world):
    splits = load_labelled_splits(str(world["data"]), label_column="score")
    assert splits.labels.problem_type == REGRESSION and splits.labels.names == ["score"]


def test_beta_auto_judges_regression_and_multi_label_candidates_by_their_own_scores():
    from hf_aft.beta_choice import constant_scores, example_scores, paired
    from hf_aft.validation_split import strata

    targets = torch.linspace(-2, 2, 40)
    close, far = targets + 0.1, targets + 1.0
    assert example_scores(close[:, None], targets, REGRESSION).mean() == pytest.approx(-0.01)
    assert paired({"example_scores": constant_scores(targets, REGRESSION)},
                  {"example_scores": example_scores(close, targets, REGRESSION)})[2] is False  # beats the mean
    assert paired({"example_scores": example_scores(far, targets, REGRESSION)},
                  {"example_scores": example_scores(close, targets, REGRESSION)})[2] is False  # worse, beyond 1 SE
    multi_hot = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    logits = torch.tensor([[5.0, -5.0], [5.0, -5.0], [-5.0, -5.0]])  # the second row misses a label: F1 2/3
    assert example_scores(logits, multi_hot, MULTI).tolist() == pytest.approx([1.0, 2 / 3, 1.0])
    assert strata(multi_hot.numpy()).tolist() == [0, 1, -1]  # a row's rarest label; none: -1
    assert sorted(set(strata(targets.numpy()).tolist())) == [0, 1, 2, 3, 4]  # quintiles of the targets


@pytest.mark.parametrize("column", ["score", "score,drift"])
def test_beta_auto_chooses_for_a_regression_student(world, column):
    out = world["root"] / f"{column}-auto"
    assert _train(world, out, "--label_column", column, "--beta", "auto", "--max_steps", "80",
                  "--beta_validation_fraction", "0.4", "--learning_rate", "2e-3") == 0
    search = json.loads((out / "beta_search.json").read_text())
    assert search["metric"] == "MSE"  # a tiny student may stay on the mean-target plateau: the card says which
    assert "validation MSE" in search["reason"] or "predicting the mean target" in search["reason"]
    assert all(c["score"] is None or c["score"] <= 0 for c in search["candidates"])  # a negated MSE
    assert any(c["score"] is not None for c in search["candidates"])


@pytest.mark.parametrize("column,metric", [("score", "mse"), ("tags", "micro_f1"), ("score,drift", "mse")])
def test_export_and_check_updates_read_multi_label_and_regression_runs_back(world, column, metric, capsys):
    import shutil

    from tiny import save_teacher

    teacher, old, new = (world["root"] / f"{name}-{column}" for name in ("teacher", "old", "new"))
    shutil.copytree(world["teacher"], teacher)
    assert _train(world, old, "--label_column", column, "--skip_cost_report", "true", teacher=teacher) == 0
    assert main(["export", str(old), "--output_dir", str(world["root"] / f"onnx-{column}")]) == 0
    report = json.loads((world["root"] / f"onnx-{column}" / "export_report.json").read_text())
    pytorch, onnx = report["rows"]
    assert report["metric"] == metric and onnx[metric] == pytest.approx(pytorch[metric], rel=1e-4, abs=1e-4)
    assert onnx["max_logit_difference"] < 1e-3
    regression = column.startswith("score")
    assert onnx["agreement"] == (None if regression else 1.0)  # numbers agree by degree, label sets exactly
    if regression:  # the check compares in the data's units: the MSE is the training's eval MSE
        results = json.loads((old / "eval_results.json").read_text())
        assert pytorch["mse"] == pytest.approx(results["eval_mse"], rel=1e-3)
    save_teacher(teacher, hidden=12, seed=7)  # the teacher changes upstream
    capsys.readouterr()
    assert main(["check-updates", str(old), "--retrain", str(new)]) == 1
    out = capsys.readouterr().out
    update = json.loads((new / "update_report.json").read_text())
    assert metric in update["metrics"] and metric.replace("_", "-").replace("f1", "F1") in out
    assert f"{metric.replace('_', '-').replace('f1', 'F1')} " in (new / "README.md").read_text()
    assert main(["audit", str(new)]) == 0


def test_several_targets_from_a_list_column_or_several_number_columns():
    from hf_aft.targets import join_target_columns

    data = datasets.Dataset.from_dict({"text": ["w", "x", "y", "z"], "a": [1000.0, 1002.0, 1004.0, 1006.0],
                                       "b": [-50, -40, -50, -40], "ab": [[1000.0, -50], [1002.0, -40],
                                                                         [1004.0, -50], [1006.0, -40]]})
    joined = join_target_columns(datasets.DatasetDict(train=data), "a, b")["train"]
    for column, names in (("a, b", ["a", "b"]), ("ab", ["ab[0]", "ab[1]"])):
        targets = read_targets(joined, column)
        assert targets.problem_type == REGRESSION and targets.names == names
        assert targets.mean == pytest.approx([1003.0, -45.0])
        encoded = np.asarray(targets.encode(joined)["labels"])
        assert encoded.shape == (4, 2) and encoded.mean(0) == pytest.approx([0, 0], abs=1e-6)
        assert encoded.std(0) == pytest.approx([1, 1], abs=1e-5)
    both = regression_metrics(np.array([[1.0, 5.0], [2.0, 4.0], [4.0, 1.0]]), np.array([[1.0, 6], [3, 4], [3, 2]]))
    each = [regression_metrics(np.array(p), np.array(r)) for p, r in (([1, 2, 4], [1, 3, 3]), ([5, 4, 1], [6, 4, 2]))]
    assert both["pearson"] == pytest.approx(np.mean([m["pearson"] for m in each]))
    assert both["mse"] == pytest.approx(np.mean([m["mse"] for m in each]))


def test_a_student_of_two_targets_predicts_both_in_the_data_units(world, capsys):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    out = world["root"] / "score-drift"
    assert _train(world, out, "--label_column", "score,drift", "--max_steps", "60") == 0
    results = json.loads((out / "eval_results.json").read_text())
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label == {0: "score", 1: "drift"} and model.config.problem_type == REGRESSION
    tokenizer = AutoTokenizer.from_pretrained(out)
    test = datasets.load_from_disk(str(world["data"]))["test"]
    with torch.no_grad():
        predicted = model(**tokenizer(list(test["text"]), padding=True, return_tensors="pt")).logits.numpy()
    truth = np.stack([test["score"], test["drift"]], 1)
    assert predicted.mean(0) == pytest.approx(truth.mean(0), abs=25)  # each in its own units
    assert results["eval_mse"] == pytest.approx(float(((predicted - truth) ** 2).mean()), rel=1e-4)
    scores = pipeline("text-classification", model=model, tokenizer=tokenizer, function_to_apply="none",
                      top_k=None)(list(test["text"][:2]))
    expected = {"score": float(predicted[0, 0]), "drift": float(predicted[0, 1])}
    assert {s["label"]: s["score"] for s in scores[0]} == pytest.approx(expected, abs=1e-3)
    # the audit summarises each target (its every number was counted as a class of both targets mixed)
    split = json.loads((out / "audit.json").read_text())["splits"]["eval"]
    assert "labels" not in split and set(split["targets"]) == {"score", "drift"}
    assert split["targets"]["drift"] == pytest.approx({"mean": truth[:, 1].mean(), "std": truth[:, 1].std(),
                                                       "min": truth[:, 1].min(), "max": truth[:, 1].max()})
    capsys.readouterr()
    assert main(["audit", str(out)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("split eval"))
    assert f"32 rows, targets score mean {truth[:, 0].mean():.4g} (std {truth[:, 0].std():.4g}" in line
    assert "; drift mean" in line and len(line) < 250, line


def test_a_regression_split_is_summarised_per_target_in_the_audit(tmp_path):
    from hf_aft.audit import lineage_lines
    from hf_aft.provenance import split_summary
    from hf_aft.reruns import data_differs

    data = datasets.Dataset.from_dict({"text": list("abcd"), "stars": [1, 2, 4, 5], "score": [0.5, 1.5, 2.5, 3.5]})
    datasets.DatasetDict(train=data).save_to_disk(tmp_path / "data")
    stars = load_labelled_splits(str(tmp_path / "data"), label_column="stars", problem_type=REGRESSION)
    summary = split_summary(stars.train, "stars", "text", stars.labels)  # integers read as targets, not classes
    assert summary["targets"] == {"mean": 3.0, "std": pytest.approx(1.5811388), "min": 1.0, "max": 5.0}
    assert "labels" not in summary
    score = load_labelled_splits(str(tmp_path / "data"), label_column="score")
    summary = split_summary(score.train, "score", "text", score.labels)
    lines = lineage_lines({"splits": {"train": summary}, "dataset": {"label_column": "score"}})
    line = next(line for line in lines if line.startswith("split"))  # it said "labels None"
    assert line.startswith("split train           4 rows, targets score mean 2 (std 1.118, min 0.5, max 3.5), "
                           "fingerprint")
    # a rerun compares the targets; a record from before (the numbers counted as classes) its rows and content
    before = {key: value for key, value in summary.items() if key != "targets"}
    for folder, split in (("old", {**before, "labels": {"0.5": 1, "1.5": 1, "2.5": 1, "3.5": 1}}), ("same", summary),
                          ("moved", {**summary, "targets": {**summary["targets"], "max": 4.0}})):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "audit.json").write_text(json.dumps({"splits": {"train": split}}))
    assert data_differs(str(tmp_path / "same"), str(tmp_path / "old")) == []
    assert data_differs(str(tmp_path / "same"), str(tmp_path / "same")) == []
    assert "did not reproduce" in data_differs(str(tmp_path / "same"), str(tmp_path / "moved"))[0]


class _OneProcess:
    num_processes = 1


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_a_mixed_batch_task_loss_reads_the_labelled_rows_only(problem_type):
    from hf_aft.training_rows import labelled_loss

    torch.manual_seed(0)
    logits = torch.randn(6, 3)
    labels = torch.rand(6, 3).round() if problem_type == MULTI else torch.randn(6, 3) * 5
    mixed = labels.clone()
    mixed[[1, 4]] = float("nan")  # two unlabelled rows
    keep = [0, 2, 3, 5]
    own = (torch.nn.BCEWithLogitsLoss() if problem_type == MULTI else torch.nn.MSELoss())(logits[keep], labels[keep])
    assert labelled_loss(logits, mixed, _OneProcess(), problem_type) == pytest.approx(own.item(), rel=1e-6)
    single = labelled_loss(logits[:, :1], labels[:, 0], _OneProcess(), REGRESSION)  # one target: labels [rows]
    assert problem_type == MULTI or single == pytest.approx(torch.nn.MSELoss()(logits[:, 0], labels[:, 0]).item())


def test_distillation_of_label_sets_and_numbers():
    from hf_aft.losses import distillation_loss

    target = torch.tensor([[4.0, -2.0], [0.0, 1.0], [float("nan"), 0.0]])  # the last row has no target
    same = target.nan_to_num(0.0)
    assert distillation_loss(same, target, 1.0, MULTI).item() == pytest.approx(0.0, abs=1e-7)
    p, q = torch.sigmoid(torch.tensor([4.0, -2.0])), torch.sigmoid(torch.tensor([0.0, 0.0]))
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean()
    student = torch.tensor([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    assert distillation_loss(student, target, 1.0, MULTI).item() == pytest.approx(kl.item() / 2, rel=1e-5)
    assert distillation_loss(student * 3, target * 3, 3.0, MULTI).item() == pytest.approx(9 * kl.item() / 2, rel=1e-5)
    assert distillation_loss(student, target, 1.0, REGRESSION).item() == pytest.approx((16 + 4) / 2 / 2)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_the_probe_targets_are_out_of_fold_and_score_in_the_tasks_metric(problem_type):
    from hf_aft.distillation import fit_task_probe

    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    signal = x[:, :2] @ np.array([[2.0, -1.0], [1.0, 2.0]])
    y = (signal > 0).astype(np.float32) if problem_type == MULTI else (signal + 0.1 * rng.normal(size=signal.shape))
    fit = fit_task_probe(x[:100], y[:100], x[100:], problem_type)
    assert fit.metric == ("micro_f1" if problem_type == MULTI else "pearson") and fit.accuracy > 0.85
    assert fit.labeled.shape == (100, 2) and fit.unlabeled.shape == (20, 2) and np.isfinite(fit.labeled).all()
    truth = y[100:]
    if problem_type == MULTI:  # log-odds: positive where the class is predicted
        assert ((fit.unlabeled > 0) == (truth > 0.5)).mean() > 0.85
    else:
        assert np.corrcoef(fit.unlabeled[:, 0], truth[:, 0])[0, 1] > 0.9
    again = fit_task_probe(x[:100], y[:100], x[100:], problem_type)
    np.testing.assert_array_equal(again.labeled, fit.labeled)  # seeded folds
    echoed = fit_task_probe(x[:100], y[:100], x[:100], problem_type)  # the full probe on the labelled rows
    assert not np.allclose(echoed.unlabeled, fit.labeled)  # the labelled rows' targets come from other folds


def test_the_docs_say_eval_predictions_are_kept_for_single_label_runs_only():
    """command-line.md listed eval_predictions.json among what every OUT receives, and group_report.py's docstring
    said every run with an evaluation split keeps its predictions: multi-label, regression and token-classification
    runs write none (the run above checks that)."""
    from pathlib import Path

    import hf_aft.group_report

    root = Path(__file__).resolve().parents[1] / "docs" / "guides"
    for text in ((root / "command-line.md").read_text(), (root / "operating.md").read_text(),
                 hf_aft.group_report.__doc__):
        said = " ".join(text.split())
        at = said.index("eval_predictions.json")
        assert "single-label classification run" in said[at - 200:at + 200], said[at - 200:at + 200]


@pytest.mark.parametrize("column,metric", [("tags", "micro_f1"), ("score,drift", "pearson")])
def test_unlabelled_rows_and_probe_distillation_train_multi_label_and_regression_students(world, column, metric):
    pool = sentiment_dataset(40, 9).map(lambda row, i: {"text": f"{row['text']} pool{i}"}, with_indices=True)
    pool.remove_columns("label").save_to_disk(world["root"] / f"pool-{column}")
    out = world["root"] / f"semi-{column}"
    assert _train(world, out, "--label_column", column, "--unlabeled_dataset", str(world["root"] / f"pool-{column}"),
                  "--distill", "probe", "--skip_cost_report", "true") == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["distill"] == "probe" and summary["unlabeled_rows"] == 40 and summary["labeled_rows"] == 64
    assert summary["probe_metric"] == metric and summary["probe_accuracy"] is not None
    card = (out / "README.md").read_text()
    assert f"probe's cross-validated {metric.replace('_', '-').replace('f1', 'F1')}" in card
    if column == "tags":
        assert "multi-label text classification student" in card and "one logistic regression per class" in card
    else:  # numbers: a ridge probe, no temperature, and the loss said to be in standardised units
        assert "A small text regression student" in card and "ridge regression" in card
        assert "temperature" not in card.split("Distillation")[1].split("\n")[0]
        assert "`loss` is the squared error in standardised units" in card
    results = json.loads((out / "eval_results.json").read_text())
    assert all(np.isfinite(v) for k, v in results.items() if isinstance(v, float))
    assert not (out / "eval_predictions.json").exists()  # single-label runs keep predictions (test_the_docs_say...)
    again = world["root"] / f"semi-{column}-again"  # the recipe reruns it: the same targets, pool and terms
    assert main(["train", "--config", str(out / "recipe.yaml"), "--output_dir", str(again)]) == 0
    rerun = json.loads((again / "eval_results.json").read_text())
    assert rerun[f"eval_{metric}"] == pytest.approx(results[f"eval_{metric}"], abs=1e-6)


@pytest.mark.parametrize("problem_type", [MULTI, REGRESSION])
def test_logme_and_the_probe_tell_an_informative_teacher_from_noise(problem_type):
    from hf_aft.ranking import logme, probe_scores

    rng = np.random.default_rng(1)
    informative, noise = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))
    signal = informative[:, :3] @ rng.normal(size=(3, 3))
    y = (signal > 0).astype(np.float32) if problem_type == MULTI else 100 + 20 * signal  # far from 0, unscaled
    assert logme(informative, y, problem_type=problem_type) > logme(noise, y, problem_type=problem_type) + 0.1
    good, bad = probe_scores(informative, y, problem_type)[0], probe_scores(noise, y, problem_type)[0]
    assert good > 0.8 and bad < 0.6


@pytest.mark.parametrize("column,metric", [("tags", "micro_f1"), ("score,drift", "pearson")])
def test_rank_teachers_scores_multi_label_and_regression_tasks(world, column, metric, capsys):
    output = world["root"] / f"ranking-{column}.json"
    assert main(["rank-teachers", "--teachers", str(world["teacher"]), "--model_name_or_path", str(world["student"]),
                 "--dataset_name", str(world["data"]), "--label_column", column, "--output_file", str(output)]) == 0
    ranking = json.loads(output.read_text())
    assert ranking["problem_type"] == (MULTI if column == "tags" else REGRESSION)
    assert {row["role"] for row in ranking["rows"]} == {"teacher", "student"}
    assert all(row["probe_metric"] == metric and np.isfinite([row["logme"], row["probe_score"]]).all()
               for row in ranking["rows"])
    assert f"probe {'micro-F1' if column == 'tags' else 'r'} ± sd (5 folds)" in capsys.readouterr().out


@pytest.mark.parametrize("problem_type, options, fragment", [
    ("regression", {"distill_temperature": 2.0}, "--distill_temperature"),
    ("regression", {"distill": "logits", "distill_teacher": "x/y"}, "--distill logits"),
    ("multi_label_classification", {"distill": "logits", "distill_teacher": "x/y"}, "--distill logits"),
])
def test_the_trainer_refuses_distillation_options_its_student_cannot_use(world, tmp_path, problem_type, options,
                                                                         fragment):
    """AFTTrainer took them: a regression student's logits-distillation targets were all 0 (the log-softmax of one
    logit), and a temperature was dropped silently. train_student refused them; the trainer refuses the same."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_aft import AFTConfig, AFTTrainer, tokenize_beside_features

    student = AutoModelForSequenceClassification.from_pretrained(
        world["student"], num_labels=1 if problem_type == "regression" else 2, problem_type=problem_type,
        ignore_mismatched_sizes=True)
    args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[str(world["teacher"])], report_to="none",
                     **options)
    rows = _tagged(8, 0).remove_columns("label")
    rows = rows.rename_column("score" if problem_type == "regression" else "tags", "label")
    if problem_type != "regression":
        rows = rows.map(lambda row: {"label": [float("pos" in row["label"]), float("odd" in row["label"])]},
                        remove_columns=["label"])
    tokenizer = AutoTokenizer.from_pretrained(world["student"])
    rows = tokenize_beside_features(rows, tokenizer, max_length=32)
    with pytest.raises(AFTError, match=f"{fragment}.* this run is {problem_type} \\(the student's config"):
        AFTTrainer(model=student, args=args, train_dataset=rows, processing_class=tokenizer)


def test_the_single_label_metric_refuses_another_problem_types_predictions():
    """compute_classification_metrics, the one metric the docs showed, scored a regression's one logit per row as
    class 0 (accuracy 0.0, exit 0) and failed deep on multi-hot labels; it now names compute_metrics_for."""
    from transformers import EvalPrediction

    from hf_aft import compute_classification_metrics

    regression = EvalPrediction(predictions=np.zeros((4, 1)), label_ids=np.array([1.0, 2.0, 3.0, 4.0]))
    multi_hot = EvalPrediction(predictions=np.zeros((4, 3)), label_ids=np.eye(4, 3))
    for prediction in (regression, multi_hot):
        with pytest.raises(AFTError, match=r"pass compute_metrics=compute_metrics_for\(labels\)"):
            compute_classification_metrics(prediction)
    single = EvalPrediction(predictions=np.eye(4, 2), label_ids=np.array([0, 1, 1, 0]))
    assert compute_classification_metrics(single)["accuracy"] == 0.75  # argmax 0, 1, 0, 0


def test_the_multi_label_probe_chooses_its_c_by_out_of_fold_log_loss():
    """At C = 1, with about as many rows as features, the per-class probes were over-confident: their targets (and
    the probe column) now come at the C whose out-of-fold predictions have the lowest log-loss."""
    from hf_aft.task_probes import PROBE_CS, _class_probabilities, choose_c, fit_probe_outputs

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 60))
    y = ((x[:, :3] + rng.normal(scale=1.5, size=(80, 3))) > 0).astype(np.float32)

    def log_loss(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).mean())

    c, out_of_fold = choose_c(x, y, 5)
    assert c < 1 and c in PROBE_CS
    at_one = np.empty_like(out_of_fold)
    from sklearn.model_selection import KFold

    for train, held in KFold(5, shuffle=True, random_state=0).split(x):
        at_one[held] = _class_probabilities(x[train], y[train], x[held], (1.0,))[0]
    assert log_loss(out_of_fold) < log_loss(at_one) - 0.05
    np.testing.assert_allclose(fit_probe_outputs(x, y, x[:5], MULTI), fit_probe_outputs(x, y, x[:5], MULTI, c))
    from hf_aft.distillation import fit_task_probe
    from hf_aft.task_probes import as_targets

    fit = fit_task_probe(x, y, x[:5], MULTI)  # the targets keep C = 1: calibrated ones made a worse student
    np.testing.assert_allclose(fit.labeled, as_targets(at_one, MULTI), rtol=1e-4, atol=1e-4)


def test_classes_joined_from_a_csvs_lists_are_said_to_be_read_as_single_label(caplog):
    """'fresh,long' beside 'fresh' in a CSV: a row's list of classes written as one string trained a single-label
    classifier of combinations, with no word about it."""
    joined = datasets.Dataset.from_dict({"labels": ["fresh,long", "fresh", "rotten,short", "long", "fresh,long"]})
    assert infer_problem_type(joined, "labels") == "single_label_classification"
    assert "2 of the 4 classes of the label column 'labels' join names with ','" in caplog.text
    assert "re.split('[,]', row['labels']) if row['labels'] else []" in caplog.text
    caplog.clear()
    named = datasets.Dataset.from_dict({"labels": ["Arts, Culture", "Sport", "Politics", "Sport"]})
    assert infer_problem_type(named, "labels") == "single_label_classification"
    assert "join names" not in caplog.text  # one class name with a comma is a name
    one = datasets.Dataset.from_dict({"labels": ["fresh", "rotten", "fresh,long", "rotten"]})  # beside its parts
    infer_problem_type(one, "labels")
    assert "1 of the 3 classes of the label column 'labels' join names with ','" in caplog.text
    caplog.clear()
    mixed = datasets.Dataset.from_dict({"labels": ["fresh,long", "rotten;short", "fresh"]})
    infer_problem_type(mixed, "labels")
    assert "join names with ',' or ';'" in caplog.text and "re.split('[,;]', row['labels'])" in caplog.text


def test_a_missing_target_of_several_is_named_alone():
    """`--label_column score,nope`: the refusal named the column 'score,nope', not the 'nope' that is missing."""
    from hf_aft.data import check_columns

    with pytest.raises(AFTError, match=r"^column 'nope' not found; the dataset has columns \['text', 'score'\]"):
        check_columns(datasets.Dataset.from_dict({"text": ["a"], "score": [1.0]}), "text", "score,nope")


def test_a_missing_column_names_the_one_column_that_fits():
    """An image dataset's labels in 'animal': the refusal said only "Pass --text_column / --label_column"."""
    from hf_aft.data import check_columns

    animals = datasets.Dataset.from_dict({"img": [1], "animal": [0]}).cast_column(
        "animal", datasets.ClassLabel(names=["bear", "cat"]))
    with pytest.raises(AFTError, match=r"Pass --label_column animal\.$"):
        check_columns(animals, "img", "label")
    with pytest.raises(AFTError, match=r"Pass --text_column review\.$"):
        check_columns(datasets.Dataset.from_dict({"review": ["a"], "label": [0]}), "text", "label")
    with pytest.raises(AFTError, match=r"Pass --label_column animal\.$"):  # a csv: no ClassLabel, one other column
        check_columns(datasets.Dataset.from_dict({"path": ["a.png"], "animal": ["cat"]}), "path", "label")
    with pytest.raises(AFTError, match=r"Pass --text_column naming it\.$"):
        check_columns(datasets.Dataset.from_dict({"a": ["x"], "b": ["y"], "label": [0]}), "text", "label")


def test_integer_labels_with_minus_one_name_the_regression_way_out():
    """-1 among integer labels reads as GLUE's hidden label; integer targets of a regression are the other reading."""
    from hf_aft.data import Labels

    with pytest.raises(AFTError, match=r"a hidden label .* pass --problem_type regression\.$"):
        Labels.from_dataset(datasets.Dataset.from_dict({"label": [3, -1, 2]}), "label")


def test_encoded_targets_leave_no_other_column_the_collator_would_train_on():
    """A regression on 'score' beside an unrelated int 'label': encode() wrote 'labels' and kept 'label', which
    transformers' collator renames to 'labels' in every batch: the student trained on the wrong column."""
    from hf_aft.targets import RegressionTargets

    data = datasets.Dataset.from_dict({"text": ["a", "b", "c"], "score": [1.0, 2.0, 4.0], "label": [0, 1, 0]})
    encoded = RegressionTargets.from_dataset(data, "score").encode(data)
    assert "label" not in encoded.column_names and "labels" in encoded.column_names


def test_label_smoothing_for_a_regression_is_refused_by_its_flag_before_any_teacher_runs(tmp_path):
    """The command's refusal came from AFTTrainer, after the teachers ran, in the Python field's name."""
    from types import SimpleNamespace

    from hf_aft import AFTConfig
    from hf_aft.task_options import check_task_options

    config = AFTConfig(output_dir=str(tmp_path), label_smoothing_factor=0.1)
    script = SimpleNamespace(group_column=None, unlabeled_dataset=None)
    with pytest.raises(AFTError, match=r"^--label_smoothing_factor 0.1 smooths .* a regression student"):
        check_task_options(script, config, "regression")
    check_task_options(script, config, "single_label_classification")


def test_single_label_metrics_skip_ignored_rows_and_refuse_what_they_cannot_score():
    from transformers import EvalPrediction

    from hf_aft.metrics import compute_classification_metrics

    logits = np.array([[2.0, 0], [0, 1], [1, 0], [0, 3]])
    scores = compute_classification_metrics(EvalPrediction(logits, np.array([0, -100, 1, 1])))
    assert scores["accuracy"] == pytest.approx(2 / 3)  # the -100 row (the loss's ignore index) was counted as wrong
    assert compute_classification_metrics(EvalPrediction(logits, np.array([0.0, 1, 0, 1])))["accuracy"] == 1.0
    for labels, says in [(np.array([0, 0.5, 1, 1]), "hold fractions, NaN or text"), (np.array([0, 1]), "4 rows of"),
                         (np.array([0, 1, 5, -1]), "labels \\[-1, 5\\] are outside the student's 2 classes"),
                         (np.array(["a", "b", "a", "b"]), "hold fractions, NaN or text"),
                         (np.full(4, -100), "at least one to score")]:
        with pytest.raises(AFTError, match=says):
            compute_classification_metrics(EvalPrediction(logits, labels))
    with pytest.raises(AFTError, match="logits are NaN for 2 of 4 rows"):
        broken = np.where(np.eye(4, 2) > 0, np.nan, logits)
        compute_classification_metrics(EvalPrediction(broken, np.array([0, 1, 0, 1])))


def test_labels_encode_a_dataset_of_the_label_column_alone_and_refuse_what_is_not_one():
    """A dataset holding only the label column failed with "Failed to concatenate on axis=1"; a missing column or a
    list of rows with raw datasets and list errors; an unknown problem type was accepted."""
    from hf_aft.data import Labels
    from hf_aft.targets import MultiLabels, RegressionTargets

    labels = Labels(["neg", "pos"], "label", False)
    alone = datasets.Dataset.from_dict({"label": ["pos", "neg"]})
    assert labels.encode(alone).column_names == ["labels"] and labels.encode(alone)["labels"] == [1, 0]
    tags = datasets.Dataset.from_dict({"label": [["a"], ["a", "b"]]})
    assert MultiLabels(["a", "b"], "label").encode(tags)["labels"] == [[1.0, 0.0], [1.0, 1.0]]
    scores = datasets.Dataset.from_dict({"label": [1.0, 3.0]})
    assert RegressionTargets("label", mean=2.0, std=1.0).encode(scores)["labels"] == [-1.0, 1.0]
    with pytest.raises(AFTError, match=r"^the dataset to encode has no label column 'label' \(it has \['x'\]\)"):
        labels.encode(datasets.Dataset.from_dict({"x": ["pos"]}))
    with pytest.raises(AFTError, match=r"^the dataset to encode must be a datasets.Dataset, not list: "):
        labels.encode(["pos", "neg"])
    with pytest.raises(AFTError, match="^unknown problem_type 'foo': choose one of single_label_classification, "):
        Labels(["neg", "pos"], "label", False, problem_type="foo")


def test_a_classes_column_with_a_stray_fraction_is_warned_about(caplog):
    # one 0.5 among 0/1 labels turned a classifier's run into a regression with only a notice
    from hf_aft.targets import infer_problem_type

    with caplog.at_level("WARNING"):
        assert infer_problem_type(datasets.Dataset.from_dict({"label": [0.0, 1.0] * 100 + [0.5]}), "label") == \
            "regression"
    assert "holds whole numbers but for 1 row(s) of [0.5]" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):  # a real regression's targets: no warning
        infer_problem_type(datasets.Dataset.from_dict({"label": [0.1 * i for i in range(200)]}), "label")
    assert "whole numbers" not in caplog.text

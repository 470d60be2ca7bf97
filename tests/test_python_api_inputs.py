"""The Python API refuses what it cannot train on in one line, before any teacher runs, as `hf-aft train` does:
datasets that are not one split, untokenized sets, labels the student's head cannot read (missing, NaN, floats for a
classifier); and it reads labels as transformers and `hf-aft train` do (one output with float labels: a regression;
lists of class names for a multi-label student: multi-hot rows). A pool's label column is dropped with a warning."""

import re

import datasets
import pytest
import tiny
import torch
from transformers import AutoTokenizer, BertForSequenceClassification

import hf_aft.trainer
from hf_aft import AFTConfig, AFTError, AFTTrainer, TeacherArguments, extract_teacher_features, with_teacher_features
from hf_aft.metrics import compute_classification_metrics


@pytest.fixture(scope="module")
def tokenizer(student_dir):
    return AutoTokenizer.from_pretrained(student_dir)


@pytest.fixture(scope="module")
def train_set(teacher_dirs, tokenizer, tmp_path_factory):
    data = extract_teacher_features(tiny.sentiment_dataset(24), [str(d) for d in teacher_dirs],
                                    cache_dir=tmp_path_factory.mktemp("cache"))
    return data.map(lambda b: tokenizer(b["text"]), batched=True)


def student(num_labels: int = 2, **config):
    torch.manual_seed(0)
    return BertForSequenceClassification(tiny.bert_config(16, num_labels=num_labels, **config))


def config(tmp_path, **options):
    return AFTConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=1, report_to="none",
                     save_strategy="no", use_cpu=True, disable_tqdm=True, **options)


@pytest.fixture
def no_teacher_runs(monkeypatch):
    """A refusal that must come before any teacher runs: preparing the rows (features, targets) fails the test."""
    def prepared(*args, **kwargs):
        raise AssertionError("the training rows were prepared (teachers ran) before the refusal")
    monkeypatch.setattr(hf_aft.trainer, "prepare_training_rows", prepared)


def refusal(tmp_path, tokenizer, model=None, **datasets_and_options):
    options = {k: datasets_and_options.pop(k) for k in list(datasets_and_options) if k not in
               ("train_dataset", "eval_dataset", "unlabeled_dataset", "compute_metrics")}
    with pytest.raises(AFTError) as caught:
        AFTTrainer(model=model or student(), args=config(tmp_path, **options), processing_class=tokenizer,
                   **datasets_and_options)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("make", "kind", "way"), [
    (lambda d: datasets.DatasetDict({"train": d}), "DatasetDict", "give one split of it (train_dataset=data['tr"),
    (lambda d: d.to_pandas(), "DataFrame", "datasets.Dataset.from_pandas(frame) makes one"),
    (lambda d: d.to_list(), "list", "datasets.Dataset.from_list(rows)"),
    (lambda d: d.to_dict(), "dict", "datasets.Dataset.from_dict(columns) makes one"),
    (lambda d: d.to_iterable_dataset(), "IterableDataset", "load it without streaming=True"),
])
def test_a_train_dataset_that_is_not_one_split_says_how_to_make_one(tmp_path, tokenizer, train_set, make, kind, way,
                                                                     no_teacher_runs):
    message = refusal(tmp_path, tokenizer, train_dataset=make(train_set))
    assert message.startswith(f"train_dataset must be a datasets.Dataset, not {kind}: ") and way in message


def test_an_eval_dataset_of_columns_or_rows_is_refused_a_dict_of_splits_is_not(tmp_path, tokenizer, train_set,
                                                                                no_teacher_runs):
    for given, kind in ((train_set.to_pandas(), "DataFrame"), (train_set.to_dict(), "dict"),
                        ({"a": train_set, "b": train_set.to_list()}, "list")):
        message = refusal(tmp_path, tokenizer, train_dataset=train_set, eval_dataset=given)
        name = "eval_dataset (b)" if kind == "list" else "eval_dataset"
        assert message.startswith(f"{name} must be a datasets.Dataset, not {kind}: ")
    with pytest.raises(AssertionError, match="teachers ran"):  # a DatasetDict is Trainer's dict of eval sets
        AFTTrainer(model=student(), args=config(tmp_path), train_dataset=train_set, processing_class=tokenizer,
                   eval_dataset=datasets.DatasetDict({"a": train_set, "b": train_set}))


def test_feature_helpers_take_one_split_and_teacher_options(teacher_dirs):
    data = datasets.DatasetDict({"train": tiny.sentiment_dataset(4), "test": tiny.sentiment_dataset(4, seed=1)})
    with pytest.raises(AFTError, match=r"^extract_teacher_features' dataset must be a datasets.Dataset, not "
                                       r"DatasetDict: give one split of it \(extract_teacher_features\(data\['tr"):
        extract_teacher_features(data, [str(teacher_dirs[0])])
    with pytest.raises(AFTError, match=r"^the training dataset must be a datasets.Dataset, not DatasetDict"):
        with_teacher_features(data, TeacherArguments(teachers=[str(teacher_dirs[0])]))
    with pytest.raises(AFTError, match=r"^with_teacher_features\(dataset, options\) takes teacher options \(an "
                                       r"AFTConfig or TeacherArguments\), not list: .*extract_teacher_features"):
        with_teacher_features(data["train"], [str(teacher_dirs[0])])


def test_an_untokenized_train_eval_or_pool_set_is_refused_before_any_teacher_runs(tmp_path, tokenizer, train_set,
                                                                                   teacher_dirs, no_teacher_runs):
    raw = tiny.sentiment_dataset(24)
    teachers = [str(d) for d in teacher_dirs]
    for given in ({"train_dataset": raw}, {"train_dataset": train_set, "eval_dataset": raw},
                  {"train_dataset": train_set, "unlabeled_dataset": raw.remove_columns("label")}):
        name = next(reversed(given))
        message = refusal(tmp_path, tokenizer, teachers=teachers, **given)
        assert message.startswith(f"{name} has no 'input_ids' column, the student's input (it has ['text'")
        assert f"hf_aft.tokenize_beside_features({name}, tokenizer)" in message


def test_missing_labels_and_nan_targets_are_named_by_their_row(tmp_path, tokenizer, train_set, no_teacher_runs):
    missing = train_set.remove_columns("label").add_column("label", [None, *train_set["label"][1:]])
    message = refusal(tmp_path, tokenizer, train_dataset=missing)
    assert message.startswith("the training split's column 'label' has no label at row 0")
    message = refusal(tmp_path, tokenizer, train_dataset=train_set, eval_dataset=missing)
    assert message.startswith("the eval split's column 'label' has no label at row 0")
    targets = [float(i) for i in range(len(train_set))]
    targets[3] = float("nan")
    nan = train_set.remove_columns("label").add_column("label", targets)
    message = refusal(tmp_path, tokenizer, student(1, problem_type="regression"), train_dataset=nan)
    assert message.startswith("the training split's target column 'label' does not hold a finite number at row 3")


def test_float_class_labels_say_to_cast_them_or_train_a_regression(tmp_path, tokenizer, train_set, no_teacher_runs):
    floats = train_set.cast_column("label", datasets.Value("float32"))
    message = refusal(tmp_path, tokenizer, train_dataset=floats)
    assert message.startswith("the training split's labels in 'label' are floats (float32) but the student "
                              "classifies into num_labels=2 classes: cast them to class ids")
    assert "num_labels=1 (problem_type='regression')" in message


def test_one_output_and_float_labels_is_a_regression_as_in_transformers(tmp_path, tokenizer, train_set):
    targets = train_set.remove_columns("label").add_column("label", [0.5 * i for i in range(len(train_set))])
    model = student(1)
    trainer = AFTTrainer(model=model, args=config(tmp_path), train_dataset=targets, processing_class=tokenizer)
    assert trainer.problem_type == model.config.problem_type == "regression"
    assert trainer.rows.distill == "probe" and trainer.rows.probe_metric != "accuracy"
    trainer.train()


def test_lists_of_class_names_are_encoded_for_a_multi_label_student(tmp_path, tokenizer, train_set, no_teacher_runs):
    tags = [["pos", "noun"] if label else ["neg"] for label in train_set["label"]]
    named = train_set.remove_columns("label").add_column("label", tags)
    model = student(3, problem_type="multi_label_classification")
    with pytest.raises(AssertionError, match="teachers ran"):  # the checks passed
        AFTTrainer(model=model, args=config(tmp_path), train_dataset=named, processing_class=tokenizer)
    assert model.config.id2label == {0: "neg", 1: "noun", 2: "pos"}
    message = refusal(tmp_path, tokenizer, student(2, problem_type="multi_label_classification"),
                      train_dataset=named)
    assert message.startswith("the labels have 3 classes ['neg', 'noun', 'pos'] but the student has num_labels=2")
    ids = train_set.remove_columns("label").add_column("label", [[0, 2] if x else [1] for x in train_set["label"]])
    message = refusal(tmp_path, tokenizer, student(3, problem_type="multi_label_classification"), train_dataset=ids)
    assert message.startswith("the training split's label column 'label' does not hold a multi-hot row of "
                              "num_labels=3 finite floats at row 0 ([1])")
    message = refusal(tmp_path, tokenizer, train_dataset=named)  # a single-label student
    assert "are lists" in message and "problem_type='multi_label_classification'" in message


def test_single_label_metrics_for_another_student_are_refused_before_training(tmp_path, tokenizer, train_set,
                                                                             no_teacher_runs):
    """The README's compute_classification_metrics beside a multi-label student: refused only at the first
    evaluation, after training."""
    tags = [["pos"] if x else ["neg"] for x in train_set["label"]]
    tags = train_set.remove_columns("label").add_column("label", tags)
    message = refusal(tmp_path, tokenizer, student(2, problem_type="multi_label_classification"), train_dataset=tags,
                      compute_metrics=compute_classification_metrics)
    assert "this one is a multi_label_classification student" in message and "compute_metrics_for(labels)" in message


def test_the_multi_label_names_reach_training_as_multi_hot_rows(tmp_path, tokenizer, train_set):
    tags = [["pos", "noun"] if label else ["neg"] for label in train_set["label"]]
    named = train_set.remove_columns("label").add_column("label", tags)
    trainer = AFTTrainer(model=student(3, problem_type="multi_label_classification"), args=config(tmp_path),
                         train_dataset=named, processing_class=tokenizer)
    assert trainer.train_dataset["labels"][:2] == [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]
    trainer.train()


def test_a_labelled_pool_is_used_unlabelled_with_a_warning(tmp_path, tokenizer, train_set, teacher_dirs, caplog):
    pool = tiny.sentiment_dataset(24, seed=5).map(lambda b: tokenizer(b["text"]), batched=True)
    pool = pool.filter(lambda row: row["text"] not in set(train_set["text"]))
    with caplog.at_level("WARNING"):
        trainer = AFTTrainer(model=student(), args=config(tmp_path, teachers=[str(d) for d in teacher_dirs]),
                             train_dataset=train_set, processing_class=tokenizer, unlabeled_dataset=pool)
    warned = [r.getMessage() for r in caplog.records if "never read" in r.getMessage()]
    assert warned == ["hf-aft: the unlabelled data's column 'label' is dropped, never read (its rows train the "
                      "teacher terms only; labelled rows go in train_dataset)."]
    assert trainer.rows.n_unlabeled == len(pool)


@pytest.mark.parametrize("options, says", [
    ({"transfer": "kd", "kernel": "rbf"}, "--kernel shapes the AFT transfer term only, and this run has --transfer"),
    ({"transfer": "none", "beta": 5.0}, "--beta shapes the AFT, KD and RKD transfer term only"),
    ({"distill": "none", "distill_weight": 3.0}, "--distill_weight is used by the distillation term only"),
    ({"transfer": "none", "distill": "none", "teachers": ["t"]}, "--teachers are read by a transfer term or --distill "
     "probe only, and this run has neither (--transfer none, --distill none): drop --teachers"),
    ({"transfer": "none", "distill_teacher": "c", "teachers": ["t"]}, "(--transfer none, --distill logits): drop "
     "--teachers, or pass --transfer aft (kd, rkd)."),
])
def test_the_trainer_refuses_options_that_would_change_nothing_as_the_command_does(options, says, tmp_path):
    """AFTTrainer took them silently, and a kd run's transfer_summary.json recorded kernel rbf."""
    args = AFTConfig(output_dir=str(tmp_path / "out"), report_to="none", **options)
    with pytest.raises(AFTError, match=re.escape(says)):
        AFTTrainer(model=torch.nn.Linear(2, 2), args=args, train_dataset=datasets.Dataset.from_dict({"x": [1, 2, 3]}))


def test_sets_without_a_label_column_are_refused_before_any_teacher_runs(tmp_path, tokenizer, train_set,
                                                                         no_teacher_runs):
    """A label column named otherwise failed inside the probe fit, after the teachers ran; an eval set without one
    evaluated to no loss and no metrics, silently."""
    renamed = train_set.rename_column("label", "sentiment")
    message = refusal(tmp_path, tokenizer, train_dataset=renamed)
    assert "training set has no 'label' or 'labels' column" in message and "rename_column" in message
    message = refusal(tmp_path, tokenizer, train_dataset=train_set, eval_dataset={"b": renamed})
    assert "eval (b) set has no 'label'" in message
    stream = renamed.to_iterable_dataset()  # its columns are known: it evaluated to runtimes only
    assert "eval set has no 'label'" in refusal(tmp_path, tokenizer, train_dataset=train_set, eval_dataset=stream)
    message = refusal(tmp_path, tokenizer, train_dataset=renamed, label_names=["labels"])
    assert "has no 'labels' column (label_names" in message


def test_model_init_and_hyperparameter_search_say_what_to_use_instead(tmp_path, tokenizer, train_set):
    with pytest.raises(AFTError, match="search_beta") as caught:
        AFTTrainer(model_init=student, args=config(tmp_path), train_dataset=train_set, processing_class=tokenizer)
    assert "not model_init" in str(caught.value)
    with pytest.raises(AFTError, match="compute_loss_func would be ignored"):  # Trainer's other loss hook
        AFTTrainer(model=student(), args=config(tmp_path), train_dataset=train_set, processing_class=tokenizer,
                   compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.logits.sum())
    trainer = AFTTrainer(model=student(), args=config(tmp_path), train_dataset=train_set, processing_class=tokenizer)
    with pytest.raises(AFTError, match="hyperparameter_search does not run"):
        trainer.hyperparameter_search(n_trials=2)


def test_label_smoothing_is_applied_as_transformers_applies_it(tmp_path, tokenizer, train_set):
    """label_smoothing_factor was accepted and ignored (the model's own loss was used)."""
    from transformers import Trainer

    def eval_loss(trainer_class, smoothing, **extra):
        args = config(tmp_path, label_smoothing_factor=smoothing, transfer="none")
        model = student(3)  # 2 balanced classes: a smoothed loss equal to the plain one whatever the logits
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor([2.0, -1.0, 0.5]))  # not the uniform answer
        trainer = trainer_class(model=model, args=args, eval_dataset=train_set.remove_columns(
            ["teacher_features", "text"]), processing_class=tokenizer, **extra)
        return trainer.evaluate()["eval_loss"]

    smoothed = eval_loss(AFTTrainer, 0.3, train_dataset=train_set)
    assert smoothed != pytest.approx(eval_loss(AFTTrainer, 0.0, train_dataset=train_set))
    assert smoothed == pytest.approx(eval_loss(Trainer, 0.3), rel=1e-5)
    regression = student(1, problem_type="regression")
    floats = train_set.cast_column("label", datasets.Value("float32"))
    assert "label_smoothing_factor=0.1" in refusal(tmp_path, tokenizer, regression, train_dataset=floats,
                                                   label_smoothing_factor=0.1)
    read_as_regression = student(1)  # one output, float labels: a regression as transformers reads it (was accepted)
    assert "a regression one" in refusal(tmp_path, tokenizer, read_as_regression, train_dataset=floats,
                                         label_smoothing_factor=0.1)
    trainer = AFTTrainer(model=student(), args=config(tmp_path, label_smoothing_factor=0.2), train_dataset=train_set,
                         processing_class=tokenizer)
    trainer.train()  # and in training, beside the transfer term
    assert trainer.state.log_history[-1]["train_loss"] > 0


def test_regression_targets_left_in_the_data_units_are_refused_beside_metrics_that_undo_the_scale(tmp_path,
                                                                                                   tokenizer,
                                                                                                   train_set):
    """The guide encoded the training split only: the eval split in the data's units was scaled twice by the
    metrics (an MAE of 3,368 for a student 13 off)."""
    from hf_aft.metrics import compute_metrics_for
    from hf_aft.targets import RegressionTargets

    scores = train_set.remove_columns("label").add_column("score", [1000.0 + 7 * i for i in range(len(train_set))])
    targets = RegressionTargets.from_dataset(scores, "score")
    train = targets.encode(scores)
    raw = scores.rename_column("score", "label")
    message = refusal(tmp_path, tokenizer, student(1, problem_type="regression"), train_dataset=train,
                      eval_dataset=raw, compute_metrics=compute_metrics_for(targets))
    assert "the eval set's targets in 'label' are in the data's units" in message and "encode" in message
    AFTTrainer(model=student(1, problem_type="regression"), args=config(tmp_path), train_dataset=train,
               eval_dataset=targets.encode(scores.select(range(5)), "eval"), processing_class=tokenizer,
               compute_metrics=compute_metrics_for(targets))  # encoded, even a few shifted rows: accepted


def test_tokenize_beside_features_names_a_missing_text_and_column(tokenizer):
    from hf_aft import tokenize_beside_features

    with pytest.raises(AFTError, match="column 'text' has no text at row 1"):
        tokenize_beside_features(datasets.Dataset.from_dict({"text": ["good", None], "label": [0, 1]}), tokenizer)
    with pytest.raises(AFTError, match="no 'text' column .* pass text_column"):
        tokenize_beside_features(datasets.Dataset.from_dict({"review": ["good"], "label": [0]}), tokenizer)


def test_a_set_with_both_label_and_labels_is_refused(tmp_path, tokenizer, train_set, no_teacher_runs):
    both = train_set.add_column("labels", [0] * len(train_set))
    assert "both 'label' and 'labels' columns" in refusal(tmp_path, tokenizer, train_dataset=both)


def test_an_eval_set_whose_classlabel_orders_the_classes_otherwise_is_scored_by_name(tmp_path, tokenizer, train_set):
    # was silent: id 0 of the eval set ("pos") was scored as the training set's class 0 ("neg")
    train = train_set.cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    swapped = train_set.map(lambda row: {"label": 1 - row["label"]}).cast_column(
        "label", datasets.ClassLabel(names=["pos", "neg"]))  # the same rows, the same meaning
    trainer = AFTTrainer(model=student(), args=config(tmp_path, transfer="none", distill="none"),
                         train_dataset=train, eval_dataset={"same": train, "swapped": swapped},
                         processing_class=tokenizer, compute_metrics=compute_classification_metrics)
    assert trainer.eval_dataset["swapped"]["label"] == train["label"]
    scores = trainer.evaluate()
    assert scores["eval_same_accuracy"] == scores["eval_swapped_accuracy"]
    later = trainer.predict(swapped)  # given after the trainer was built (predict, evaluate): mapped too
    assert list(later.label_ids) == train["label"] and later.metrics["test_accuracy"] == scores["eval_same_accuracy"]
    assert trainer.evaluate(eval_dataset=swapped)["eval_accuracy"] == scores["eval_same_accuracy"]
    other = train_set.cast_column("label", datasets.ClassLabel(names=["neg", "meh"]))
    message = refusal(tmp_path, tokenizer, train_dataset=train, eval_dataset=other)
    assert "names classes ['meh'] that the training split's labels lack" in message


def test_the_command_maps_a_reordered_classlabel_eval_split_by_name(tmp_path):
    from hf_aft.data import load_labelled_splits

    rows = tiny.sentiment_dataset(24)
    train = rows.cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    test = rows.map(lambda row: {"label": 1 - row["label"]}).cast_column(
        "label", datasets.ClassLabel(names=["pos", "neg"]))
    datasets.DatasetDict(train=train, test=test).save_to_disk(str(tmp_path / "data"))
    splits = load_labelled_splits(str(tmp_path / "data"))
    assert splits.eval.features["label"].names == ["neg", "pos"]
    assert splits.eval["label"] == train["label"]
    (tmp_path / "files").mkdir()  # parquet files: datasets reads both with the first one's names (silently wrong)
    train.to_parquet(str(tmp_path / "files" / "train.parquet"))
    test.to_parquet(str(tmp_path / "files" / "test.parquet"))
    with pytest.raises(AFTError, match="the ClassLabel 'label' names its classes .* save both with one ClassLabel"):
        load_labelled_splits(str(tmp_path / "files"))


def test_rows_longer_than_the_students_position_table_are_refused_before_training(tmp_path, tokenizer, train_set):
    # a tokenizer without a real model_max_length left 102 tokens whole: a raw size mismatch inside BERT at step 1
    long = train_set.map(lambda row: tokenizer(" ".join(["good"] * 100)))
    message = refusal(tmp_path, tokenizer, train_dataset=long)
    assert message.startswith("train_dataset has rows of 102 tokens, and the student takes at most 64")
    assert "max_length=64" in message


def test_extract_teacher_features_refuses_a_bad_batch_size_or_device_on_a_cache_hit_too(teacher_dirs, tmp_path):
    """batch_size 0, -1 or 2.5 failed with raw ValueError/IndexError/TypeError on a cache miss and was accepted on a
    hit; a device this machine lacks failed with a raw AssertionError (cuda) or RuntimeError (tpu)."""
    data, teachers = tiny.sentiment_dataset(4), [str(teacher_dirs[0])]
    extract_teacher_features(data, teachers, cache_dir=tmp_path)  # the next calls would read the cache
    absent = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: on a CPU machine, the first
    for option, says in [({"batch_size": 0}, "batch_size must be a whole number >= 1 (got 0)."),
                         ({"batch_size": -1}, "batch_size must be a whole number >= 1 (got -1)."),
                         ({"batch_size": 2.5}, "batch_size must be a whole number >= 1 (got 2.5)."),
                         ({"max_length": 0}, "max_length must be a whole number >= 1 (got 0)."),
                         ({"device": "tpu"}, "device='tpu' is not a torch device: this machine has 'cpu'"),
                         ({"device": absent}, f"device={absent!r} is not available here: this machine has 'cpu'")]:
        with pytest.raises(AFTError) as caught:
            extract_teacher_features(data, teachers, cache_dir=tmp_path, **option)
        assert str(caught.value).startswith(says) and "\n" not in str(caught.value)
    assert extract_teacher_features(data, teachers, cache_dir=tmp_path, device="cpu").column_names[-1] == \
        "teacher_features"


def test_load_student_names_image_column_for_an_image_model_and_takes_a_list_of_class_names(tmp_path, student_dir):
    """An image student without image_column said to install sentencepiece or tiktoken; a list of class names failed
    with "'list' object has no attribute 'id2label'"."""
    from hf_aft import load_student

    vit = tiny.save_image_student(tmp_path / "vit")
    with pytest.raises(AFTError, match=r"is an image model \(vit\): it cannot read text; pass image_column= naming"):
        load_student(str(vit))
    model, _ = load_student(str(student_dir), ["neg", "pos"])
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.num_labels == 2
    with pytest.raises(AFTError, match=r"^labels must be a Labels \(load_labelled_splits\(...\).labels\) or a list of "
                                       "class names, not dict"):
        load_student(str(student_dir), {"neg": 0, "pos": 1})
    with pytest.raises(AFTError, match="^labels name class 'pos' twice"):
        load_student(str(student_dir), ["pos", "neg", "pos"])


def test_save_truncated_student_refuses_image_models_and_layer_counts_that_are_not_whole(tmp_path, teacher_dirs):
    """A ViT (which has num_hidden_layers) was said to have "no layer count"; num_layers=1.5 failed with a raw
    StrictDataclassFieldValidationError."""
    from hf_aft import save_truncated_student

    vit = tiny.save_image_student(tmp_path / "vit")
    with pytest.raises(AFTError, match=r"is an image model \(vit\): image models are not supported"):
        save_truncated_student(vit, tmp_path / "out", num_layers=1)
    for bad in (1.5, 0, -1, True):
        with pytest.raises(AFTError, match=re.escape(f"num_layers must be a whole number >= 1 (got {bad!r}).")):
            save_truncated_student(teacher_dirs[0], tmp_path / "out", num_layers=bad)
    assert not (tmp_path / "out").exists()


def test_a_model_path_or_teacher_infos_of_names_are_refused_in_one_line(tmp_path, tokenizer, train_set,
                                                                         no_teacher_runs):
    """Raw AttributeErrors at targets.py (model="some/path") and in the feature scan (teacher_infos=["x"])."""
    message = refusal(tmp_path, tokenizer, model="some/path", train_dataset=train_set)
    assert message.startswith("AFTTrainer's model must be the student itself (a transformers model), not str: load")
    for infos, kind in ((["x"], "a list holding str"), ("x", "str")):
        with pytest.raises(AFTError, match=re.escape(f"teacher_infos must be a list of TeacherInfo, not {kind}: ")):
            AFTTrainer(model=student(), args=config(tmp_path), train_dataset=train_set, processing_class=tokenizer,
                       teacher_infos=infos)


def test_fold_target_scale_refuses_nan_a_spread_of_zero_and_the_wrong_number_of_values():
    """A NaN mean or a std <= 0 made the head NaN or constant, silently; a wrong length raised a raw RuntimeError."""
    from hf_aft import fold_target_scale

    model = student(2, problem_type="regression")
    before = model.classifier.weight.detach().clone()
    for mean, std, says in [(float("nan"), 1.0, "fold_target_scale's mean must be finite (got [nan])"),
                            (0.0, 0.0, "fold_target_scale's std must be finite and > 0 (got [0.0])"),
                            (0.0, [1.0, -2.0], "fold_target_scale's std must be finite and > 0 (got [1.0, -2.0])"),
                            ([0.0, 1.0, 2.0], 1.0, "fold_target_scale's mean has 3 values for a head of 2 outputs"),
                            ("a", 1.0, "fold_target_scale's mean and std must be numbers")]:
        with pytest.raises(AFTError, match=re.escape(says)):
            fold_target_scale(model, mean, std)
    assert torch.equal(model.classifier.weight, before) and getattr(model.config, "target_std", None) is None
    fold_target_scale(model, [1.0, 2.0], 3.0)  # one std for both outputs, a mean each
    torch.testing.assert_close(model.classifier.weight.detach(), before * 3)


def test_teacher_infos_are_read_from_one_split_and_need_a_width(train_set):
    from hf_aft import TeacherInfo, read_teacher_infos

    for given, kind in ((datasets.DatasetDict({"train": train_set}), "DatasetDict"), ({"a": 1}, "dict")):
        with pytest.raises(AFTError, match=f"^read_teacher_infos' dataset must be a datasets.Dataset, not {kind}: "):
            read_teacher_infos(given)
    assert [info.dim for info in read_teacher_infos(train_set)] == [12, 8]
    for dim in (-1, 0, 1.5):
        with pytest.raises(AFTError, match=re.escape(f"TeacherInfo dim (the teacher's feature width) must be a whole "
                                                     f"number >= 1 (got {dim!r})")):
            TeacherInfo("teacher", "main", "mean", dim, 64)


def test_map_beside_features_keeps_every_row_and_the_features_column(train_set):
    """A function that changed the row count or returned teacher_features, or batched=False, gave raw errors."""
    from hf_aft import map_beside_features

    others = [c for c in train_set.column_names if c != "teacher_features"]
    for call, says in [
        (lambda: map_beside_features(train_set, lambda b: {"text": b["text"][:1]}, remove_columns=others),
         f"made 1 rows of {len(train_set)}: the teacher features are joined back row by row"),
        (lambda: map_beside_features(train_set, lambda b: {"n": [1]}), "changed a batch's number of rows"),
        (lambda: map_beside_features(train_set, lambda b: {"teacher_features": [[0.0]] * len(b["text"])}),
         "returned a 'teacher_features' column"),
    ]:
        with pytest.raises(AFTError) as caught:
            call()
        assert says in str(caught.value) and "\n" not in str(caught.value)
    one_by_one = map_beside_features(train_set, lambda row: {"n": len(row["text"])}, batched=False)
    assert one_by_one["n"] == [len(text) for text in train_set["text"]]
    assert one_by_one["teacher_features"] == train_set["teacher_features"]

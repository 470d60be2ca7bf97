"""Teacher features that travel with the unlabelled rows (a features folder, a column of the user's own) are made
as the labelled rows' are, or the run is refused: the transfer term compares rows of both sets in one batch."""

import pytest
import tiny
from tiny import error_line
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_aft import AFTConfig, AFTTrainer, extract_teacher_features
from hf_aft.commands import main
from hf_aft.errors import AFTError


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny.save_sentiment_files(tmp_path_factory.mktemp("data"), "csv")


@pytest.fixture(scope="module")
def features(teacher_dirs, data, tmp_path_factory):
    """Features folders of the labelled splits and the pool, made with teacher-a's mean and its cls pooling."""
    made = {}
    for pooling in ("mean", "cls"):
        out = tmp_path_factory.mktemp(pooling) / "features"
        assert main(["features", "--teachers", str(teacher_dirs[0]), "--teacher_pooling", pooling, "--dataset_name",
                     str(data / "labelled"), "--unlabeled_dataset", str(data / "pool.csv"), "--output_dir",
                     str(out)]) == 0
        made[pooling] = out
    return made


def train(student_dir, out, *extra):
    return main(["train", "--model_name_or_path", str(student_dir), "--output_dir", str(out), "--max_steps", "1",
                 "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true", *extra])


def test_a_pool_from_another_features_folder_is_refused(student_dir, features, tmp_path, capsys):
    assert train(student_dir, tmp_path / "out", "--dataset_name", str(features["mean"]), "--unlabeled_dataset",
                 str(features["cls"]), "--unlabeled_split", "unlabeled") == 2
    line = error_line(capsys)
    assert "the unlabelled data's teacher features were not made as the labelled data's were" in line
    assert "cls pooling" in line and "mean pooling" in line
    assert "Add --teacher_pooling" not in line  # both sets came with their features: no option of this run helps


def test_a_pool_made_here_beside_a_features_folder_is_told_the_folder_options_and_trains_with_them(
        student_dir, teacher_dirs, data, features, tmp_path, capsys):
    """The labelled rows come from a features folder made with cls pooling, the pool's features are made here with
    the command's (default) options: the refusal names the option that makes them alike, and with it the run trains."""
    args = ["--teachers", str(teacher_dirs[0]), "--dataset_name", str(features["cls"]), "--unlabeled_dataset",
            str(data / "pool.csv")]
    assert train(student_dir, tmp_path / "out", *args) == 2
    assert "Add --teacher_pooling cls (what the labelled data's features were made with)" in error_line(capsys)
    assert train(student_dir, tmp_path / "out", *args, "--teacher_pooling", "cls") == 0


def test_a_pool_made_with_other_options_than_the_command_asks_is_refused(student_dir, teacher_dirs, data, features,
                                                                         tmp_path, capsys):
    assert train(student_dir, tmp_path / "out", "--teachers", str(teacher_dirs[0]), "--teacher_pooling", "cls",
                 "--dataset_name", str(data / "labelled"), "--unlabeled_dataset", str(features["mean"]),
                 "--unlabeled_split", "unlabeled") == 2
    assert "made with mean pooling, not the --teacher_pooling cls given" in error_line(capsys)


def test_a_pool_from_its_own_features_folder_trains(student_dir, features, tmp_path):
    assert train(student_dir, tmp_path / "out", "--dataset_name", str(features["cls"]), "--unlabeled_dataset",
                 str(features["cls"]), "--unlabeled_split", "unlabeled") == 0


def test_the_trainer_refuses_a_pool_whose_features_another_pooling_made(student_dir, teacher_dirs, tmp_path):
    train_set, pool = tiny.sentiment_dataset(16, seed=0), tiny.sentiment_dataset(8, seed=2).remove_columns("label")
    train_set = extract_teacher_features(train_set, [str(teacher_dirs[0])], pooling="mean")
    pool = extract_teacher_features(pool, [str(teacher_dirs[0])], pooling="cls")
    model = AutoModelForSequenceClassification.from_pretrained(str(student_dir))
    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    train_set, pool = (d.map(lambda b: tokenizer(b["text"], truncation=True), batched=True) for d in (train_set, pool))
    with pytest.raises(AFTError, match="cls pooling"):
        AFTTrainer(model=model, args=AFTConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True),
                   train_dataset=train_set, unlabeled_dataset=pool, processing_class=tokenizer)


def test_own_features_of_another_width_in_the_pool_are_named_as_the_pool(student_dir, tmp_path, capsys):
    """Features of the user's own on both sides (no teachers recorded), 12 wide in the labelled data and 20 in the
    pool: the refusal named a placeholder teacher "teacher (12)"; now both sets and both widths."""
    (tmp_path / "labelled").mkdir()
    for split, n, seed in (("train", 16, 0), ("test", 8, 1)):
        rows = tiny.sentiment_dataset(n, seed=seed)
        rows.add_column("teacher_features", [[0.1 * i] * 12 for i in range(n)]).to_json(
            tmp_path / "labelled" / f"{split}.jsonl")
    pool = tiny.sentiment_dataset(8, seed=2).remove_columns("label")
    pool.add_column("teacher_features", [[0.2] * 20] * 8).to_json(tmp_path / "pool.jsonl")
    assert train(student_dir, tmp_path / "out", "--dataset_name", str(tmp_path / "labelled"), "--unlabeled_dataset",
                 str(tmp_path / "pool.jsonl")) == 2
    line = error_line(capsys)
    assert "the unlabelled data's teacher features were not made as the labelled data's were" in line
    assert "a 20-wide teacher_features column of its own" in line and "against a 12-wide" in line

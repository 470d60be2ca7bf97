"""`hf-aft features`: features computed once, saved with the dataset, and trained on without any teacher."""

import json

import datasets
import pytest
import tiny

import hf_aft.teachers
from hf_aft.commands import main


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "sentiment"
    datasets.DatasetDict({"train": tiny.sentiment_dataset(32, seed=0),
                          "test": tiny.sentiment_dataset(16, seed=1)}).save_to_disk(folder)
    return folder


def train_args(student_dir, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--max_steps", "3", "--report_to", "none", "--use_cpu", "true",
            "--disable_tqdm", "true", *extra]


def test_features_saved_once_train_anywhere_without_teachers(teacher_dirs, student_dir, data_dir, tmp_path,
                                                             monkeypatch, capsys):
    features = tmp_path / "features"
    assert main(["features", "--teachers", *map(str, teacher_dirs), "--dataset_name", str(data_dir),
                 "--output_dir", str(features), "--teacher_feature_dtype", "float16"]) == 0
    assert "teacher features in: train (the other splits are read raw)" in capsys.readouterr().out
    saved = datasets.load_from_disk(str(features))
    assert saved["train"].features["teacher_features"].feature.dtype == "float16"
    assert len(saved["train"][0]["teacher_features"]) == 12 + 8 and "teacher_features" not in saved["test"].features
    provenance = json.loads((features / "teachers.json").read_text())
    assert [t["dim"] for t in provenance["teachers"]] == [12, 8]
    assert all(t["revision"].startswith("local-") for t in provenance["teachers"])

    def no_teacher(*args, **kwargs):
        raise AssertionError("training loaded a teacher")

    monkeypatch.setattr(hf_aft.teachers.TextTeacher, "load", no_teacher)
    out = tmp_path / "student"
    assert main(train_args(student_dir, features, out)) == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert [t["revision"] for t in summary["teachers"]] == [t["revision"] for t in provenance["teachers"]]
    assert set(summary["scales"]) == {"teacher-a", "teacher-b"}  # the scales are reported per teacher by name
    # the cost table's teacher rows are dashes: the printed summary (and the card) says why, not only the JSON
    cost = json.loads((out / "cost_report.json").read_text())
    assert any("features came with the dataset: the teacher was not loaded" in line for line in cost["summary"])


def test_features_refuse_an_unlabeled_split_without_a_pool(teacher_dirs, data_dir, tmp_path, capsys):
    # accepted and ignored, where hf-aft train refuses it
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data_dir),
                 "--unlabeled_split", "foo", "--output_dir", str(tmp_path / "features")]) == 2
    assert "--unlabeled_split foo is the split of --unlabeled_dataset" in tiny.error_line(capsys)
    assert not (tmp_path / "features").exists()
    # --label_column names the column dropped from the pool's rows: without a pool it was read nowhere
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data_dir),
                 "--label_column", "sentiment", "--output_dir", str(tmp_path / "features")]) == 2
    assert "--label_column sentiment names the label column dropped from" in tiny.error_line(capsys)
    assert not (tmp_path / "features").exists()


def test_features_of_other_teachers_are_refused(teacher_dirs, student_dir, data_dir, tmp_path, capsys):
    features = tmp_path / "features"
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data_dir),
                 "--output_dir", str(features)]) == 0
    assert main(train_args(student_dir, features, tmp_path / "out", "--teachers", str(teacher_dirs[1]))) == 2
    assert "already carries the features of" in capsys.readouterr().err
    # A pool of another teacher's features beside raw labelled rows: dropping --teachers would leave the labelled
    # rows without features, so the advice names the pool's teachers, and following it trains.
    datasets.DatasetDict({"train": tiny.sentiment_dataset(16, seed=7)}).save_to_disk(tmp_path / "texts")
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(tmp_path / "texts"),
                 "--output_dir", str(tmp_path / "pool")]) == 0
    with_pool = train_args(student_dir, data_dir, tmp_path / "out2", "--unlabeled_dataset", str(tmp_path / "pool"))
    assert main([*with_pool, "--teachers", str(teacher_dirs[1])]) == 2
    advice = capsys.readouterr().err.split("pass those teachers (")[1].split(")")[0].split()
    assert advice == ["--teachers", str(teacher_dirs[0])]
    assert main([*with_pool, *advice]) == 0
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data_dir),
                 "--output_dir", str(features)]) == 2  # never overwrites without --overwrite_output_dir
    assert "already holds files" in capsys.readouterr().err
    assert main(["features", "--dataset_name", str(data_dir), "--output_dir", str(tmp_path / "x")]) == 2
    assert "--teachers is required" in capsys.readouterr().err
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data_dir), "--splits", "dev",
                 "--output_dir", str(tmp_path / "y")]) == 2
    assert "split 'dev' not found; the dataset has splits" in capsys.readouterr().err


def test_features_of_another_pooling_are_refused_where_a_pooling_is_asked_for(teacher_dirs, student_dir, data_dir,
                                                                              tmp_path, capsys):
    """Features made with mean pooling, trained with `--teachers T --teacher_pooling cls`: they were trained on as
    if they were cls features (exit 0, the card naming mean). Refused for the labelled data and for a pool; the same
    pooling, or none asked, uses them."""
    features = tmp_path / "features"
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data_dir),
                 "--output_dir", str(features)]) == 0
    teacher = ["--teachers", str(teacher_dirs[0])]
    datasets.DatasetDict({"train": tiny.sentiment_dataset(16, seed=7)}).save_to_disk(tmp_path / "texts")
    assert main(["features", *teacher, "--dataset_name", str(tmp_path / "texts"), "--output_dir",
                 str(tmp_path / "pool")]) == 0
    pool = ["--unlabeled_dataset", str(tmp_path / "pool")]
    for n, extra in enumerate([[], pool]):
        labelled = features if not extra else data_dir  # the pool's features come with it; the labelled are made
        out = tmp_path / f"cls-{n}"
        assert main(train_args(student_dir, labelled, out, *teacher, "--teacher_pooling", "cls", *extra)) == 2
        assert "made with mean pooling, not the --teacher_pooling cls given" in tiny.error_line(capsys)
        assert not out.exists() or not any(out.iterdir())
    for pooling in (["--teacher_pooling", "mean"], []):
        assert main(train_args(student_dir, features, tmp_path / f"ok{len(pooling)}", *teacher, *pooling)) == 0


def test_features_of_longer_texts_than_a_teacher_max_length_given_are_refused(teacher_dirs, student_dir, data_dir,
                                                                                tmp_path, capsys, caplog):
    """Features made at --teacher_max_length 48, trained with --teacher_max_length 8 given: the 48 was used without
    a word. Refused; left out (the default), or at least the stored length, uses them (a longer one with a warning:
    the stored length may be the teacher's own limit, or a shorter request)."""
    features = tmp_path / "features"
    teacher = ["--teachers", str(teacher_dirs[0])]
    assert main(["features", *teacher, "--teacher_max_length", "48", "--dataset_name", str(data_dir),
                 "--output_dir", str(features)]) == 0
    out = tmp_path / "short"
    assert main(train_args(student_dir, features, out, *teacher, "--teacher_max_length", "8")) == 2
    assert "made from texts of up to 48 tokens, not the --teacher_max_length 8 given" in tiny.error_line(capsys)
    for length in ([], ["--teacher_max_length", "64"]):
        caplog.clear()
        with caplog.at_level("WARNING"):
            assert main(train_args(student_dir, features, tmp_path / f"ok{len(length)}", *teacher, *length)) == 0
        warned = "up to 48 tokens, and --teacher_max_length 64 was given: they are used as they are" in caplog.text
        assert warned == bool(length)


def test_a_features_column_the_teachers_did_not_make_is_never_taken_for_theirs(teacher_dirs, student_dir, data_dir,
                                                                                 tmp_path, capsys):
    """A `teacher_features` column in the user's own data (text, or numbers of the right width with no record of
    the teachers) is refused when teachers are given, for the labelled and the unlabelled data, in every command
    that makes features: it was trained on as the teachers' output, or broke the run with a pyarrow traceback."""
    teachers = ["--teachers", *map(str, teacher_dirs)]
    texts = tiny.sentiment_dataset(12, seed=5).remove_columns("label")
    own = {"strings": texts.add_column("teacher_features", ["0.5 0.5"] * 12),
           "numbers": texts.add_column("teacher_features", [[0.5] * 20] * 12)}  # the teachers' width, made up
    for kind, pool in own.items():
        pool.to_json(tmp_path / f"{kind}.jsonl")
        expected = "holds string, not lists of numbers" if kind == "strings" else "no record of the teachers"
        runs = [train_args(student_dir, data_dir, tmp_path / f"out-{kind}", *teachers, "--unlabeled_dataset",
                           str(tmp_path / f"{kind}.jsonl")),
                ["features", *teachers, "--dataset_name", str(data_dir), "--unlabeled_dataset",
                 str(tmp_path / f"{kind}.jsonl"), "--output_dir", str(tmp_path / f"features-{kind}")]]
        for args in runs:
            assert main(args) == 2
            err = capsys.readouterr().err
            assert err.count("hf-aft: error:") == 1 and "unlabelled" in err and expected in err, err
            assert "Traceback" not in err and not (tmp_path / f"out-{kind}").exists()
    labelled = datasets.load_from_disk(str(data_dir))
    labelled["train"] = labelled["train"].add_column("teacher_features", [[0.5] * 20] * 32)
    labelled.save_to_disk(tmp_path / "labelled")
    assert main(train_args(student_dir, tmp_path / "labelled", tmp_path / "out", *teachers)) == 2
    assert "training dataset already has a 'teacher_features' column" in capsys.readouterr().err
    assert main(train_args(student_dir, tmp_path / "labelled", tmp_path / "out")) == 0  # no teachers: used as given


def test_features_on_a_words_column_says_what_reads_word_lists(teacher_dirs, tmp_path, capsys):
    """CoNLL-style data given to `hf-aft features`: the refusal told the user to choose the column they had chosen."""
    words = datasets.Dataset.from_dict({"tokens": [["good", "movie"], ["bad", "plot"]] * 4,
                                        "ner_tags": [[0, 1], [1, 0]] * 4})
    datasets.DatasetDict(train=words, test=words).save_to_disk(tmp_path / "ner")
    assert main(["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(tmp_path / "ner"),
                 "--text_column", "tokens", "--output_dir", str(tmp_path / "feats")]) == 2
    line = tiny.error_line(capsys)
    assert "column 'tokens' holds List(Value('string'))" in line and "hf-aft train --text_column WORDS" in line, line
    assert "choose the text column" not in line


def test_features_of_a_teacher_changed_since_are_refused_and_not_hashed_as_its(student_dir, data_dir, tmp_path,
                                                                                capsys):
    """A local teacher re-saved with other weights after `hf-aft features`: train with --teachers naming it used the
    old features silently, audit.json paired their revision with the new files' sha256, and check-updates --retrain
    "retrained" on the same stored features (a bit-identical student reported as the new teacher's)."""
    teacher = tiny.save_teacher(tmp_path / "t", hidden=12, seed=0)
    features = tmp_path / "features"
    assert main(["features", "--teachers", str(teacher), "--dataset_name", str(data_dir),
                 "--output_dir", str(features)]) == 0
    assert main(train_args(student_dir, features, tmp_path / "same", "--teachers", str(teacher))) == 0  # unchanged
    stored = json.loads((tmp_path / "same" / "audit.json").read_text())["teachers"][0]
    assert "model.safetensors" in stored["weight_files"]
    tiny.save_teacher(teacher, hidden=12, seed=9)  # retrained in place
    assert main(train_args(student_dir, features, tmp_path / "out", "--teachers", str(teacher))) == 2
    assert f"features of {teacher} were made from its revision {stored['resolved_revision']}, and {teacher} is now " \
           "local-v2-" in tiny.error_line(capsys)
    assert not (tmp_path / "out").exists()
    assert main(train_args(student_dir, features, tmp_path / "as-stored")) == 0  # without --teachers: as they are
    record = json.loads((tmp_path / "as-stored" / "audit.json").read_text())["teachers"][0]
    assert record["resolved_revision"] == stored["resolved_revision"] and "weight_files" not in record
    assert "weight files not hashed: " in record["note"] and "(changed since)" in record["note"]
    capsys.readouterr()
    assert main(["check-updates", str(tmp_path / "same"), "--retrain", str(tmp_path / "new")]) == 2
    assert "it changed since, so they are not its features" in tiny.error_line(capsys)
    assert not (tmp_path / "new" / "model.safetensors").exists()


def test_a_missing_text_column_is_named_in_the_commands_flag_as_train_names_it(teacher_dirs, student_dir, data_dir,
                                                                                tmp_path, capsys):
    """`hf-aft features --text_column body` said `Pass text_column=... (--text_column)`, the Python keyword, where
    `hf-aft train` says `Pass --text_column text`."""
    argv = ["--dataset_name", str(data_dir), "--text_column", "body"]
    assert main(["features", "--teachers", str(teacher_dirs[0]), *argv, "--output_dir", str(tmp_path / "f")]) == 2
    features = tiny.error_line(capsys)
    assert main(train_args(student_dir, data_dir, tmp_path / "o", "--teachers", str(teacher_dirs[0]), *argv)) == 2
    train = tiny.error_line(capsys)
    assert features == train and "Pass --text_column text." in features and "text_column=" not in features
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("command", ["train", "features", "rank-teachers", "distill_teacher"])
def test_a_folder_without_weights_is_named_with_the_way_out(command, teacher_dirs, student_dir, data_dir, tmp_path,
                                                            capsys):
    """`teacher folder 'notamodel' holds no weight files (...)` named no way out."""
    folder = tmp_path / "notamodel"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    given = ["--dataset_name", str(data_dir), "--output_dir", str(tmp_path / "out")]
    argv = {"train": train_args(student_dir, data_dir, tmp_path / "out", "--teachers", str(folder)),
            "features": ["features", "--teachers", str(folder), *given],
            "rank-teachers": ["rank-teachers", "--teachers", str(folder), *given],
            "distill_teacher": train_args(student_dir, data_dir, tmp_path / "out", "--teachers", str(teacher_dirs[0]),
                                          "--distill_teacher", str(folder))}[command]
    assert main(argv) == 2
    line = tiny.error_line(capsys)
    assert f"folder '{folder}' holds no weight files" in line, line
    assert line.endswith("check the path: give the folder that holds the model's weights and config.json."), line

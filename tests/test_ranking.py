"""Teacher ranking: LogME and probe scores, the rank-teachers command, and that it shares training's feature cache."""

import json
import os
from unittest import mock

import numpy as np
import pytest
import tiny

from hf_aft import AFTError
from hf_aft.commands import main
from hf_aft.ranking import logme, probe_accuracy
from hf_aft.teachers import TextTeacher as _Teacher


def direct_log_evidence(f, y, alpha, beta):
    """log N(y | 0, F F^T / alpha + I / beta) / N, with no SVD: what LogME maximises over alpha and beta."""
    n = len(y)
    cov = f @ f.T / alpha + np.eye(n) / beta
    _, logdet = np.linalg.slogdet(cov)
    return -(logdet + y @ np.linalg.solve(cov, y) + n * np.log(2 * np.pi)) / 2 / n


@pytest.mark.parametrize("n,d", [(60, 5), (20, 40)])  # more examples than features, and fewer
def test_logme_is_the_maximised_evidence_of_bayesian_linear_regression(n, d):
    rng = np.random.default_rng(0)
    f = rng.normal(size=(n, d))
    labels = (f[:, 0] + 0.5 * rng.normal(size=n) > 0).astype(int)
    grid = np.exp(np.linspace(-12, 12, 97))
    per_class = [max(direct_log_evidence(f, (labels == c).astype(float), a, b) for a in grid for b in grid)
                 for c in (0, 1)]
    assert logme(f, labels) == pytest.approx(np.mean(per_class), abs=2e-3)
    assert logme(f, labels) >= np.mean(per_class) - 1e-6  # a maximum, not a point on the grid


def test_informative_features_score_higher_than_noise_on_both_scores():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 40)
    informative = np.eye(3)[labels] @ rng.normal(size=(3, 16)) + 0.5 * rng.normal(size=(120, 16))
    noise = rng.normal(size=(120, 16))
    assert logme(informative, labels) > logme(noise, labels) + 0.1
    assert probe_accuracy(informative, labels)[0] > 0.9 > 0.6 > probe_accuracy(noise, labels)[0]
    with pytest.raises(AFTError, match="fewer than the probe's 5 folds"):
        probe_accuracy(noise[:8], np.array([0, 0, 0, 0, 0, 1, 1, 1]))


def test_the_ranking_probe_is_the_probe_training_reports_not_one_at_c_1():
    """Rank's probe was logistic regression at C = 1 while `hf-aft train` chose C by cross-validation: at rows ~
    features C = 1 overfits, so rank understated a wide teacher (mpnet on 2,000 Rotten Tomatoes texts: 0.782
    against 0.847)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from hf_aft.distillation import fit_probe, probe_at

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)  # 5 folds of 10 + 10 rows: the folds' mean is the out-of-fold accuracy
    features = rng.normal(size=(100, 90)) + 0.35 * labels[:, None] * (np.arange(90) < 30)
    mean, _ = probe_accuracy(features, labels)
    assert mean == pytest.approx(fit_probe(features, labels, features[:0], num_classes=2).accuracy)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    at_c_1 = cross_val_score(probe_at(1.0), features, labels, cv=folds).mean()
    assert mean > at_c_1 + 0.05


def test_rank_teachers_scores_teachers_and_student_and_training_reuses_the_features(
        student_dir, teacher_dirs, tmp_path, capsys):
    data = tmp_path / "train.csv"
    tiny.sentiment_dataset(30).to_csv(data)
    out = tmp_path / "ranked" / "ranking.json"  # not beside the data file: rank-teachers reads that folder
    teachers = [str(d) for d in teacher_dirs]
    with mock.patch.object(_Teacher, "load", autospec=True, side_effect=_Teacher.load) as load:
        assert main(["rank-teachers", "--teachers", *teachers, "--model_name_or_path", str(student_dir),
                     "--dataset_name", str(data), "--folds", "3", "--output_file", str(out)]) == 0
    assert load.call_count == 3  # two teachers and the student, once each
    printed = capsys.readouterr().out
    assert "teacher-a" in printed and "(student)" in printed and "LogME" in printed
    rows = json.loads(out.read_text())["rows"]
    assert sorted(r["name"] for r in rows) == sorted([*teachers, str(student_dir)])
    assert [r["logme"] for r in rows] == sorted((r["logme"] for r in rows), reverse=True)
    assert {r["role"] for r in rows} == {"teacher", "student"}
    assert all(0 <= r["probe_accuracy"] <= 1 and r["width"] in (12, 8, 16) and not r["cached"] for r in rows)

    # Training with both teachers afterwards loads none of them: the features come from ranking's cache.
    # (the cost report at the end of a run loads each teacher once to time it: skipped here)
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher was run again")):
        assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
                     *reversed(teachers), "--output_dir", str(tmp_path / "student"), "--max_steps", "1",
                     "--per_device_train_batch_size", "8", "--report_to", "none", "--use_cpu", "true",
                     "--disable_tqdm", "true", "--skip_cost_report", "true"]) == 0


@pytest.mark.parametrize("where", ["teacher", "inside teacher", "student", "data folder", "finished run",
                                   "features", "file in teacher", "inside run", "inside features",
                                   "data file's folder", "data glob's folder", "data files' folder"])
def test_rank_teachers_writes_into_no_folder_it_reads_nor_a_run(where, teacher_dirs, student_dir, tmp_path, capsys):
    """As train and features refuse such an output dir: teacher_ranking.json in a teacher's folder changed its content
    hash (every run made from it then reported the teacher changed), and in a finished run `hf-aft audit` failed
    ("added teacher_ranking.json")."""
    import shutil

    teacher = tmp_path / "teacher"
    shutil.copytree(teacher_dirs[0], teacher)
    (tmp_path / "data").mkdir()
    tiny.sentiment_dataset(30).to_csv(tmp_path / "data" / "train.csv")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "hf_aft_complete.json").write_text("{}")
    (tmp_path / "feats").mkdir()
    (tmp_path / "feats" / "dataset_dict.json").write_text("{}")
    (tmp_path / "feats" / "teachers.json").write_text("{}")  # as hf-aft features writes it
    (tmp_path / "project").mkdir()  # above the output, a config.json alone may be anyone's: accepted below
    (tmp_path / "project" / "config.json").write_text("{}")
    target = {"teacher": ["--output_dir", teacher], "inside teacher": ["--output_dir", teacher / "ranked"],
              "student": ["--output_dir", student_dir], "data folder": ["--output_dir", tmp_path / "data"],
              "finished run": ["--output_dir", tmp_path / "run"], "features": ["--output_dir", tmp_path / "feats"],
              "file in teacher": ["--output_file", teacher / "ranking.json"],
              "inside run": ["--output_dir", tmp_path / "run" / "sub"],  # its audit found sub/teacher_ranking.json
              "inside features": ["--output_file", tmp_path / "feats" / "sub" / "ranking.json"],
              "data file's folder": ["--output_dir", tmp_path / "data"], "data glob's folder": ["--output_dir",
                                                                                                tmp_path / "data"],
              "data files' folder": ["--output_dir", tmp_path / "data"]}[where]
    (tmp_path / "data" / "test.csv").write_text((tmp_path / "data" / "train.csv").read_text())
    dataset = {"data file's folder": str(tmp_path / "data" / "train.csv"),  # a later --dataset_name data read it
               "data glob's folder": str(tmp_path / "data" / "*.csv"),
               "data files' folder": f"{tmp_path / 'data' / 'train.csv'},{tmp_path / 'data' / 'test.csv'}"}
    before = sorted(p.name for p in target[1].parent.iterdir()) if target[1].parent.exists() else []
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher ran")):
        assert main(["rank-teachers", "--teachers", str(teacher), "--model_name_or_path", str(student_dir),
                     "--dataset_name", dataset.get(where, str(tmp_path / "data")), "--folds", "3", target[0],
                     str(target[1])]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(err) == 1 and f"choose a {target[0]} outside it" in err[0], err
    apart = ("finished run", "features", "inside run", "inside features")
    assert ("which this command reads" in err[0]) == (where not in apart), err[0]
    assert ("is inside" in err[0] and "which holds" in err[0]) == (where in ("inside run", "inside features")), err[0]
    if not target[1].parent.exists():
        assert not (tmp_path / "run" / "sub").exists() and not (tmp_path / "feats" / "sub").exists()
        return
    from types import SimpleNamespace

    from hf_aft.commands.rank_teachers import _check_output_apart

    args = SimpleNamespace(output_file=None, output_dir=str(tmp_path / "project" / "ranked"), model_name_or_path=None,
                           dataset_name=str(tmp_path / "data"))
    _check_output_apart(str(tmp_path / "project" / "ranked" / "teacher_ranking.json"), args, [str(teacher)])
    assert sorted(p.name for p in target[1].parent.iterdir()) == before
    assert not (teacher / "ranked").exists()


def test_rank_teachers_refuses_too_few_examples_per_class_before_running_a_teacher(teacher_dirs, tmp_path, capsys):
    data = tmp_path / "train.csv"
    tiny.sentiment_dataset(8).map(lambda row: {"label": ["rotten", "fresh"][row["label"]]}).to_csv(data)  # 4 each
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher ran")):
        assert main(["rank-teachers", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data),
                     "--output_dir", str(tmp_path / "ranked")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(err) == 1 and "fewer than the probe's 5 folds" in err[0] and "--folds" in err[0]
    assert "class 'fresh' has 4 examples" in err[0] or "class 'rotten' has 4 examples" in err[0], err[0]


def test_rank_teachers_takes_problem_type_as_train_does(teacher_dirs, tmp_path, capsys):
    # integer targets holding -1 were refused with advice to pass --problem_type, which rank-teachers lacked
    data = tmp_path / "train.csv"
    tiny.sentiment_dataset(24).map(lambda row, i: {"label": i % 7 - 1}, with_indices=True).to_csv(data)
    assert main(["rank-teachers", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data),
                 "--output_dir", str(tmp_path / "refused")]) == 2
    assert "pass --problem_type regression" in capsys.readouterr().err
    assert main(["rank-teachers", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data),
                 "--problem_type", "regression", "--folds", "3", "--output_dir", str(tmp_path / "ranked")]) == 0
    ranking = json.loads((tmp_path / "ranked" / "teacher_ranking.json").read_text())
    assert "pearson" in json.dumps(ranking).lower()


def test_rank_teachers_scores_image_teachers_and_an_image_student(tmp_path, capsys):
    import datasets

    teacher = tiny.save_image_teacher(tmp_path / "image-teacher")
    student = tiny.save_image_student(tmp_path / "image-student", "resnet")
    datasets.DatasetDict({"train": tiny.image_dataset(24)}).save_to_disk(str(tmp_path / "images"))
    out = tmp_path / "ranking.json"
    assert main(["rank-teachers", "--teachers", str(teacher), "--model_name_or_path", str(student), "--dataset_name",
                 str(tmp_path / "images"), "--image_column", "image", "--folds", "3", "--output_file", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted(r["role"] for r in rows) == ["student", "teacher"]
    assert all(0 <= r["probe_accuracy"] <= 1 and np.isfinite(r["logme"]) and r["width"] > 0 for r in rows)
    assert "(student)" in capsys.readouterr().out


def test_a_mistyped_student_is_named_before_any_teacher_runs(teacher_dirs, tmp_path, capsys, monkeypatch):
    """As `hf-aft train` does: rank-teachers ran the teachers first and then called a mistyped student a teacher;
    `hf-aft student --from` spoke only of the network. Both say it is not a local folder: check the path."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "train.csv"
    tiny.sentiment_dataset(24).to_csv(data)
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher ran")):
        assert main(["rank-teachers", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data),
                     "--model_name_or_path", "student-3", "--output_dir", str(tmp_path / "ranked")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(err) == 1 and "the student 'student-3': not a local folder (check the path)" in err[0]
    assert main(["student", "--from", "student-3", "--num_layers", "1", "--output_dir", str(tmp_path / "s")]) == 2
    assert "could not load 'student-3': not a local folder (check the path)" in capsys.readouterr().err


@pytest.mark.parametrize("folder", ["empty", "no weights"])
def test_a_student_folder_without_weights_is_named_with_its_flag_and_the_way_out(folder, student_dir, teacher_dirs,
                                                                                  tmp_path, capsys):
    """`hf-aft student --from` a folder with a config and no weights ended in an OSError traceback; train showed
    transformers' "Unrecognized model" or "no file named model.safetensors"; rank-teachers called it a teacher."""
    import shutil

    source = tmp_path / folder
    source.mkdir()
    if folder == "no weights":
        for name in os.listdir(student_dir):
            if not name.endswith((".safetensors", ".bin")):
                shutil.copy(student_dir / name, source / name)
    data = tmp_path / "data" / "train.csv"
    data.parent.mkdir()
    tiny.sentiment_dataset(24).to_csv(data)
    way_out = "check the path: give the folder that holds the model's weights and config.json, or a Hub id."
    commands = {"--model_name_or_path": [
        ["train", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data), "--max_steps", "1",
         "--report_to", "none", "--use_cpu", "true", "--output_dir", str(tmp_path / "run")],
        ["rank-teachers", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(data), "--folds", "3",
         "--output_dir", str(tmp_path / "ranked")]],
        "--from": [["student", "--num_layers", "1", "--output_dir", str(tmp_path / "small")]]}
    for flag, argvs in commands.items():
        for argv in argvs:
            with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher ran")):
                assert main([*argv, flag, str(source)]) == 2, argv
            err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
            assert len(err) == 1 and f"{flag} {str(source)!r}" in err[0] and err[0].endswith(way_out), err
            assert "teacher" not in err[0].split(":")[2] and "holds no weight files" in err[0], err[0]
    assert not (tmp_path / "small").exists() or not os.listdir(tmp_path / "small")


def test_a_teacher_that_cannot_be_found_is_named_before_any_teacher_runs_and_leaves_no_folder(teacher_dirs, tmp_path,
                                                                                            capsys):
    """The first teacher's features were made before the second, unknown one was refused, and the --output_dir
    made for the ranking was left behind empty."""
    data = tmp_path / "train.csv"
    tiny.sentiment_dataset(24).to_csv(data)
    out = tmp_path / "ranking"
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher ran")):
        assert main(["rank-teachers", "--teachers", str(teacher_dirs[0]), "no-org/no-such-teacher", "--dataset_name",
                     str(data), "--output_dir", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(err) == 1 and "could not resolve teacher 'no-org/no-such-teacher'" in err[0]
    assert not out.exists()


def test_rank_teachers_reads_a_label_column_by_name_or_a_labels_object_as_arrays(teacher_dirs, tmp_path):
    """A column's name and a Labels gave "the probe needs at least 2 classes": they are read as the CLI reads them."""
    from hf_aft import Labels, TeacherArguments, rank_teachers

    data, teacher = tiny.sentiment_dataset(24), [str(teacher_dirs[0])]
    data = data.add_column("score", [label + 0.25 * (i % 4) for i, label in enumerate(data["label"])])

    def rank(labels, **kwargs):
        return rank_teachers(data, labels, teacher, TeacherArguments(), folds=3, cache_dir=tmp_path, **kwargs)[0]

    by_ids = rank(np.asarray(data["label"]))
    for labels in ("label", Labels.from_dataset(data, "label")):
        row = rank(labels)
        assert row["probe_metric"] == "accuracy" and row["logme"] == pytest.approx(by_ids["logme"])
        assert row["probe_score"] == pytest.approx(by_ids["probe_score"])
    assert rank("score")["probe_metric"] == "pearson"  # a float column: a regression, as the CLI infers it
    with pytest.raises(AFTError, match="problem_type='regression', but the labels are single_label_classification"):
        rank(Labels.from_dataset(data, "label"), problem_type="regression")


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda d, y: dict(labels=y[:10]), "labels has 10 rows and the dataset 24: give one label per row"),
    (lambda d, y: dict(labels="stars"), "labels='stars' names no column of the dataset"),
    (lambda d, y: dict(folds=1), "folds must be a whole number >= 2 (got 1)"),
    (lambda d, y: dict(labels=y + 0.5), "labels hold fractional numbers, not class ids: pass problem_type='regre"),
    (lambda d, y: dict(labels=np.where(np.arange(24) == 3, np.nan, y + 0.1), problem_type="regression"),
     "labels hold NaN or inf (first at row 3)"),
    (lambda d, y: dict(labels=np.eye(2)[y]), "not one class id per row: pass problem_type='multi_label_classif"),
    (lambda d, y: dict(labels=y, problem_type="multi_label_classification"), "multi-hot rows [rows, classes]"),
    (lambda d, y: dict(labels=y, problem_type="ordinal"), "unknown problem_type 'ordinal'"),
    (lambda d, y: dict(dataset=__import__("datasets").DatasetDict({"train": d})),
     "rank_teachers' dataset must be a datasets.Dataset, not DatasetDict: give one split of it"),
    (lambda d, y: dict(teachers=[]), "teachers must list at least one teacher"),
    (lambda d, y: dict(teachers=[None]), "to rank; got [None]"),
    (lambda d, y: dict(labels=None), "labels is missing or a single value: give one label per row"),
])
def test_rank_teachers_refuses_what_its_probe_cannot_score_before_any_teacher_runs(teacher_dirs, change, fragment):
    from hf_aft import TeacherArguments, rank_teachers

    data = tiny.sentiment_dataset(24)
    given = {"dataset": data, "labels": np.asarray(data["label"]), "teachers": [str(teacher_dirs[0])],
             **change(data, np.asarray(data["label"]))}
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("a teacher ran")), \
            pytest.raises(AFTError) as caught:
        rank_teachers(given.pop("dataset"), given.pop("labels"), given.pop("teachers"), TeacherArguments(), **given)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)

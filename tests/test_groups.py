"""Per-group results (`--group_column`): the pure functions of groups.py against figures computed by hand, a planted
group effect found among noise, inherited errors, and the whole path through `hf-aft train` with tiny models
(eval_predictions.json, group_report.json, eval_results.json, the card, the printed lines, audit.json), its one-line
refusals before any teacher runs, and a baseline run that kept no predictions."""

import contextlib
import io
import json
import math
import shutil
from unittest import mock

import datasets
import numpy as np
import pytest
import tiny
from test_hub import one_error_line

from hf_aft.commands import main
from hf_aft.group_report import flag_lines, group_report, summary_lines
from hf_aft.groups import ALPHA, OTHER, group_results, group_values, inherited_errors

TEACHER_RUNS = "hf_aft.training_rows.with_word_or_teacher_features"  # the path hf-aft train's teachers run by

approx = pytest.approx


# ---- 1. a fixed prediction set, by hand ----
def hand_case():
    """big: 10 rows, the baseline right on all, the model on 2 (0 won, 8 lost); mid: 6 rows, classes 0 and 1 only
    (the model once says 2), 2 won, 1 lost; t (2 rows) and a missing value (1 row) are pooled into "other" at
    min_rows 4, where the model is wrong on all 3 rows and the baseline right. Rows interleaved."""
    cases = [  # group, label, prediction, baseline
        *[("big", label, pred, label) for label, pred in zip([0, 0, 0, 0, 0, 1, 1, 1, 1, 1],
                                                            [1, 1, 1, 1, 0, 0, 0, 0, 0, 1], strict=True)],
        *[("mid", label, pred, base) for label, pred, base in zip([0, 0, 0, 1, 1, 1], [0, 0, 2, 1, 1, 0],
                                                                  [0, 1, 1, 1, 0, 1], strict=True)],
        ("t", 1, 0, 1), ("t", 0, 1, 0), (None, 0, 1, 0),
    ]
    order = np.random.default_rng(0).permutation(len(cases))
    group, labels, predictions, baseline = zip(*(cases[i] for i in order), strict=True)
    return list(group), np.array(labels), np.array(predictions), np.array(baseline)


def test_group_results_match_a_hand_computation():
    raw_groups, labels, predictions, baseline = hand_case()
    groups = group_values(raw_groups)
    assert "(missing)" in groups and groups.dtype.kind == "U"
    result = group_results(predictions, labels, groups, baseline, min_rows=4)

    assert list(result["groups"]) == ["big", "mid", OTHER]  # largest first, "other" last
    assert result["pooled"] == ["(missing)", "t"]
    big, mid, other = (result["groups"][n] for n in ("big", "mid", OTHER))
    # big: accuracy 2/10; macro-F1: each class has TP 1, FP 4, FN 4 -> 2/10; 0 wins, 8 losses: p = 2 * 0.5**8
    assert big == approx({"rows": 10, "accuracy": 0.2, "accuracy_se": math.sqrt(0.2 * 0.8 / 10), "macro_f1": 0.2,
                          "baseline_accuracy": 1.0, "change": -0.8, "wins": 0, "losses": 8,
                          "p_value": 2 * 0.5 ** 8, "adjusted_p_value": 2 * 0.5 ** 8 * 2 / 1, "flagged": True})
    # mid: accuracy 4/6; F1 class 0 = 4/6, class 1 = 4/5, class 2 (predicted once, not a label here) left out;
    # baseline right on 3 rows; 2 wins, 1 loss: p = 1; BH: min(1 * 2/2) = 1
    assert mid == approx({"rows": 6, "accuracy": 4 / 6, "accuracy_se": math.sqrt(4 / 6 * 2 / 6 / 6),
                          "macro_f1": (4 / 6 + 4 / 5) / 2, "baseline_accuracy": 0.5, "change": 4 / 6 - 0.5,
                          "wins": 2, "losses": 1, "p_value": 1.0, "adjusted_p_value": 1.0, "flagged": False})
    # other: never judged (no adjusted p, no flag), even though it is the least accurate
    assert other == approx({"rows": 3, "accuracy": 0.0, "accuracy_se": 0.0, "macro_f1": 0.0,
                            "baseline_accuracy": 1.0, "change": -1.0, "wins": 0, "losses": 3,
                            "p_value": 2 * 0.5 ** 3})
    assert result["worst"] == "big" and result["largest_gap"] == approx(4 / 6 - 0.2)
    assert result["flagged"] == ["big"]

    plain = group_results(predictions, labels, groups, min_rows=4)  # no baseline: scores only
    assert plain["groups"]["big"] == approx({k: big[k] for k in ("rows", "accuracy", "accuracy_se", "macro_f1")})
    assert plain["flagged"] == [] and plain["worst"] == "big" and plain["largest_gap"] == approx(4 / 6 - 0.2)
    one = group_results(predictions, labels, groups, baseline, min_rows=7)  # only big is judged: no worst, no gap
    assert one["pooled"] == ["(missing)", "mid", "t"] and one["worst"] is None and one["largest_gap"] is None

    # The report around it: the flag line and the worst group's line name the hand figures.
    split = datasets.Dataset.from_dict({"source": raw_groups})
    report = group_report(predictions, labels, split, ["source"], 4, baseline)
    assert report["columns"]["source"] == result and report["baseline"] == "STL" and report["inherited"] == {}
    [line] = flag_lines(report)
    assert line.startswith("hf-aft: group source=big (10 rows) is worse than STL: accuracy 0.2000 vs 1.0000 "
                           "(-80.0 points; rows won 0, lost 8; McNemar p = 0.00781, 0.0156 adjusted"), line
    assert summary_lines(report)[0] == ("groups by source: worst source=big, accuracy 0.2000 ± 0.1265 (10 rows); "
                                        "largest gap 46.7 points")


# ---- 2. a planted group effect among noise ----
PLANTED = {  # group: (rows, wins, losses) of the model against the baseline
    "g1": (200, 3, 5), "g2": (200, 4, 2), "g3": (200, 6, 6),
    "planted": (200, 1, 50),  # the effect (and the least accurate group)
    "better": (200, 30, 0),  # much better: a small p-value, never flagged
    "edge": (60, 0, 6),  # p = 2 * 0.5**6 < 0.05 alone, not once adjusted over the column's 7 groups
    "couple": (10, 0, 2),  # exactly min_rows: judged, but only 2 discordant rows
    "s1": (9, 0, 9), "s2": (9, 0, 9), "s3": (9, 0, 9),  # too small: pooled into "other" (27 rows lost)
}


def planted_case(seed=0):
    rng = np.random.default_rng(seed)
    groups, labels, predictions, baseline = [], [], [], []
    for name, (rows, wins, losses) in PLANTED.items():
        label = rng.integers(0, 2, rows)
        base_right = np.ones(rows, bool)
        base_right[: max(wins, rows // 5)] = False  # wrong on a fifth of the rows (and on every row the model wins)
        if name.startswith("s"):
            base_right[:] = True
        model_right = base_right.copy()
        model_right[np.flatnonzero(~base_right)[:wins]] = True
        model_right[np.flatnonzero(base_right)[:losses]] = False
        groups += [name] * rows
        labels.append(label)
        baseline.append(np.where(base_right, label, 1 - label))
        predictions.append(np.where(model_right, label, 1 - label))
    order = rng.permutation(len(groups))
    return (np.array(groups)[order], *(np.concatenate(a)[order] for a in (labels, predictions, baseline)))


def bh(p_values):
    """Benjamini-Hochberg by its definition: min over k >= rank of p_(k) * m / k."""
    m, order = len(p_values), np.argsort(p_values)
    ranked = np.asarray(p_values)[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1)
    return dict(zip(order.tolist(), adjusted.tolist(), strict=True))


def test_a_planted_group_effect_is_the_only_flag():
    groups, labels, predictions, baseline = planted_case()
    result = group_results(predictions, labels, groups, baseline, min_rows=10)
    rows = result["groups"]
    for name, (n, wins, losses) in PLANTED.items():
        if not name.startswith("s"):
            assert (rows[name]["rows"], rows[name]["wins"], rows[name]["losses"]) == (n, wins, losses), name
    assert result["pooled"] == ["s1", "s2", "s3"]
    assert rows[OTHER]["losses"] == 27 and rows[OTHER]["p_value"] < 1e-6  # would be flagged if it were judged
    assert "flagged" not in rows[OTHER] and "adjusted_p_value" not in rows[OTHER]

    assert result["flagged"] == ["planted"]
    assert [n for n, r in rows.items() if r.get("flagged")] == ["planted"]
    judged = [n for n in rows if n != OTHER]
    assert len(judged) == 7
    expected = bh([rows[n]["p_value"] for n in judged])
    for i, name in enumerate(judged):
        assert rows[name]["adjusted_p_value"] == approx(expected[i]), name
        assert rows[name]["adjusted_p_value"] >= rows[name]["p_value"], name
    # Benjamini-Hochberg is what keeps "edge" unflagged: alone it is below ALPHA.
    assert rows["edge"]["p_value"] == approx(2 * 0.5 ** 6) and rows["edge"]["p_value"] < ALPHA
    assert rows["edge"]["adjusted_p_value"] > ALPHA and not rows["edge"]["flagged"]
    assert rows["couple"]["p_value"] == approx(0.5) and not rows["couple"]["flagged"]
    assert rows["better"]["adjusted_p_value"] < ALPHA and not rows["better"]["flagged"]
    assert rows["planted"]["adjusted_p_value"] < 1e-6 and rows["planted"]["change"] == approx(-49 / 200)
    assert result["worst"] == "planted"


# ---- 3. inherited errors, by hand ----
def test_inherited_errors_match_a_hand_computation():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    probe = np.array([1, 0, 0, 2, 1, 1, 0, 2, 2, 2])  # wrong on rows 0, 3, 6, 9
    student = np.array([1, 0, 0, 0, 1, 1, 0, 2, 1, 2])  # wrong on 0, 3, 6, 8, 9; gives the probe's answer on 0, 6, 9
    baseline = np.array([0, 0, 0, 2, 1, 1, 2, 2, 2, 1])  # wrong on 3 (the probe's answer) and 9 (another one)
    result = inherited_errors(student, probe, labels, baseline)
    copied_test = result.pop("copied_test")
    assert result == approx({
        "rows": 10, "probe_error_rate": 0.4,
        "errors": 5, "shared_error_share": 4 / 5,  # rows 0, 3, 6, 9 (3: both wrong, different answers)
        "copied_share": 3 / 4,  # of the probe's 4 mistakes, 0, 6 and 9 repeated
        "baseline_errors": 2, "baseline_shared_error_share": 1.0, "baseline_copied_share": 1 / 4,
        "shared_error_share_change": 4 / 5 - 1.0, "copied_share_change": 3 / 4 - 1 / 4})
    # On the probe's mistakes, "right" = not copying: the student stops copying on row 3 (1 win) and starts on rows
    # 0, 6, 9 (3 losses); binomial two-sided p of 1 in 4 = 2 * 5/16.
    assert copied_test == approx({"wins": 1, "losses": 3, "p_value": 10 / 16})
    alone = inherited_errors(student, probe, labels)
    assert alone == approx({k: result[k] for k in ("rows", "probe_error_rate", "errors", "shared_error_share",
                                                    "copied_share")})

    # Zero denominators: a student without errors has no shared share; a probe without errors no copied share.
    perfect = inherited_errors(labels, probe, labels, baseline)
    assert perfect["errors"] == 0 and perfect["shared_error_share"] is None
    assert perfect["baseline_shared_error_share"] == 1.0 and perfect["shared_error_share_change"] is None
    assert perfect["copied_share"] == 0.0 and perfect["copied_share_change"] == approx(-1 / 4)
    right_probe = inherited_errors(student, labels, labels, baseline)
    assert right_probe["probe_error_rate"] == 0.0 and right_probe["shared_error_share"] == 0.0
    assert right_probe["copied_share"] is None and right_probe["baseline_copied_share"] is None
    assert right_probe["copied_share_change"] is None
    assert right_probe["copied_test"] == {"wins": 0, "losses": 0, "p_value": 1.0}


# ---- 4. through `hf-aft train` ----
SOURCES = {"a": 40, "b": 36, "c": 4}


def train(student_dir, data, out, *extra):
    # 36 steps at 1e-2: the tiny student learns the task (fewer steps leave it predicting one class everywhere)
    args = ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--max_steps", "36", "--learning_rate", "1e-2",
            "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
            "--group_column", "source", "--group_min_rows", "10", *extra]
    assert main(args) == 0


@pytest.fixture(scope="module")
def grouped_data(tmp_path_factory):
    test = tiny.sentiment_dataset(sum(SOURCES.values()), seed=1)
    source = [name for name, n in SOURCES.items() for _ in range(n)]
    np.random.default_rng(1).shuffle(source)
    # every 7th label flipped: the student (which learns the task in these steps) makes errors, on both classes
    labels = [1 - label if i % 7 == 3 else label for i, label in enumerate(test["label"])]
    test = datasets.Dataset.from_dict({"text": test["text"], "label": labels, "source": source,
                                       "id": [f"row{i}" for i in range(len(test))]})
    folder = tmp_path_factory.mktemp("grouped") / "ds"
    datasets.DatasetDict({"train": tiny.sentiment_dataset(48, seed=0), "test": test}).save_to_disk(folder)
    return folder, test


@pytest.fixture(scope="module")
def runs(grouped_data, student_dir, teacher_dirs, tmp_path_factory):
    """An STL run, then an AFT run with a tiny teacher against it; the printed output of each."""
    data, _ = grouped_data
    root = tmp_path_factory.mktemp("runs")
    printed = {}
    for name, extra in (("stl", ["--transfer", "none"]),
                        ("aft", ["--teachers", str(teacher_dirs[0]), "--baseline_dir", str(root / "stl")])):
        with contextlib.redirect_stdout(io.StringIO()) as out:  # capsys is per test; these runs are per module
            train(student_dir, data, root / name, *extra)
        printed[name] = out.getvalue()
    return root / "stl", root / "aft", printed


def recomputed_predictions(out, test):
    from hf_aft.evaluation import load_run_student, predict_logits

    model, processor = load_run_student(str(out))
    return predict_logits(model, processor, test, "text", None, 128).argmax(-1)


def test_train_with_group_column_writes_group_results_everywhere(runs, grouped_data):
    stl, aft, printed = runs
    _, test = grouped_data
    for out in (stl, aft):
        kept = json.loads((out / "eval_predictions.json").read_text())
        assert kept["split"] == "test" and kept["rows"] == len(test) and kept["labels"] == test["label"]
        assert kept["predictions"] == recomputed_predictions(out, test).tolist(), out

        report = json.loads((out / "group_report.json").read_text())
        column = report["columns"]["source"]
        assert list(column["groups"]) == ["a", "b", "c"] and column["pooled"] == ["c"]
        assert [column["groups"][g]["rows"] for g in ("a", "b", "c")] == [40, 36, 4]
        assert sum(r["rows"] for r in column["groups"].values()) == len(test) == kept["rows"]
        # the per-group accuracies are those of the kept predictions on the rows of each group
        predictions, labels, source = (np.array(x) for x in (kept["predictions"], kept["labels"], test["source"]))
        for name, rows in (("a", source == "a"), ("b", source == "b"), ("c", source == "c")):
            assert column["groups"][name]["accuracy"] == approx((predictions == labels)[rows].mean()), name
        assert column["worst"] in ("a", "b")
        results = json.loads((out / "eval_results.json").read_text())
        assert results["eval_groups"] == report["columns"]

        record = json.loads((out / "audit.json").read_text())
        for name in ("group_report.json", "eval_predictions.json", "README.md"):
            assert name in record["files"], name
        assert main(["audit", str(out)]) == 0

    stl_report = json.loads((stl / "group_report.json").read_text())
    assert stl_report["baseline"] is None and stl_report["inherited"] == {}
    assert "no teacher" in stl_report["inherited_note"]
    assert "Inherited errors: not measured (no teacher" in (stl / "README.md").read_text()

    report = json.loads((aft / "group_report.json").read_text())
    assert report["baseline"] == "STL" and report["min_rows"] == 10
    stl_kept = np.array(json.loads((stl / "eval_predictions.json").read_text())["predictions"])
    labels, source = np.array(test["label"]), np.array(test["source"])
    for name, rows in (("a", source == "a"), ("b", source == "b"), ("c", source == "c")):
        row = report["columns"]["source"]["groups"][name]
        assert row["baseline_accuracy"] == approx((stl_kept == labels)[rows].mean()), name
        assert row["baseline_accuracy"] == approx(stl_report["columns"]["source"]["groups"][name]["accuracy"])
    [(teacher, inherited)] = report["inherited"].items()
    assert inherited["overall"]["rows"] == len(test) and set(inherited["groups"]["source"]) == {"a", "b", "c"}

    card = (aft / "README.md").read_text()
    assert "### By group" in card
    assert ("| group | rows | accuracy ± s.e. | macro-F1 | STL accuracy | change (points) | won / lost rows | "
            "adjusted p | flag |" in card)
    for name, rows in (("a", 40), ("b", 36), ("c", 4)):
        assert f"| `{name}` | {rows} | " in card, name
    assert "(`c` is under 10 rows: not judged)" in card  # a single small group keeps its name
    assert "### Inherited errors" in card and f"| `{teacher}` | all rows |" in card
    for name in ("a", "b", "c"):
        assert f"| | `source={name}` |" in card, name

    assert "groups by source: worst " in printed["stl"] and "inherited errors" not in printed["stl"]
    assert "groups by source: worst " in printed["aft"]
    assert f"inherited errors ({teacher} probe, wrong on " in printed["aft"]
    assert "(STL: " in printed["aft"].split("inherited errors")[1]
    # whatever these few steps flagged (if anything) is said once per group, on the terminal and in the card
    flagged = report["columns"]["source"]["flagged"]
    said = [line for line in printed["aft"].splitlines() if line.startswith("hf-aft: group source=")]
    assert [line.split()[2] for line in said] == [f"source={name}" for name in flagged]
    assert card.count("| **worse** |") == len(flagged)


# ---- 5. refusals, before any teacher runs ----
@pytest.fixture
def no_teacher_runs():
    with mock.patch(TEACHER_RUNS, side_effect=AssertionError("a teacher ran")), \
            mock.patch("hf_aft.teachers.TextTeacher.load", side_effect=AssertionError("a teacher was loaded")):
        yield


@pytest.mark.parametrize("flags, fragments", [
    (["--group_column", "dialect"], ["--group_column 'dialect' is not a column of the evaluation split 'test'",
                                     "['text', 'label', 'source', 'id']"]),
    (["--group_column", "source", "id"], ["--group_column 'id': no group has 10 rows", "lower --group_min_rows"]),
    (["--group_column", "source", "--group_min_rows", "0"], ["--group_min_rows must be a whole number >= 1 (got 0)"]),
])
def test_bad_group_columns_are_refused_in_one_line(flags, fragments, grouped_data, student_dir, teacher_dirs,
                                                   no_teacher_runs, tmp_path, capsys):
    data, _ = grouped_data
    argv = ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--output_dir",
            str(tmp_path / "out"), "--teachers", str(teacher_dirs[0]), "--max_steps", "2", "--use_cpu", "true",
            "--report_to", "none", *flags]
    if "--group_min_rows" not in flags:
        argv += ["--group_min_rows", "10"]
    assert main(argv) == 2
    one_error_line(capsys, *fragments)
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_group_column_without_an_eval_split_is_refused(student_dir, teacher_dirs, no_teacher_runs, tmp_path,
                                                       capsys):
    data = tmp_path / "train-only"
    datasets.DatasetDict({"train": tiny.sentiment_dataset(16).add_column("source", ["x"] * 16)}).save_to_disk(data)
    assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--output_dir",
                 str(tmp_path / "out"), "--teachers", str(teacher_dirs[0]), "--use_cpu", "true", "--report_to", "none",
                 "--group_column", "source"]) == 2
    one_error_line(capsys, "--group_column reports results per group of the evaluation split, and this run has none")


# ---- 6. a baseline run that kept no predictions ----
def test_a_baseline_without_kept_predictions_runs_its_student(runs, grouped_data, student_dir, tmp_path):
    stl, aft, _ = runs
    data, _ = grouped_data
    old = tmp_path / "old-stl"
    shutil.copytree(stl, old)
    (old / "eval_predictions.json").unlink()  # as a run of an older hf-aft left it
    from hf_aft import evaluation

    with mock.patch.object(evaluation, "load_run_student", wraps=evaluation.load_run_student) as load:
        train(student_dir, data, tmp_path / "again", "--transfer", "none", "--skip_cost_report", "--baseline_dir",
              str(old))
    assert [c.args[0] for c in load.call_args_list] == [str(old)]  # the baseline student ran on the eval rows

    with_file = json.loads((aft / "group_report.json").read_text())["columns"]["source"]["groups"]
    without = json.loads((tmp_path / "again" / "group_report.json").read_text())
    assert without["baseline"] == "STL"
    for name in ("a", "b", "c"):
        assert without["columns"]["source"]["groups"][name]["baseline_accuracy"] == approx(
            with_file[name]["baseline_accuracy"]), name


def test_a_real_group_named_other_is_judged_like_any_group():
    rng = np.random.default_rng(0)
    groups = np.array(["news"] * 100 + ["other"] * 100)
    labels = rng.integers(0, 2, 200)
    predictions = labels.copy()
    predictions[100:160] = 1 - labels[100:160]  # 60 rows lost in the group called "other"
    result = group_results(predictions, labels, groups, labels.copy(), min_rows=30)
    assert result["flagged"] == ["other"] and result["worst"] == "other"
    assert result["largest_gap"] == approx(0.6)


def test_a_baseline_evaluated_on_other_rows_is_refused_before_any_teacher_runs(runs, grouped_data, tmp_path, capsys):
    stl, _, _ = runs
    baseline = tmp_path / "stl-on-other-rows"  # as if the data had changed since the baseline ran
    shutil.copytree(stl, baseline)
    kept = json.loads((baseline / "eval_predictions.json").read_text())
    (baseline / "eval_predictions.json").write_text(json.dumps({**kept, "rows_sha256": "0" * 64}))
    data = json.loads((stl / "model_card.json").read_text())["dataset_name"]
    args = ["train", "--model_name_or_path", str(stl), "--dataset_name", data, "--output_dir", str(tmp_path / "out"),
            "--teachers", str(tmp_path / "no-teacher"), "--baseline_dir", str(baseline), "--report_to", "none",
            "--use_cpu", "true"]
    assert main(args) == 2
    one_error_line(capsys, "--baseline_dir", "other rows than this run's eval split 'test'", "retrain the baseline")
    assert not (tmp_path / "out").exists()


def test_a_list_flag_given_twice_is_refused(capsys):
    assert main(["train", "--model_name_or_path", "x", "--dataset_name", "y", "--output_dir", "z",
                 "--group_column", "a", "--group_column", "b"]) == 2
    one_error_line(capsys, "--group_column is given twice", "--group_column A B")


def test_group_functions_refuse_arrays_of_other_lengths_a_missing_column_and_min_rows_below_1():
    """Raw IndexError, ValueError and datasets errors before; min_rows=0 was accepted (the CLI refuses it)."""
    from hf_aft.errors import AFTError

    predictions, labels, groups = np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), np.array(["a", "a", "b", "b"])
    split = datasets.Dataset.from_dict({"g": list(groups)})
    for call, says in [
        (lambda: group_results(predictions, labels[:3], groups), "(predictions 4, labels 3, groups 4)"),
        (lambda: group_results(predictions, labels, groups, min_rows=0), "min_rows must be a whole number >= 1 (go"),
        (lambda: inherited_errors(predictions, predictions[:2], labels), "probe_predictions 2"),
        (lambda: group_report(predictions, labels, split, ["x"]), "eval_split has no column 'x' (it has ['g'])"),
        (lambda: group_report(predictions[:3], labels[:3], split, ["g"]), "(eval_split 4, predictions 3, labels 3)"),
        (lambda: group_report(predictions, labels, split, ["g"], min_rows=-1), "min_rows must be a whole number"),
        (lambda: group_report(predictions, labels, split, ["g"], min_rows=1, probes={"t": predictions[:2]}),
         "probes['t'] 2"),
    ]:
        with pytest.raises(AFTError) as caught:
            call()
        assert says in str(caught.value) and "\n" not in str(caught.value)
    assert inherited_errors([], [], [])["probe_error_rate"] is None  # a share over no rows: None, not NaN
    assert group_report(predictions, labels, split, "g", min_rows=1)["columns"]["g"]["worst"] == "b"

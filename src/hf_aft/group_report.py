"""Per-group results of a training run (`--group_column NAME`, repeatable): checked before training
(`check_group_columns`), computed after it (`group_report`, from `groups.py`) on the evaluation split's predictions,
next to the STL baseline's predictions on the same rows (`--baseline_dir`) and the teacher probes' (the cost report's);
written to OUT/group_report.json, into eval_results.json (`eval_groups`) and the card; `flag_lines` says each group
where the student is worse than the baseline beyond the paired noise.

Every single-label classification run with an evaluation split keeps its predictions (OUT/eval_predictions.json:
class ids and labels in the split's row order), so that a later run can compare with it group by group, on any
column; multi-label, regression and token-classification runs write none (`metrics.RecordedMetrics` keeps only
single-label predictions).
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np

from .data import arrow_column
from .dataset_types import check_one_split
from .errors import AFTError, warn_once
from .groups import (
    MIN_GROUP_ROWS,
    OTHER,
    check_min_rows,
    check_rows,
    group_results,
    group_values,
    inherited_errors,
    pool_small_groups,
)

logger = logging.getLogger(__name__)
GROUP_REPORT_NAME = "group_report.json"
EVAL_PREDICTIONS_NAME = "eval_predictions.json"


def check_group_columns(eval_split, columns: list[str] | None, min_rows: int = MIN_GROUP_ROWS,
                        split_name: str | None = None) -> None:
    """Before any teacher runs: each group column is a column of the evaluation split and has at least one group of
    `min_rows` rows; the smaller groups are named in a warning (not judged; pooled into "(pooled)" when several).

    Raises:
        AFTError: no evaluation split, a missing column, a column whose every group is too small, min_rows < 1.
    """
    if not columns:
        return
    check_min_rows(min_rows, "--group_min_rows")
    if eval_split is None:
        raise AFTError("--group_column reports results per group of the evaluation split, and this run has none: "
                       "pass --eval_split, or drop --group_column.")
    for column in columns:
        if column not in eval_split.column_names:
            raise AFTError(f"--group_column {column!r} is not a column of the evaluation split {split_name!r}; it has "
                           f"{eval_split.column_names}: name one of those.")
        values = column_groups(eval_split, column)
        _, pooled = pool_small_groups(values, min_rows)
        if len(pooled) == len(set(values)):
            raise AFTError(f"--group_column {column!r}: no group has {min_rows} rows in the evaluation split "
                           f"({len(pooled)} groups, {len(values)} rows), so none can be judged: choose a column with "
                           "fewer, larger groups, or lower --group_min_rows.")
        if pooled:
            shown = ", ".join(map(repr, pooled[:5])) + (f" and {len(pooled) - 5} more" if len(pooled) > 5 else "")
            where = f"pooled into {OTHER!r}" if len(pooled) > 1 else "shown"
            warn_once(logger, f"hf-aft: --group_column {column!r}: {len(pooled)} group(s) under {min_rows} rows "
                              f"({shown}) {where}, not judged: too small to judge alone.")


def column_groups(split, column: str) -> np.ndarray:
    """A column's group names [rows]: its values as strings, a class label's by name, a missing value "(missing)"."""
    import datasets

    values = arrow_column(split, column).to_pylist()
    feature = split.features[column]
    if isinstance(feature, datasets.ClassLabel):
        values = [None if v is None or v < 0 else feature.int2str(v) for v in values]
    return group_values(values)


def rows_sha256(split, columns: list[str]) -> str:
    """sha256 of `columns` of `split` in its row order, as Arrow IPC (the evaluation rows' inputs and labels: two
    runs' predictions pair row by row only when it is the same; an unlabelled pool's inputs, as a checkpoint records
    them). An image column read from files holds their paths, not their pixels."""
    import hashlib

    import pyarrow as pa

    table = split.select_columns(columns).with_format("arrow")[:]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return hashlib.sha256(sink.getvalue()).hexdigest()


def write_eval_predictions(output_dir: str, split: str | None, predictions, labels, rows_sha256: str) -> None:
    with open(os.path.join(output_dir, EVAL_PREDICTIONS_NAME), "w") as f:
        json.dump({"split": split, "rows": len(labels), "rows_sha256": rows_sha256,
                   "labels": np.asarray(labels).tolist(), "predictions": np.asarray(predictions).tolist()}, f)


def _kept(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, EVAL_PREDICTIONS_NAME)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def check_baseline_rows(baseline_dir: str | None, rows_sha256: str | None, split_name: str | None) -> None:
    """Before any teacher runs: a baseline that kept its predictions was evaluated on exactly this run's eval rows
    (else its results, overall and per group, would compare other rows).

    Raises:
        AFTError: the baseline's eval rows differ from this run's.
    """
    kept = _kept(baseline_dir) if baseline_dir else None
    if kept and kept.get("rows_sha256") and rows_sha256 and kept["rows_sha256"] != rows_sha256:
        raise AFTError(f"--baseline_dir {baseline_dir!r} was evaluated on other rows than this run's eval split "
                       f"{split_name!r} (the rows' sha256 differ: the data changed since, or it is another split): "
                       "retrain the baseline on this data, or drop --baseline_dir.")


def check_eval_comparisons(script_args, splits) -> str | None:
    """Before any teacher runs (`arguments.ScriptArguments`, `data.LabelledSplits`): the group columns
    (`check_group_columns`) and the baseline's eval rows (`check_baseline_rows`); returns the eval rows' sha256 (None
    without an eval split)."""
    check_group_columns(splits.eval, script_args.group_column, script_args.group_min_rows, splits.eval_name)
    if splits.eval is None:
        return None
    sha256 = rows_sha256(splits.eval, [script_args.image_column or script_args.text_column, script_args.label_column])
    check_baseline_rows(script_args.baseline_dir, sha256, splits.eval_name)
    return sha256


def read_eval_predictions(folder: str, labels, rows_sha256: str | None = None) -> np.ndarray | None:
    """A finished run's eval predictions (class ids) when it kept them for these rows (the same rows' sha256, and
    the same labels in the same order), else None."""
    kept = _kept(folder)
    if not kept or kept.get("rows_sha256") != rows_sha256 or kept.get("labels") != np.asarray(labels).tolist():
        return None
    return np.asarray(kept["predictions"])


def group_report(predictions, labels, eval_split, columns: list[str], min_rows: int = MIN_GROUP_ROWS,
                 baseline=None, probes: dict | None = None, baseline_name: str = "STL") -> dict:
    """Per column, `groups.group_results` (against `baseline`, class ids on the same rows, when given); per teacher
    probe (`probes`: name -> class ids), `groups.inherited_errors` overall and per group.

    Args:
        predictions: the model's class ids [rows], in `eval_split`'s row order.
        labels: the true class ids [rows].
        eval_split: the evaluation split (a `datasets.Dataset`) whose `columns` hold the groups.
        columns: the group columns (one name, or a list of them).
        min_rows: smaller groups are not judged (pooled into "(pooled)" when there are several).
        baseline: the baseline's class ids [rows], or None.
        probes: teacher name -> its probe's class ids [rows], or None.
        baseline_name: the baseline's name in the report.

    Returns:
        {"min_rows", "baseline": `baseline_name` or None, "columns": {column: `group_results`}, "inherited":
        {teacher: {"overall": `inherited_errors`, "groups": {column: {group: `inherited_errors`}}}}}.

    Raises:
        AFTError: `eval_split` that is not one split, a column it lacks, arrays of another length than it has
            rows, `min_rows` not a whole number >= 1.
    """
    columns = _checked_report_inputs(predictions, labels, eval_split, columns, min_rows, baseline, probes)
    groups = {column: column_groups(eval_split, column) for column in columns}
    report = {"min_rows": min_rows, "baseline": baseline_name if baseline is not None else None,
              "columns": {c: group_results(predictions, labels, g, baseline, min_rows) for c, g in groups.items()}}
    report["inherited"] = {teacher: {"overall": inherited_errors(predictions, probe, labels, baseline),
                                     "groups": {column: _inherited_by_group(predictions, probe, labels, baseline,
                                                                            pool_small_groups(values, min_rows)[0],
                                                                            report["columns"][column]["groups"])
                                                for column, values in groups.items()}}
                           for teacher, probe in (probes or {}).items()}
    return report


def _checked_report_inputs(predictions, labels, eval_split, columns, min_rows, baseline, probes) -> list[str]:
    """`group_report`'s inputs checked (see its Raises); the columns as a list."""
    check_one_split(eval_split, "eval_split", "eval_split=data['test']")
    columns = [columns] if isinstance(columns, str) else list(columns)
    missing = [column for column in columns if column not in eval_split.column_names]
    if missing:
        raise AFTError(f"eval_split has no column {', '.join(map(repr, missing))} (it has {eval_split.column_names}): "
                       "name the columns that hold the groups.")
    check_min_rows(min_rows)
    check_rows(eval_split=range(len(eval_split)), predictions=predictions, labels=labels, baseline=baseline,
               **{f"probes[{name!r}]": values for name, values in (probes or {}).items()})
    return columns


def _inherited_by_group(predictions, probe, labels, baseline, groups: np.ndarray, names) -> dict:
    """`inherited_errors` per group, in the order of the groups' results (`names`: largest first, "(pooled)" last)."""
    arrays = [np.asarray(a) for a in (predictions, probe, labels)]
    base = None if baseline is None else np.asarray(baseline)
    return {name: inherited_errors(*(a[groups == name] for a in arrays),
                                   baseline=None if base is None else base[groups == name]) for name in names}


def flag_lines(report: dict) -> list[str]:
    """One line per group where the model is worse than the baseline beyond the paired noise."""
    lines = []
    for column, result in report["columns"].items():
        for name in result["flagged"]:
            row = result["groups"][name]
            lines.append(f"hf-aft: group {column}={name} ({row['rows']} rows) is worse than {report['baseline']}: "
                         f"accuracy {row['accuracy']:.4f} vs {row['baseline_accuracy']:.4f} "
                         f"({100 * row['change']:+.1f} points; rows won {row['wins']}, lost {row['losses']}; "
                         f"McNemar p = {row['p_value']:.3g}, {row['adjusted_p_value']:.3g} adjusted over the "
                         f"column's groups)")
    return lines


def summary_lines(report: dict) -> list[str]:
    """The worst group and largest gap per column, the flagged groups, and the inherited errors, for the terminal."""
    lines = []
    for column, result in report["columns"].items():
        if result["worst"] is not None:
            worst = result["groups"][result["worst"]]
            gap = "" if result["largest_gap"] is None else f"; largest gap {100 * result['largest_gap']:.1f} points"
            lines.append(f"groups by {column}: worst {column}={result['worst']}, accuracy {worst['accuracy']:.4f} "
                         f"± {worst['accuracy_se']:.4f} ({worst['rows']} rows){gap}")
    lines += flag_lines(report)
    for teacher, inherited in report["inherited"].items():
        lines.append(inherited_line(teacher, inherited["overall"], report["baseline"]))
    return lines


def inherited_line(teacher: str, overall: dict, baseline: str | None) -> str:
    def share(key):
        value = overall[key]
        return "-" if value is None else f"{value:.1%}"

    line = (f"inherited errors ({teacher} probe, wrong on {share('probe_error_rate')} of the rows): "
            f"{share('shared_error_share')} of the student's errors are the probe's")
    if baseline is not None:
        line += f" ({baseline}: {share('baseline_shared_error_share')})"
    if overall["copied_share"] is None:
        return line + "; the probe makes no mistake on these rows"
    line += f"; it repeats {share('copied_share')} of the probe's mistakes"
    if baseline is not None:
        line += f" ({baseline}: {share('baseline_copied_share')})"
    return line


def baseline_predictions(baseline_dir: str, labels, eval_split, column: str, image_column: str | None,
                         max_length: int, rows_sha256: str) -> tuple[np.ndarray, bool]:
    """(the baseline run's class ids on this run's evaluation rows, whether its student had to run): the ones it kept
    (eval_predictions.json) for the same rows, else its student run on them (a run made before hf-aft kept them)."""
    kept = read_eval_predictions(baseline_dir, labels, rows_sha256)
    if kept is not None:
        return kept, False
    from .evaluation import load_run_student, predict_logits

    model, processor = load_run_student(baseline_dir)
    return predict_logits(model, processor, eval_split, column, image_column, max_length).argmax(-1), True


def finish_groups(trainer, script_args, run: dict, summary: dict) -> dict | None:
    """After the final evaluation, on the main process: keep the eval predictions (eval_predictions.json); with
    --group_column, write group_report.json, put the per-group metrics into eval_results.json (`eval_groups`) and
    the run's summary, and return the report (None without groups or without an evaluation)."""
    metrics, output_dir = run.get("metrics"), trainer.args.output_dir
    if getattr(metrics, "predictions", None) is None:  # no evaluation, or not single-label classification
        return None
    predictions, labels = metrics.predictions, metrics.labels
    write_eval_predictions(output_dir, script_args.eval_split, predictions, labels, run["eval_rows_sha256"])
    if not script_args.group_column:
        return None
    eval_raw = run["splits"].eval
    baseline = None
    if script_args.baseline_dir:
        baseline, ran = baseline_predictions(script_args.baseline_dir, labels, eval_raw, script_args.image_column or
                                             script_args.text_column, script_args.image_column, script_args.max_length,
                                             run["eval_rows_sha256"])
        if ran:  # its own results may be for other rows: the card's overall comparison uses these predictions too
            from .metrics import ClassificationMetrics

            scored = ClassificationMetrics().compute(predictions=baseline, references=labels)
            run["baseline_results"] = {f"eval_{name}": value for name, value in scored.items()}
            print(f"the baseline {script_args.baseline_dir} kept no predictions for these eval rows: its student "
                  "was run on them", flush=True)
    report = group_report(predictions, labels, eval_raw, script_args.group_column, script_args.group_min_rows,
                          baseline, run.get("probe_predictions"))
    if not report["inherited"]:
        report["inherited_note"] = _no_probe_reason(trainer, script_args)
    with open(os.path.join(output_dir, GROUP_REPORT_NAME), "w") as f:
        json.dump(report, f, indent=2)
    summary["eval"]["eval_groups"] = report["columns"]
    trainer.save_metrics("eval", summary["eval"])
    return report


def _no_probe_reason(trainer, script_args) -> str:
    if not trainer.teacher_infos:
        return "no teacher: inherited errors compare the student with a teacher probe"
    if getattr(script_args, "skip_cost_report", False):
        return "--skip_cost_report: the teacher probe is fitted with the cost report"
    return "the teacher probe could not be fitted (see cost_report.json)"


def finished_run_groups(folder: str, columns: list[str], min_rows: int = MIN_GROUP_ROWS,
                        dataset_name: str | None = None) -> dict:
    """`group_report` of a finished run's student (`hf-aft audit --group_column`), on the evaluation split its recipe
    names (or `dataset_name`), by any of its columns, with no baseline and no probe.

    Raises:
        AFTError: no recipe or evaluation split, a group column the split lacks (`check_group_columns`).
    """
    from .evaluation import eval_split, load_run_student, predict_logits
    from .recipe import read_recipe

    split, column, image_column, max_length = eval_split(folder, dataset_name)
    check_group_columns(split, columns, min_rows, read_recipe(folder).get("eval_split") or "eval")
    model, processor = load_run_student(folder)
    predictions = predict_logits(model, processor, split, column, image_column, max_length).argmax(-1)
    return group_report(predictions, np.asarray(split["labels"]), split, columns, min_rows)


def table_lines(report: dict) -> list[str]:
    """One line per group: rows, accuracy ± standard error, macro-F1 (and the baseline's accuracy and the change)."""
    lines = []
    for column, result in report["columns"].items():
        for name, row in result["groups"].items():
            line = (f"{column}={name}: {row['rows']} rows, accuracy {row['accuracy']:.4f} ± {row['accuracy_se']:.4f}, "
                    f"macro-F1 {row['macro_f1']:.4f}")
            if "baseline_accuracy" in row:
                line += f"; {report['baseline']} {row['baseline_accuracy']:.4f} ({100 * row['change']:+.1f} points)"
            lines.append(line + ("  FLAGGED" if row.get("flagged") else ""))
    return lines

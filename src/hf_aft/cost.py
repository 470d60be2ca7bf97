"""Cost and benefit, measured (`OUT/cost_report.json` and the card's "Cost and benefit" section): for the student and
each teacher, parameters, size on disk, CPU latency per example at batch 1 and throughput at batch 32 (measured on the
machine that trained, named in the report; the student timed in turns with each teacher, timing.py), the teachers'
extraction time and the training time; and the student's eval score next to each teacher's linear-probe score on the
same split (a standardised logistic regression, as `hf-aft rank-teachers` uses, fitted on the teacher's training
features and scored on its eval features, which are extracted through the same cache as training). One line per
teacher sums it up, e.g. "12.0x smaller and 9.1x faster than all-mpnet-base-v2 at batch 1 (14.2x at batch 32), at 96%
of its probe accuracy". `--skip_cost_report` turns it off (very large teachers).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from .cache import default_cache_dir
from .claims import stamped
from .distributed import is_distributed
from .errors import AFTError, first_line
from .features import FEATURES_COLUMN
from .images import to_rgb
from .provenance import device_name, folder_size, teacher_folder, teacher_source, teacher_specs, weight_files
from .teachers import display_names, load_options, make_teacher
from .timing import BATCH, TimedBeside, speed
from .tokens import encode_padded
from .word_features import WordTeacher, is_word_features, with_word_or_teacher_features, word_matrix
from .words import is_words_dataset, split_words

COST_REPORT_NAME = "cost_report.json"
THREADS = 1  # torch's threads while timing: figures that hold on a machine other work shares (timing.py)
STUDENT_WEIGHTS = ("model", "pytorch_model", "adapter_model")


def student_weight_files(output_dir: str) -> dict[str, Path]:
    """The student's weight files at the top of its output dir (the adapter only, for a PEFT student)."""
    return {name: path for name, path in weight_files(Path(output_dir)).items()
            if "/" not in name and name.split(".")[0].split("-")[0] in STUDENT_WEIGHTS}


def student_runner(model, processor, image_column: str | None, max_length: int):
    """The trained student as `run(list of examples) -> logits` on the CPU (tokenizing or preprocessing included)."""
    model = copy.deepcopy(model).cpu().eval()

    @torch.inference_mode()
    def run(batch):
        if image_column:
            inputs = processor(images=[to_rgb(image, image_column) for image in batch], return_tensors="pt")
        elif isinstance(batch[0], list):  # token classification: a list of words per row
            inputs = processor.pad(split_words(processor, batch, max_length)[0], return_tensors="pt")
        else:
            inputs = encode_padded(processor, batch, max_length)  # as in evaluation: no row of zero tokens
        return model(**inputs).logits

    return run


def student_cost(model, processor, examples: list, output_dir: str, image_column: str | None,
                 max_length: int, timed: bool = True) -> dict:
    """Parameters, bytes on disk and (`timed`) CPU speed of the trained student, timed alone."""
    cost = {"parameters": sum(p.numel() for p in model.parameters()),
            "bytes": folder_size(student_weight_files(output_dir))}
    if not timed:
        return cost
    return {**cost, **speed(student_runner(model, processor, image_column, max_length), examples, THREADS)}


def teacher_cost(spec: str, revision: str, dataset, options, text_column: str, image_column: str | None,
                 examples: list, student: TimedBeside | None = None) -> dict:
    """Parameters, bytes of its weight files and CPU speed of one teacher (its tokenizer or processor and pooling
    included: what producing its features costs per example), timed in turns with `student` when given."""
    device = torch.device("cpu")
    load = {**load_options(device), "trust_remote_code": options.teacher_trust_remote_code}
    teacher, _, _ = make_teacher(dataset, spec, options.teacher_pooling, options.teacher_max_length, BATCH, device,
                                 load, text_column, image_column, words=is_words_dataset(dataset, text_column))
    if is_words_dataset(dataset, text_column):  # token classification: per-word features, as in training
        teacher = WordTeacher.of(teacher)
    teacher.load()
    name, _, gguf_file = teacher_source(spec)
    try:
        files = weight_files(teacher_folder(name, revision), gguf_file)
        cost = {"parameters": sum(p.numel() for p in teacher.model.parameters()), "bytes": folder_size(files),
                **(student.beside(teacher) if student is not None else speed(teacher, examples, THREADS))}
    finally:
        teacher.free()
    return cost


def eval_features(eval_raw, spec: str, options, text_column: str, image_column: str | None) -> tuple:
    """One teacher's eval-split features [rows, width] (through the training cache), the seconds it took and whether
    they came from the cache."""
    cache = Path(default_cache_dir())
    before = set(cache.glob("teacher-*.arrow"))
    start = time.perf_counter()
    data = with_word_or_teacher_features(eval_raw, options, text_column, image_column, teachers=[spec])
    seconds = time.perf_counter() - start
    features = (word_matrix(data)[0] if is_word_features(data) else  # token classification: [all words, width]
                np.asarray(data.with_format("numpy")[FEATURES_COLUMN], dtype=np.float32))
    return features, seconds, not (set(cache.glob("teacher-*.arrow")) - before)


HEADLINE = {"single_label_classification": "accuracy", "multi_label_classification": "micro_f1",
            "regression": "pearson", "token_classification": "f1"}  # the student and the probes compared in it


def probe_predictions_on(train_x, train_y, eval_x, problem_type: str = "single_label_classification",
                         c: float | None = None) -> np.ndarray:
    """What the teachers' linear probe predicts on `eval_x` [rows, width], fitted on (train_x, train_y) after
    standardising the features: class ids (logistic regression with C chosen by cross-validated log-loss,
    `distillation.linear_probe`, the probe `--distill probe` fits), or for a multi-label task the classes'
    probabilities [rows, classes] (one logistic regression per class, C chosen the same way), or for a regression the
    targets (ridge regression with its penalty chosen by leave-one-out, scikit-learn's RidgeCV). `c`: a C already
    chosen on these rows (skips the search)."""
    if problem_type in ("regression", "multi_label_classification"):
        from .task_probes import fit_probe_outputs

        outputs = fit_probe_outputs(np.asarray(train_x), np.asarray(train_y), np.asarray(eval_x), problem_type, c)
        return outputs[:, 0] if problem_type == "regression" and np.asarray(train_y).ndim == 1 else outputs
    from .distillation import linear_probe

    return linear_probe(np.asarray(train_x), np.asarray(train_y), c=c).predict(eval_x)


def _probe(row: dict, run: dict, train_x, eval_x) -> None:
    """The probe's score in the task's headline metric into the teacher's `row` (and its accuracy, for one label per
    row), its single-label eval predictions into run["probe_predictions"] (the per-group report compares the
    student's errors with them)."""
    from .metrics import multi_label_metrics, regression_metrics

    problem_type = run.get("problem_type", "single_label_classification")
    if problem_type == "token_classification":
        row["probe_score"] = word_probe_f1(train_x, run["train_labels"], eval_x, run["eval_labels"], run["names"])
        return
    predictions = probe_predictions_on(train_x, run["train_labels"], eval_x, problem_type, run.get("probe_c"))
    if problem_type == "single_label_classification":
        row["probe_accuracy"] = row["probe_score"] = float((predictions == run["eval_labels"]).mean())
        run.setdefault("probe_predictions", {})[row["name"]] = predictions
        return
    scores = (regression_metrics(predictions, run["eval_labels"]) if problem_type == "regression" else
              multi_label_metrics(predictions, run["eval_labels"]))
    row["probe_score"] = scores[HEADLINE[problem_type]]


def word_probe_f1(train_x, train_y, eval_x, eval_rows: list[list[int]], names: list[str],
                  predict=probe_predictions_on) -> float:
    """Entity F1 (metrics.token_metrics) of a per-word probe: `predict(train_x, train_y, eval_x)` (default the
    logistic regression of `probe_predictions_on`) fitted on the words the teacher saw (train_x [words, width],
    train_y [words]) and applied to each eval word; a word the teacher did not see (a NaN row: cut by its max
    length) gets the training words' most frequent class."""
    from .metrics import token_metrics

    seen = np.isfinite(train_x).all(1)
    predicted = np.full(len(eval_x), np.bincount(train_y[seen]).argmax())
    visible = np.isfinite(eval_x).all(1)
    predicted[visible] = predict(train_x[seen], train_y[seen], eval_x[visible])
    width = max(len(r) for r in eval_rows)
    refs, preds = np.full((len(eval_rows), width), -100), np.full((len(eval_rows), width), -100)
    start = 0
    for i, row in enumerate(eval_rows):
        refs[i, : len(row)], preds[i, : len(row)] = row, predicted[start : start + len(row)]
        start += len(row)
    return token_metrics(preds, refs, names)["f1"]


def _stored_eval_features(run, lo: int, dim: int):
    """The teacher's slice of eval features that came with the dataset (`hf-aft features --splits train test`)."""
    eval_raw = run["eval_raw"]
    if eval_raw is None or FEATURES_COLUMN not in eval_raw.column_names:
        return None
    return np.asarray(eval_raw.with_format("numpy")[FEATURES_COLUMN], dtype=np.float32)[:, lo : lo + dim]


def _teacher_row(index, spec, info, run) -> dict:
    """Cost, extraction time and probe accuracy of one teacher (a failure becomes a `note`, not a failed run). With
    features that came with the dataset (`spec` None) no teacher is loaded: only a stored eval slice is probed."""
    row = {"name": info.name, "revision": info.revision, "width": info.dim}
    lo = sum(i.dim for i in run["infos"][:index])
    can_probe = run["eval_labels"] is not None and run["train_features"] is not None
    if can_probe and is_distributed():  # extraction synchronises every process; only the main one is here
        can_probe, row["note"] = False, "probe skipped under several processes (eval features need all of them)"
    train_x = run["train_features"][:, lo : lo + info.dim] if can_probe else None
    if spec is None:
        row["note"] = "features came with the dataset: the teacher was not loaded (train with --teachers to measure)"
        features = _stored_eval_features(run, lo, info.dim) if can_probe else None
        if features is not None:
            _probe(row, run, train_x, features)
        return row
    try:
        source = run["eval_raw"] if run["eval_raw"] is not None else run["train_raw"]
        row.update(teacher_cost(spec, info.revision, source, run["config"], run["text_column"], run["image_column"],
                                run["examples"], run["timed_student"]))
        if not can_probe:
            return row
        features, seconds, cached = eval_features(run["eval_raw"], spec, run["config"], run["text_column"],
                                                  run["image_column"])
    except AFTError as error:
        row["note"] = f"not measured: {first_line(error)}"
        return row
    row.update(eval_extraction_seconds=round(seconds, 3), eval_extraction_cached=cached)
    _probe(row, run, train_x, features)
    return row


# The summary line states the student's eval score as a share of a teacher probe's ("at 96% of its probe accuracy")
# only in metrics that lie in [0, 1] with higher better: a correlation can be negative (a student at -8% of its
# probe's Pearson says nothing) and an error is better lower, so those are compared by their difference.
SHARE_METRICS = {"accuracy", "subset_accuracy", "micro_f1", "macro_f1", "f1", "precision", "recall"}
LOWER_IS_BETTER = {"mse", "mae", "loss"}
METRIC_LABELS = {"subset_accuracy": "subset accuracy", "micro_f1": "micro-F1", "macro_f1": "macro-F1", "f1": "F1",
                 "pearson": "Pearson", "spearman": "Spearman", "mse": "MSE", "mae": "MAE"}


def quality_words(score: float | None, probe: float | None, metric: str) -> str | None:
    """"at 96% of its probe accuracy", "0.12 below its probe's Pearson", "0.3 above its probe's MSE (lower is
    better)": the student's eval `score` next to a teacher probe's, in `metric` (None when either is missing or
    NaN)."""
    if score is None or probe is None or not (math.isfinite(score) and math.isfinite(probe)):
        return None
    label = METRIC_LABELS.get(metric, metric.replace("_", "-"))
    if metric in SHARE_METRICS and probe > 0:
        return f"at {100 * score / probe:.0f}% of its probe {label}"
    if score == probe:
        return f"equal to its probe's {label}"
    words = f"{abs(score - probe):.4g} {'above' if score > probe else 'below'} its probe's {label}"
    return words + " (lower is better)" if metric in LOWER_IS_BETTER else words


def _times(factor: float, more: str, less: str) -> str:
    return f"{factor:.1f}x {more}" if factor >= 1 else f"{1 / factor:.1f}x {less}"


def _direction(factor: float) -> int:
    """1 faster, -1 slower, 0 within what one decimal shows (1.0x either way)."""
    return 0 if round(max(factor, 1 / factor), 1) == 1.0 else 1 if factor > 1 else -1


def speed_line(size: str, name: str, one: float, full: float) -> str:
    """"12.0x smaller and 9.1x faster than NAME at batch 1 (14.2x at batch 32)", from the batch-1 latency ratio `one`
    and the batch-32 throughput ratio `full` (above 1: the student is faster). Where the two point different ways (a
    student deeper but narrower than its teacher can be) it says so, "..., 1.3x slower at batch 1 but 2.1x faster at
    batch 32", rather than lead with either; 1.0x either way is "about as fast"."""
    first, second = _direction(one), _direction(full)
    if first == second != 0:
        return f"{size} and {_times(one, 'faster', 'slower')} than {name} at batch 1 ({max(full, 1 / full):.1f}x at " \
               "batch 32)"
    if first == second == 0:
        return f"{size} than {name}, about as fast at batch 1 and at batch 32"
    one_words, full_words = (_times(r, "faster", "slower") if d else "about as fast" for r, d in ((one, first),
                                                                                                  (full, second)))
    return f"{size} than {name}, {one_words} at batch 1 {'but' if first * second < 0 else 'and'} {full_words} at " \
           "batch 32"


def ratio_line(student: dict, teacher: dict, name: str, metric: str = "accuracy") -> str | None:
    """"12.0x smaller and 9.1x faster than NAME at batch 1 (14.2x at batch 32), at 96% of its probe accuracy" (what
    is known of it): both speeds, from the report's own columns (`speed_line`), then the quality (`quality_words`)."""
    if "parameters" not in teacher:
        return None
    line = speed_line(_times(teacher["parameters"] / student["parameters"], "smaller", "larger"), name,
                      teacher["latency_ms_batch1"] / student["latency_ms_batch1"],
                      student["throughput_batch32"] / teacher["throughput_batch32"])
    quality = quality_words(student.get("eval_score"), teacher.get("probe_score"), metric)
    return f"{line}, {quality}" if quality else line


def cost_report(run: dict) -> dict:
    """The measured report. `run` holds: model, processor, output_dir, config, infos, train_raw, eval_raw,
    train_features [rows, width] (or None), train_labels, eval_labels, text_column, image_column, max_length,
    eval_score (in the problem type's HEADLINE metric), problem_type, train_seconds, extraction_seconds."""
    column = run["image_column"] or run["text_column"]
    source = run["eval_raw"] if run["eval_raw"] is not None else run["train_raw"]
    run["examples"] = list(source.select(range(min(BATCH, len(source))))[column])
    student = student_cost(run["model"], run["processor"], run["examples"], run["output_dir"], run["image_column"],
                           run["max_length"], timed=False)
    # timed in turns with each teacher (the same load on both), its row the best of all those rounds
    run["timed_student"] = TimedBeside(student_runner(run["model"], run["processor"], run["image_column"],
                                                      run["max_length"]), run["examples"], THREADS)
    metric = HEADLINE[run.get("problem_type", "single_label_classification")]
    student["eval_score"] = run.get("eval_score")
    if metric == "accuracy":
        student["eval_accuracy"] = run.get("eval_score")
    teachers = []
    infos = run["infos"] or []
    specs = teacher_specs(run["config"].teachers, infos)
    for index, (spec, info) in enumerate(zip(specs, infos, strict=True)):
        teachers.append(_teacher_row(index, spec, info, run))
    student.update(run["timed_student"].figures())
    names = display_names([t["name"] for t in teachers])
    lines = [line for t, name in zip(teachers, names, strict=True) if (line := ratio_line(student, t, name, metric))]
    lines += [f"{name}: {t['note']}" for t, name in zip(teachers, names, strict=True) if t.get("note")]  # why dashes
    return {"device": device_name(), "timing_threads": THREADS, "metric": metric, "student": student,
            "teachers": teachers, "training_seconds": run.get("train_seconds"),
            "train_extraction_seconds": run.get("extraction_seconds"), "summary": lines}


def write_cost_report(output_dir: str, report: dict) -> None:
    with open(os.path.join(output_dir, COST_REPORT_NAME), "w") as f:
        json.dump(stamped(report), f, indent=2)


def card_summary(report: dict) -> dict:
    """What the card shows: one row per model, the device, the training and extraction times, the summary lines."""
    names = display_names([t["name"] for t in report["teachers"]])
    rows = [{"name": "student", **report["student"]}] + [{**t, "name": n} for t, n in zip(report["teachers"], names,
                                                                                       strict=True)]
    return {"device": report["device"], "timing_threads": report.get("timing_threads"), "rows": rows,
            "summary": report["summary"], "metric": report.get("metric", "accuracy"),
            "training_seconds": report["training_seconds"],
            "train_extraction_seconds": report["train_extraction_seconds"]}

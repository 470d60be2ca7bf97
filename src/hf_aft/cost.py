"""Cost and benefit, measured (`OUT/cost_report.json` and the card's "Cost and benefit" section): for the student and
each teacher, parameters, size on disk, CPU latency per example at batch 1 and throughput at batch 32 (measured on the
machine that trained, named in the report), the teachers' extraction time and the training time; and the student's
eval accuracy next to each teacher's linear-probe accuracy on the same split (a standardised logistic regression, as
`hf-aft rank-teachers` uses, fitted on the teacher's training features and scored on its eval features, which are
extracted through the same cache as training). One line per teacher sums it up, e.g. "12.0x smaller and 9.1x faster
than all-mpnet-base-v2, at 96% of its probe accuracy". `--skip_cost_report` turns it off (very large teachers).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
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
from .tokens import encode_padded
from .word_features import WordTeacher, is_word_features, with_word_or_teacher_features, word_matrix
from .words import is_words_dataset, split_words

COST_REPORT_NAME = "cost_report.json"
BATCH = 32
STUDENT_WEIGHTS = ("model", "pytorch_model", "adapter_model")


def seconds_per_call(fn, min_repeats: int = 3, max_repeats: int = 20, budget_s: float = 1.0) -> float:
    """Median wall time of `fn()` in seconds, after one warm-up call: at least `min_repeats` and at most `max_repeats`
    timed calls, stopping once `budget_s` seconds have been spent."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < max_repeats and (len(times) < min_repeats or time.perf_counter() - start < budget_s):
        tick = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tick)
    return statistics.median(times)


def speed(fn_of_batch, examples: list) -> dict:
    """CPU latency per example at batch 1 (ms) and throughput at batch 32 (examples/s) of `fn_of_batch(list)`."""
    batch = (examples * (BATCH // max(len(examples), 1) + 1))[:BATCH]
    return {"latency_ms_batch1": 1000 * seconds_per_call(lambda: fn_of_batch(batch[:1])),
            "throughput_batch32": BATCH / seconds_per_call(lambda: fn_of_batch(batch))}


def student_weight_files(output_dir: str) -> dict[str, Path]:
    """The student's weight files at the top of its output dir (the adapter only, for a PEFT student)."""
    return {name: path for name, path in weight_files(Path(output_dir)).items()
            if "/" not in name and name.split(".")[0].split("-")[0] in STUDENT_WEIGHTS}


def student_cost(model, processor, examples: list, output_dir: str, image_column: str | None,
                 max_length: int) -> dict:
    """Parameters, bytes on disk and CPU speed of the trained student (tokenizing or preprocessing included)."""
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

    return {"parameters": sum(p.numel() for p in model.parameters()),
            "bytes": folder_size(student_weight_files(output_dir)), **speed(run, examples)}


def teacher_cost(spec: str, revision: str, dataset, options, text_column: str, image_column: str | None,
                 examples: list) -> dict:
    """Parameters, bytes of its weight files and CPU speed of one teacher (its tokenizer or processor and pooling
    included: what producing its features costs per example)."""
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
                **speed(teacher, examples)}
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
                                run["examples"]))
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


def ratio_line(student: dict, teacher: dict, name: str, metric: str = "accuracy") -> str | None:
    """"12.0x smaller and 9.1x faster than NAME, at 96% of its probe accuracy" (what is known of it)."""
    if "parameters" not in teacher:
        return None
    size = teacher["parameters"] / student["parameters"]
    fast = teacher["latency_ms_batch1"] / student["latency_ms_batch1"]
    words = [f"{size:.1f}x smaller" if size >= 1 else f"{1 / size:.1f}x larger",
             f"{fast:.1f}x faster" if fast >= 1 else f"{1 / fast:.1f}x slower"]
    line = f"{words[0]} and {words[1]} than {name}"
    if teacher.get("probe_score") and student.get("eval_score") is not None:
        share = 100 * student["eval_score"] / teacher["probe_score"]
        line += f", at {share:.0f}% of its probe {metric.replace('_', '-')}"
    return line


def cost_report(run: dict) -> dict:
    """The measured report. `run` holds: model, processor, output_dir, config, infos, train_raw, eval_raw,
    train_features [rows, width] (or None), train_labels, eval_labels, text_column, image_column, max_length,
    eval_score (in the problem type's HEADLINE metric), problem_type, train_seconds, extraction_seconds."""
    column = run["image_column"] or run["text_column"]
    source = run["eval_raw"] if run["eval_raw"] is not None else run["train_raw"]
    run["examples"] = list(source.select(range(min(BATCH, len(source))))[column])
    student = student_cost(run["model"], run["processor"], run["examples"], run["output_dir"], run["image_column"],
                           run["max_length"])
    metric = HEADLINE[run.get("problem_type", "single_label_classification")]
    student["eval_score"] = run.get("eval_score")
    if metric == "accuracy":
        student["eval_accuracy"] = run.get("eval_score")
    teachers = []
    infos = run["infos"] or []
    specs = teacher_specs(run["config"].teachers, infos)
    for index, (spec, info) in enumerate(zip(specs, infos, strict=True)):
        teachers.append(_teacher_row(index, spec, info, run))
    names = display_names([t["name"] for t in teachers])
    lines = [line for t, name in zip(teachers, names, strict=True) if (line := ratio_line(student, t, name, metric))]
    return {"device": device_name(), "metric": metric, "student": student, "teachers": teachers,
            "training_seconds": run.get("train_seconds"), "train_extraction_seconds": run.get("extraction_seconds"),
            "summary": lines}


def write_cost_report(output_dir: str, report: dict) -> None:
    with open(os.path.join(output_dir, COST_REPORT_NAME), "w") as f:
        json.dump(stamped(report), f, indent=2)


def card_summary(report: dict) -> dict:
    """What the card shows: one row per model, the device, the training and extraction times, the summary lines."""
    names = display_names([t["name"] for t in report["teachers"]])
    rows = [{"name": "student", **report["student"]}] + [{**t, "name": n} for t, n in zip(report["teachers"], names,
                                                                                       strict=True)]
    return {"device": report["device"], "rows": rows, "summary": report["summary"],
            "metric": report.get("metric", "accuracy"), "training_seconds": report["training_seconds"],
            "train_extraction_seconds": report["train_extraction_seconds"]}

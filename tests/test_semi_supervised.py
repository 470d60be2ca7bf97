"""Unlabelled rows and distillation: what a user relies on when they pass `--unlabeled_dataset` (or
`AFTTrainer(unlabeled_dataset=...)`) and `--distill`.

- the task loss reads the labelled rows only, whatever label column the unlabelled rows carry;
- the transfer term compares the student with the teachers on every row of a batch, the unlabelled ones included;
- the probe's targets of labelled rows are out-of-fold (no row's target comes from a probe that saw its label), and
  the fitted probe is cached, keyed by the feature values and labels;
- mixed batches are the same under 2 processes as under 1, and after a resume as in an uninterrupted run;
- `hf-aft train` / `hf-aft features` refuse bad unlabelled data in one line, and a run's card and summary say which
  terms were on.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from unittest import mock

import datasets
import numpy as np
import pytest
import tiny
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file
from sklearn.base import BaseEstimator, ClassifierMixin
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import hf_aft.teachers
from hf_aft import AFTConfig, AFTError, AFTTrainer, distillation, extract_teacher_features
from hf_aft import unlabeled_data as unlabeled_module
from hf_aft.card import probe_error, read_baseline
from hf_aft.commands import main
from hf_aft.losses import distillation_loss
from hf_aft.unlabeled import UNLABELED, MixedSampler
from hf_aft.unlabeled_data import check_no_leakage, check_pool_leakage

N_LABELLED, N_POOL = 24, 16
ERROR = "hf-aft: error:"


# ---------------------------------------------------------------- data: labelled rows and a pool of unlabelled ones
@pytest.fixture(scope="module")
def tokenizer(student_dir):
    return AutoTokenizer.from_pretrained(student_dir)


@pytest.fixture(scope="module")
def labelled(teacher_dirs, tokenizer, tmp_path_factory):
    """24 labelled rows (column `label`) with both teachers' features, tokenized."""
    data = extract_teacher_features(tiny.sentiment_dataset(N_LABELLED, seed=0), [str(d) for d in teacher_dirs],
                                    cache_dir=tmp_path_factory.mktemp("features"))
    return data.map(lambda b: tokenizer(b["text"]), batched=True)


@pytest.fixture(scope="module")
def pool(teacher_dirs, tokenizer, tmp_path_factory):
    """16 other rows prepared the same way; they still carry their (true) `label` column, which must never be read."""
    data = extract_teacher_features(tiny.sentiment_dataset(N_POOL, seed=7), [str(d) for d in teacher_dirs],
                                    cache_dir=tmp_path_factory.mktemp("features"))
    return data.map(lambda b: tokenizer(b["text"]), batched=True)


def make_trainer(student_dir, out, train, unlabeled, eval_dataset=None, image_column=None, **config):
    settings = dict(output_dir=str(out), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-2,
                    logging_steps=1, save_strategy="no", report_to="none", seed=0, disable_tqdm=True, use_cpu=True)
    settings.update(config)
    model = AutoModelForSequenceClassification.from_pretrained(student_dir)
    return AFTTrainer(model=model, args=AFTConfig(**settings), train_dataset=train, unlabeled_dataset=unlabeled,
                      eval_dataset=eval_dataset, image_column=image_column,
                      processing_class=AutoTokenizer.from_pretrained(student_dir))


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def loss_logs(trainer) -> list[dict]:
    """The per-step training logs, without the timings."""
    return [{k: v for k, v in entry.items() if "runtime" not in k and "per_second" not in k}
            for entry in trainer.state.log_history]


def mixed_batch(trainer) -> dict:
    """The first training batch, as the trainer's own data loader makes it; it holds both kinds of rows."""
    batch = dict(next(iter(trainer.get_train_dataloader())))
    labelled_rows = (batch["labels"] != UNLABELED).sum().item()
    assert 0 < labelled_rows < len(batch["labels"]), batch["labels"]
    return batch


def with_features(dataset, rows: list, features: np.ndarray):
    """`dataset` whose `teacher_features` of `rows` are replaced (provenance kept)."""
    values = np.asarray(dataset["teacher_features"], dtype=np.float32)
    values[rows] = features
    changed = dataset.remove_columns("teacher_features").add_column(
        "teacher_features", values.tolist(), feature=dataset.features["teacher_features"])
    changed.info.description = dataset.info.description
    return changed


# ---------------------------------------------------------------- 1. unlabelled rows never enter the task loss
def test_a_poisoned_label_column_in_the_unlabelled_rows_changes_nothing(student_dir, tmp_path, labelled, pool):
    truth = np.asarray(pool["label"])
    clean = pool.remove_columns("label")
    poisoned = pool.map(lambda row: {"label": 1 - row["label"]})  # every label flipped, in both label columns
    poisoned = poisoned.add_column("labels", (1 - truth).tolist())
    assert (np.asarray(poisoned["label"]) != truth).all()

    runs = {}
    for name, unlabeled in (("clean", clean), ("poisoned", poisoned)):
        runs[name] = make_trainer(student_dir, tmp_path / name, labelled, unlabeled)
        runs[name].train()
    assert [e for e in loss_logs(runs["clean"]) if "task_loss" in e]  # it trained, with the terms logged
    assert loss_logs(runs["poisoned"]) == loss_logs(runs["clean"])
    for key, value in weights(runs["clean"]).items():
        assert torch.equal(weights(runs["poisoned"])[key], value), key
    # The mixed dataset marks every unlabelled row -100, whatever label it came with.
    joined = runs["poisoned"].train_dataset
    assert (np.asarray(joined["labels"][N_LABELLED:]) == UNLABELED).all()
    assert np.asarray(joined["labels"][:N_LABELLED]).tolist() == labelled["label"]


def test_the_task_loss_of_a_mixed_batch_is_cross_entropy_over_its_labelled_rows(student_dir, tmp_path, labelled,
                                                                                pool):
    trainer = make_trainer(student_dir, tmp_path, labelled, pool, beta=0.5, distill_weight=2.0)
    batch = mixed_batch(trainer)
    model = trainer.model.train()
    with torch.no_grad():  # a head with confident logits, so that any other weighting of the rows shows
        model.classifier.weight.normal_(std=2.0, generator=torch.Generator().manual_seed(0))
    total = trainer.compute_loss(model, dict(batch))
    task, transfer, distill = (trainer._metrics[name][-1] for name in ("task_loss", "transfer_loss", "distill_loss"))

    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "token_type_ids", "attention_mask")}
    with torch.no_grad():
        logits = model(**inputs).logits  # the tiny student has no dropout: the same logits as in compute_loss
    labels = batch["labels"]
    mask = labels != UNLABELED
    expected = F.cross_entropy(logits[mask], labels[mask])  # the mean over the labelled rows only
    torch.testing.assert_close(task, expected, rtol=1e-5, atol=1e-6)
    assert not torch.isclose(task, F.cross_entropy(logits[mask], labels[mask], reduction="sum") / len(labels))
    assert total.item() == pytest.approx(task.item() + 0.5 * transfer.item() + 2.0 * distill.item(), rel=1e-5)


# ---------------------------------------------------------------- 2. the transfer term sees the unlabelled rows
def test_the_transfer_term_compares_every_row_of_a_mixed_batch(student_dir, tmp_path, labelled, pool):
    trainer = make_trainer(student_dir, tmp_path, labelled, pool, distill="none")
    batch = mixed_batch(trainer)
    unlabelled_rows = batch["labels"] == UNLABELED
    seen = []
    forward = trainer.transfer_loss.forward

    def spy(student_features, teacher_features):
        seen.append(teacher_features.detach().clone())
        return forward(student_features, teacher_features)

    trainer.transfer_loss.forward = spy
    trainer.model.train()

    def terms(features):
        trainer.compute_loss(trainer.model, dict(batch, teacher_features=features))
        return trainer._metrics["task_loss"][-1].item(), trainer._metrics["transfer_loss"][-1].item()

    task, transfer = terms(batch["teacher_features"])
    # The kernel is over all rows of the batch, the unlabelled ones included, with their own teacher features.
    assert torch.equal(seen[-1], batch["teacher_features"])
    # Other teacher features for the unlabelled rows alone: the transfer term changes, the task loss does not.
    other = batch["teacher_features"].clone()
    other[unlabelled_rows] = torch.randn(int(unlabelled_rows.sum()), other.shape[1], generator=torch.Generator()
                                         .manual_seed(0))
    other_task, other_transfer = terms(other)
    assert other_task == task
    assert abs(other_transfer - transfer) > 1e-3 * abs(transfer)


# ---------------------------------------------------------------- 3. cross-fitted probe targets
class EchoProbe(ClassifierMixin, BaseEstimator):
    """A 'probe' that remembers every row it was fitted on (by the id in feature 0) and, asked about such a row,
    predicts its label with certainty; any other row gets the uniform distribution. A target that is not uniform
    came from a probe that saw that row."""

    def fit(self, X, y):  # noqa: N803 (scikit-learn's names)
        self.classes_ = np.unique(y)
        self.seen_ = dict(zip(X[:, 0].astype(int).tolist(), y.tolist(), strict=True))
        return self

    def predict_proba(self, X):  # noqa: N803
        out = np.full((len(X), len(self.classes_)), 1 / len(self.classes_))
        for i, row in enumerate(X[:, 0].astype(int).tolist()):
            if row in self.seen_:
                out[i] = np.eye(len(self.classes_))[list(self.classes_).index(self.seen_[row])]
        return out

    def predict(self, X):  # noqa: N803
        return self.classes_[self.predict_proba(X).argmax(1)]


def test_no_labelled_row_gets_its_target_from_a_probe_that_saw_it(monkeypatch):
    from sklearn.pipeline import make_pipeline

    monkeypatch.setattr(distillation, "probe_at", lambda c=1.0: make_pipeline(EchoProbe()))
    labels = np.array([0, 1, 2] * 8)
    ids = np.arange(len(labels), dtype=np.float32)[:, None]
    fit = distillation.fit_probe(ids, labels, ids[:6], num_classes=3, seed=0)
    assert fit.folds == 5
    np.testing.assert_allclose(np.exp(fit.labeled), 1 / 3, atol=1e-6)  # out-of-fold: never its own label echoed
    # The unlabelled rows get the probe fitted on every labelled row (here: rows 0-5 again, so it knows them).
    np.testing.assert_allclose(np.exp(fit.unlabeled).argmax(1), labels[:6])
    assert np.exp(fit.unlabeled).max(1).min() > 0.99


def test_probe_targets_are_out_of_fold_with_the_real_probe():
    """One-hot features that identify each row: a probe fitted on a row echoes its label (in-fold accuracy 1.0);
    one that never saw the row knows nothing of it. (C fixed at 1: cross-validation would pick the strongest
    penalty here, as no fold can learn anything of the rows it did not see, and the full probe would know nothing.)"""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 10)
    rng.shuffle(labels)
    features = np.eye(len(labels), dtype=np.float32)
    assert distillation.probe_at().fit(features, labels).score(features, labels) == 1.0  # in-fold would echo
    fit = distillation.fit_probe(features, labels, features[:4], num_classes=2, seed=0, cs=(1.0,))
    own = np.exp(fit.labeled[np.arange(len(labels)), labels])
    assert own.max() < 0.55 and fit.accuracy <= 0.55
    assert (np.exp(fit.unlabeled[np.arange(4), labels[:4]]) > 0.8).all()  # the full probe knows rows 0-3


@pytest.mark.parametrize("transfer, unlabeled, expected", [("aft", False, "probe"), ("kd", False, "probe"),
                                                            ("none", False, "none"), ("none", True, "probe")])
def test_distill_auto_is_the_probe_beside_a_term_and_off_for_plain_fine_tuning(transfer, unlabeled, expected):
    # The measured default (docs/guides/unlabelled-data.md): the STL baseline, --transfer none alone, stays plain.
    assert AFTConfig(output_dir="o", transfer=transfer).resolved_distill(unlabeled) == expected
    assert AFTConfig(output_dir="o", transfer=transfer, distill="none").resolved_distill(unlabeled) == "none"


def test_distill_auto_steps_aside_when_the_labels_cannot_cross_fit_a_probe(student_dir, tmp_path, labelled, caplog):
    one_row_of_class_1 = labelled.select([i for i, y in enumerate(labelled["label"]) if y == 0][:7]
                                         + [labelled["label"].index(1)])
    with caplog.at_level("WARNING", logger="hf_aft.training_rows"):
        trainer = make_trainer(student_dir, tmp_path, one_row_of_class_1, None)
    assert trainer.rows.distill == "none" and "distill_targets" not in trainer.train_dataset.column_names
    assert "probe distillation (--distill auto) is off for this run" in caplog.text
    trainer.train()
    steps = [log for log in loss_logs(trainer) if "loss" in log]
    assert steps and all("distill_loss" not in log and "transfer_loss" in log for log in steps)
    with pytest.raises(AFTError, match="at least 2 classes with 2 or more"):  # asked for by name: refused
        make_trainer(student_dir, tmp_path, one_row_of_class_1, None, distill="probe")


# ---------------------------------------------------------------- 4. the probe cache
def test_a_class_with_one_labelled_row_gets_no_target_and_the_term_skips_it():
    # --beta auto's held-out split can leave one row of a class: that row has no honest out-of-fold target.
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * 6 + [2])
    fit = distillation.fit_probe(rng.normal(size=(13, 4)), labels, rng.normal(size=(3, 4)), num_classes=3)
    assert np.isnan(fit.labeled[12]).all() and np.isfinite(fit.labeled[:12]).all() and np.isfinite(fit.unlabeled).all()
    logits = torch.randn(13, 3, requires_grad=True)
    loss = distillation_loss(logits, torch.from_numpy(fit.labeled), temperature=2.0)
    assert torch.allclose(loss, distillation_loss(logits[:12], torch.from_numpy(fit.labeled[:12]), temperature=2.0))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad[12] == 0).all()
    # its accuracy is over the 12 rows it scored, and so is the standard error the summary and the card give
    right = (fit.labeled[:12].argmax(1) == labels[:12]).sum()
    assert fit.scored == 12 and fit.accuracy == pytest.approx(right / 12)
    p = fit.accuracy
    assert probe_error({"probe_accuracy": p, "probe_scored": 12, "labeled_rows": 13}) == \
        f", standard error {(p * (1 - p) / 12) ** 0.5:.3f}"
    with pytest.raises(AFTError, match="at least 2 classes with 2 or more.*--distill none.*--augment_copies"):
        distillation.fit_probe(rng.normal(size=(7, 4)), np.array([0] * 6 + [1]), np.empty((0, 4)), num_classes=2)


def test_the_probe_is_cached_and_refitted_when_features_or_labels_change(labelled, pool, monkeypatch, tmp_path):
    calls = []
    fit_probe = distillation.fit_probe

    def counted(*args, **kwargs):
        calls.append(1)
        return fit_probe(*args, **kwargs)

    monkeypatch.setattr(distillation, "fit_probe", counted)
    train = labelled.rename_column("label", "labels")

    def targets(train=train, unlabeled=pool):
        return distillation.probe_targets(train, unlabeled, 2, seed=0, cache_dir=tmp_path)

    first = targets()
    assert len(calls) == 1 and not first.from_cache and len(list(tmp_path.glob("probe-*.npz"))) == 1
    again = targets()
    assert len(calls) == 1 and again.from_cache  # loaded, not refitted
    np.testing.assert_array_equal(again.labeled, first.labeled)
    np.testing.assert_array_equal(again.unlabeled, first.unlabeled)
    assert again.accuracy == first.accuracy and again.folds == first.folds and again.scored == first.scored

    changed_feature = with_features(train, [0], np.asarray(train[0]["teacher_features"]) + 1.0)
    assert not targets(train=changed_feature).from_cache and len(calls) == 2
    flipped = train.map(lambda row, i: {"labels": 1 - row["labels"] if i == 3 else row["labels"]}, with_indices=True)
    assert not targets(train=flipped).from_cache and len(calls) == 3
    changed_pool = with_features(pool, [5], np.zeros(20, np.float32))
    refit = targets(unlabeled=changed_pool)
    assert not refit.from_cache and len(calls) == 4
    assert not np.array_equal(refit.unlabeled[5], first.unlabeled[5])
    assert len(list(tmp_path.glob("probe-*.npz"))) == 4
    assert targets().from_cache and len(calls) == 4  # the first fit is still there


def test_the_trainer_reuses_the_cached_probe(student_dir, labelled, pool, monkeypatch, tmp_path):
    """A second run on the same data and features loads the probe from beside the teacher features."""
    calls = []
    fit_probe = distillation.fit_probe
    monkeypatch.setattr(distillation, "fit_probe", lambda *a, **k: calls.append(1) or fit_probe(*a, **k))
    first = make_trainer(student_dir, tmp_path, labelled, pool)
    fitted = len(calls)
    second = make_trainer(student_dir, tmp_path, labelled, pool)
    assert len(calls) == fitted <= 1 and second.rows.probe_accuracy == first.rows.probe_accuracy
    assert list(distillation.default_cache_dir().glob("probe-*.npz"))
    # Each row's target is its own: the out-of-fold targets in the labelled rows' order, then the unlabelled ones.
    fit = distillation.probe_targets(labelled.rename_column("label", "labels"), pool, 2, seed=0)
    assert fit.from_cache and len(calls) == fitted
    np.testing.assert_array_equal(second.train_dataset["distill_targets"], np.concatenate([fit.labeled,
                                                                                           fit.unlabeled]))
    np.testing.assert_array_equal(second.train_dataset["distill_targets"], first.train_dataset["distill_targets"])


# ---------------------------------------------------------------- 6. mixing, and resuming it
def test_mixed_sampler_spreads_labelled_rows_and_replays_an_epoch_exactly():
    sampler = MixedSampler(6, 10, seed=3)
    epoch0 = list(sampler)
    assert len(sampler) == 16 and sorted(epoch0) == list(range(16))  # every row once per epoch by default
    labelled_at = [i for i, row in enumerate(epoch0) if row < 6]
    assert all(2 <= b - a <= 3 for a, b in zip(labelled_at, labelled_at[1:], strict=False))  # evenly spread
    assert list(MixedSampler(6, 10, seed=3)) == epoch0  # deterministic in (seed, epoch): a resumed run replays it
    sampler.set_epoch(1)
    assert list(sampler) != epoch0 and sorted(sampler) == list(range(16))  # a fresh order each epoch
    sampler.set_epoch(0)
    assert list(sampler) == epoch0

    half = MixedSampler(4, 30, labeled_fraction=0.5, seed=0)  # 4 labelled rows as half of each batch: cycled
    rows = list(half)
    assert len(rows) == 60 and sorted(r for r in rows if r >= 4) == list(range(4, 34))
    labelled_rows = [r for r in rows if r < 4]
    assert len(labelled_rows) == 30 and rows[1::2] == labelled_rows  # every other row is labelled
    assert all(sorted(labelled_rows[i:i + 4]) == [0, 1, 2, 3] for i in range(0, 28, 4))  # whole passes
    assert len({tuple(labelled_rows[i:i + 4]) for i in range(0, 28, 4)}) > 1  # each pass in a fresh order


def test_labeled_fraction_sets_the_share_of_every_training_batch(student_dir, tmp_path, labelled, pool):
    trainer = make_trainer(student_dir, tmp_path, labelled, pool, labeled_fraction=0.25)
    batches = list(trainer.get_train_dataloader())
    assert len(batches) == N_LABELLED * 4 // 8  # the 24 labelled rows once, as a quarter of each batch of 8
    assert all((batch["labels"] != UNLABELED).sum() == 2 for batch in batches)
    labels = torch.cat([batch["labels"] for batch in batches])
    assert sorted(labels[labels != UNLABELED].tolist()) == sorted(labelled["label"])  # each labelled row once
    assert trainer.terms_summary()["labeled_fraction"] == 0.25


@pytest.mark.parametrize("fraction, kind", [(0.999, "0.008 unlabelled"), (0.05, "0.4 labelled")])
def test_a_labelled_share_that_leaves_a_kind_out_of_every_batch_is_refused(student_dir, tmp_path, labelled, pool,
                                                                           csv_data, teacher_dirs, capsys, fraction,
                                                                           kind):
    """0.999 of a batch of 8 drew an unlabelled row once in 125 batches, and an epoch (each set seen once at that
    share) ran 500 times the steps, silently. Each batch must hold a row of each kind: refused in one line, by the
    command before any teacher runs and by AFTTrainer, with the range that works."""
    fragment = f"--labeled_fraction {fraction:g} leaves {kind} rows in each batch of 8: give one from 0.125 to 0.875"
    with pytest.raises(AFTError, match=re.escape(fragment)):
        make_trainer(student_dir, tmp_path, labelled, pool, labeled_fraction=fraction)
    with mock.patch("hf_aft.teachers.TextTeacher.load", side_effect=AssertionError("a teacher was loaded")):
        assert main(train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "out", "--unlabeled_dataset",
                               str(csv_data / "pool"), "--labeled_fraction", str(fraction))) == 2
    assert fragment in capsys.readouterr().err and not (tmp_path / "out").exists()
    make_trainer(student_dir, tmp_path, labelled, pool, labeled_fraction=0.875)  # one unlabelled row a batch: fine
    from hf_aft.option_checks import check_batch_mix

    with pytest.raises(AFTError, match=r"each batch of 16: give one from 0\.063 to 0\.937"):  # ends rounded inwards
        check_batch_mix(AFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=16, labeled_fraction=0.95))
    for end in (0.063, 0.937):  # the range's ends are themselves accepted
        check_batch_mix(AFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=16, labeled_fraction=end))


def test_a_resumed_run_sees_the_batches_and_trains_the_weights_of_an_uninterrupted_one(student_dir, tmp_path,
                                                                                     labelled, pool):
    """40 rows a 8 per batch: 5 steps per epoch. The run is stopped at step 7 (two steps into the second epoch) and
    resumed to step 13 (the third epoch too)."""
    constant = {"lr_scheduler_type": "constant"}  # so that a 7-step run is the start of a 13-step one

    def run(out, steps, resume=None, **config):
        trainer = make_trainer(student_dir, out, labelled, pool, max_steps=steps, **constant, **config)
        batches, compute_loss = [], trainer.compute_loss

        def spy(model, inputs, *args, **kwargs):
            if model.training:
                batches.append((inputs["labels"].tolist(), inputs["input_ids"].tolist(),
                                inputs["teacher_features"][:, 0].tolist(), inputs["distill_targets"][:, 0].tolist()))
            return compute_loss(model, inputs, *args, **kwargs)

        trainer.compute_loss = spy
        trainer.train(resume_from_checkpoint=resume)
        return trainer, batches

    straight, straight_batches = run(tmp_path / "straight", 13)
    _, first_batches = run(tmp_path / "stopped", 7, save_strategy="steps", save_steps=7)
    resumed, resumed_batches = run(tmp_path / "stopped", 13, resume=str(tmp_path / "stopped" / "checkpoint-7"))

    assert len(straight_batches) == 13 and first_batches == straight_batches[:7]
    assert resumed_batches == straight_batches[7:]
    assert straight_batches[:5] != straight_batches[5:10]  # the epochs differ, so replaying the wrong one would show
    logs = {name: [e for e in loss_logs(t) if "task_loss" in e and e["step"] > 7] for name, t in (
        ("straight", straight), ("resumed", resumed))}
    assert [e["step"] for e in logs["resumed"]] == [e["step"] for e in logs["straight"]] == list(range(8, 14))
    for key in ("task_loss", "transfer_loss", "distill_loss"):
        np.testing.assert_allclose([e[key] for e in logs["resumed"]], [e[key] for e in logs["straight"]],
                                   rtol=1e-5)
    for key, value in weights(straight).items():
        torch.testing.assert_close(weights(resumed)[key], value, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- 7, 8. the command line
@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    """A labelled folder (train.csv, test.csv) and an unlabelled one (train.csv, with a label column to be ignored)."""
    root = tmp_path_factory.mktemp("csv")
    for split, n, seed in (("train", N_LABELLED, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(root / "data" / f"{split}.csv")
    tiny.sentiment_dataset(N_POOL, seed=7).to_csv(root / "pool" / "train.csv")
    return root


def train_args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            *map(str, teacher_dirs), "--output_dir", str(out), "--per_device_train_batch_size", "8",
            "--max_steps", "3", "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true",
            "--use_cpu", "true", *extra]


def assert_one_line_error(returncode, stderr, *fragments):
    assert returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def no_teacher(monkeypatch):
    """Fail the test if any text teacher is loaded."""

    def load(*args, **kwargs):
        raise AssertionError("a teacher was loaded")

    monkeypatch.setattr(hf_aft.teachers.TextTeacher, "load", load)


@pytest.fixture(scope="module")
def bad_pools(csv_data):
    """Unlabelled sources that must be refused, each as a folder."""
    root = csv_data / "bad"
    root.mkdir()
    texts = tiny.sentiment_dataset(6, seed=9)
    two = texts.rename_column("text", "sentence").add_column("title", ["t"] * len(texts))  # which one is the text?
    two.to_csv(root / "no_text_column" / "train.csv")
    (root / "empty_text").mkdir()
    (root / "empty_text" / "train.csv").write_text("text,label\ngood movie,1\n,0\nbad film,0\n")
    images = tiny.image_dataset(4).rename_column("image", "text")  # images where the labelled data has text
    datasets.DatasetDict({"train": images}).save_to_disk(root / "images")
    empty = datasets.Dataset.from_dict({"text": []}, features=datasets.Features({"text": datasets.Value("string")}))
    datasets.DatasetDict({"train": empty, "other": texts}).save_to_disk(root / "empty_split",
                                                                       num_shards={"train": 1, "other": 1})
    (root / "header_only").mkdir()
    (root / "header_only" / "train.csv").write_text("text,label\n")  # datasets itself cannot load an empty csv
    test_texts = datasets.Dataset.from_csv(str(csv_data / "data" / "test.csv"))["text"]
    leaky = datasets.Dataset.from_dict({"text": [*texts["text"], test_texts[3], test_texts[5]]})
    leaky.to_csv(root / "leaky" / "train.csv")
    return root


def test_bad_unlabelled_data_is_refused_in_one_line_before_any_teacher_runs(student_dir, teacher_dirs, csv_data,
                                                                            bad_pools, tmp_path, capsys, no_teacher):
    out = tmp_path / "out"
    args = train_args(student_dir, teacher_dirs, csv_data / "data", out)

    def fails(source, *fragments, split=None):
        extra = ["--unlabeled_dataset", str(source)] + (["--unlabeled_split", split] if split else [])
        returncode = main(args + extra)
        assert_one_line_error(returncode, capsys.readouterr().err, *fragments)
        assert not out.exists() or not any(out.iterdir())

    fails(bad_pools / "no_text_column", "column 'text' not found", "'sentence'", "'title'")
    fails(bad_pools / "empty_text", "unlabelled", "row 1 has an empty text in 'text'")
    fails(bad_pools / "images", "unlabelled", "holds image but the labelled data's holds text")
    fails(bad_pools / "empty_split", "unlabelled", "split is empty")
    fails(bad_pools / "header_only", str(bad_pools / "header_only"))
    fails(csv_data / "pool", "--unlabeled_dataset", "split 'unlabeled' not found",
          "['train']: name one of them with --unlabeled_split",
          split="unlabeled")
    fails(bad_pools / "leaky", "2 rows of the unlabelled", "also in the eval (test) split (first at row 6)",
          "leakage")
    # The real entry point, in a fresh process: exit status 2, one line on stderr, no traceback.
    result = subprocess.run([sys.executable, "-m", "hf_aft", *args, "--unlabeled_dataset", str(bad_pools / "leaky")],
                            capture_output=True, text=True, timeout=300)
    assert_one_line_error(result.returncode, result.stderr, "leakage")


def test_features_saves_the_unlabelled_split_and_train_uses_it_without_any_teacher(
        student_dir, teacher_dirs, csv_data, bad_pools, tmp_path, monkeypatch, capsys, caplog):
    features = tmp_path / "features"
    command = ["features", "--teachers", *map(str, teacher_dirs), "--dataset_name", str(csv_data / "data"),
               "--output_dir", str(features)]
    assert main(command + ["--unlabeled_dataset", str(bad_pools / "leaky")]) == 2  # leakage into the test split
    assert "leakage" in capsys.readouterr().err and not features.exists()
    assert main(command + ["--unlabeled_dataset", str(csv_data / "pool")]) == 0
    assert any("the unlabelled data's column 'label' is dropped, never read" in m for m in caplog.messages)

    saved = datasets.load_from_disk(str(features))
    assert set(saved) == {"train", "test", "unlabeled"}
    unlabeled = saved["unlabeled"]
    assert len(unlabeled) == N_POOL and "label" not in unlabeled.column_names  # the pool's labels are dropped
    assert unlabeled["text"] == tiny.sentiment_dataset(N_POOL, seed=7)["text"]
    assert unlabeled.features["teacher_features"].length == 12 + 8
    # The same features the teachers give these texts (the one feature path).
    direct = extract_teacher_features(tiny.sentiment_dataset(N_POOL, seed=7), [str(d) for d in teacher_dirs])
    np.testing.assert_allclose(unlabeled["teacher_features"], direct["teacher_features"], rtol=1e-6)
    assert "unlabeled" in json.loads((features / "teachers.json").read_text())["splits"]

    def no_teacher(*args, **kwargs):
        raise AssertionError("training loaded a teacher")

    monkeypatch.setattr(hf_aft.teachers.TextTeacher, "load", no_teacher)
    out = tmp_path / "student"
    args = train_args(student_dir, [], features, out, "--unlabeled_dataset", str(features), "--unlabeled_split",
                      "unlabeled", "--skip_cost_report", "true")
    args.remove("--teachers")
    assert main(args) == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert (summary["unlabeled_rows"], summary["labeled_rows"], summary["distill"]) == (N_POOL, N_LABELLED, "probe")
    assert set(summary["scales"]) == {"teacher-a", "teacher-b"}
    # Without --unlabeled_dataset the saved pool is not read, and the run says how to read it.
    without_pool = args[:args.index("--unlabeled_dataset")] + args[args.index("--unlabeled_split") + 2:]
    without_pool[without_pool.index(str(out))] = str(tmp_path / "no-pool")
    assert main(without_pool) == 0
    assert any(f"also holds a split 'unlabeled' of {N_POOL} rows, unlabelled, which this run does not read: add "
               f"--unlabeled_dataset {features} --unlabeled_split unlabeled" in m for m in caplog.messages)
    # Plain fine-tuning (the STL baseline, as the demo runs it beside AFT) reads no pool by design: no advice.
    caplog.clear()
    monkeypatch.setattr(hf_aft.errors, "_WARNED", set())  # the advice is said once per process
    baseline = [*without_pool, "--transfer", "none"]
    baseline[baseline.index(str(tmp_path / "no-pool"))] = str(tmp_path / "baseline")
    assert main(baseline) == 0
    assert not any("which this run does not read" in m for m in caplog.messages)


@pytest.mark.parametrize("transfer", ["aft", "kd", "rkd", "none"])
def test_train_with_unlabelled_data_says_which_terms_were_on(student_dir, teacher_dirs, csv_data, tmp_path, capsys,
                                                            transfer):
    out = tmp_path / "out"
    extra = ["--unlabeled_dataset", str(csv_data / "pool"), "--transfer", transfer]
    if transfer != "aft":  # the default run measures its cost too
        extra += ["--skip_cost_report", "true"]
    assert main(train_args(student_dir, teacher_dirs, csv_data / "data", out, *extra)) == 0
    stdout = capsys.readouterr().out

    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["transfer"] == transfer and summary["distill"] == "probe"
    assert (summary["unlabeled_rows"], summary["labeled_rows"]) == (N_POOL, N_LABELLED)
    assert summary["labeled_fraction"] == 0.5  # the default with unlabelled data
    accuracy = summary["probe_accuracy"]
    assert 0 <= accuracy <= 1
    # 3 steps of 8 rows, half of them labelled: 12 unlabelled rows drawn of the pool's 16, and the card says so
    assert summary["unlabeled_rows_drawn"] == 12 and summary["labeled_rows_drawn"] == 12  # and 12 of the 24 labelled
    named = "" if transfer == "none" else f"{transfer.upper()} transfer (beta 0.1); "  # which transfer, by name
    assert (f"terms: {named}distillation from the teachers' probe (weight 1, temperature 1); {N_POOL} unlabelled rows "
            f"(12 of them drawn in the steps trained) beside {N_LABELLED} labelled (labelled share of each batch "
            f"50%; 12 labelled rows drawn); probe accuracy {accuracy:.4f}") in stdout
    # how precise that accuracy is: the binomial standard error over the labelled rows the probe was scored on
    standard_error = (accuracy * (1 - accuracy) / N_LABELLED) ** 0.5
    assert f"(cross-validated on the training labels, standard error {standard_error:.3f}; its folds follow --seed)" \
        in stdout

    card = (out / "README.md").read_text()
    assert f"; unlabelled data: `{csv_data / 'pool'}`." in card  # what the student was made from
    assert "- Distillation (not in the paper): `probe`: the teachers' linear probe" in card
    assert (f"the probe's cross-validated accuracy on the training labels: {accuracy:.4f}, standard error "
            f"{standard_error:.3f}") in card
    if transfer == "aft":  # with a cost table, whose probe scores on the eval split: the card says why figures differ
        assert "the cost table's probe chooses its C the same way and is scored on the evaluation split" in card
    assert (f"- Unlabelled data: {N_POOL} rows, 12 of them drawn in the steps trained beside {N_LABELLED} labelled "
            "(12 of them drawn); 50% of each batch labelled") in card
    assert f"- Method: `{transfer}`" in card
    if transfer != "none":  # the tiny teachers read 64 tokens at most: the card gives that, not the 256 asked for
        assert "- teacher_max_length: 64 / 64 (the teachers' own limit under --teacher_max_length 256)" in card
    if transfer == "none":  # distilled from the teachers' probe: neither plain fine-tuning nor a baseline for it
        assert "# Distilled student" in card and "STL" not in card and "with no teacher" not in card
        assert "trained with **distillation, without feature transfer** from 2 frozen teachers" in card
        with pytest.raises(AFTError, match="is a --transfer none run with --distill probe; the baseline must be "
                           "plain fine-tuning"):
            read_baseline(str(out))
    else:
        assert "from 2 frozen teachers" in card
    capsys.readouterr()
    assert main(["audit", str(out)]) == 0  # the audit tells a KD run from one without feature transfer
    lines = capsys.readouterr().out.splitlines()
    named = "none (no feature transfer)" if transfer == "none" else f"{transfer.upper()} (beta 0.1)"
    assert f"{'transfer':<22}{named}" in lines
    assert any(line.startswith(f"{'terms':<22}distillation from the teachers' probe") for line in lines)

    logs = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]
    assert len(logs) == 3 and all("distill_loss" in e and "task_loss" in e for e in logs)
    assert all(("transfer_loss" in e) == (transfer != "none") for e in logs)
    if transfer == "aft":  # the record of the run names the unlabelled data too, and its recipe reruns it
        assert (out / "cost_report.json").exists()
        audit = json.loads((out / "audit.json").read_text())
        assert audit["dataset"]["unlabeled_dataset"] == audit["dataset"]["unlabeled_path"] == str(csv_data / "pool")
        assert audit["splits"]["unlabeled"]["rows"] == N_POOL and audit["terms"] == summary_terms(summary)
        recipe = yaml.safe_load((out / "recipe.yaml").read_text())
        assert recipe["unlabeled_dataset"] == str(csv_data / "pool")
        assert main(["audit", str(out)]) == 0  # its printed lineage says which terms were on, as the card does
        assert re.search(rf"^terms +distillation from the teachers' probe .*{N_POOL} unlabelled rows .*probe accuracy "
                         rf"{accuracy:.4f}", capsys.readouterr().out, re.M)


def summary_terms(summary: dict) -> dict:
    keys = ("transfer", "beta", "distill", "distill_weight", "distill_temperature", "distill_teacher",
            "probe_accuracy", "probe_metric", "probe_c", "probe_scored", "labeled_rows", "unlabeled_rows",
            "augmented_rows", "augmented_from", "generated_rows", "generator", "generator_revision",
            "distill_teacher_revision", "labeled_fraction", "labeled_rows_drawn", "unlabeled_rows_drawn")
    return {key: summary[key] for key in keys}


# ---------------------------------------------------------------- 5. two processes train as one
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory, teacher_dirs, csv_data):
    """`hf-aft train` with unlabelled rows and probe distillation: one process with batch 8, two with batch 4 each."""
    root = tmp_path_factory.mktemp("distributed")
    tiny.save_student(root / "student", dtype=torch.float64)  # float64: the comparison sees the method, not rounding

    def launch(name: str, processes: int, batch: int) -> subprocess.CompletedProcess | None:
        args = ["train", "--model_name_or_path", str(root / "student"), "--dataset_name", str(csv_data / "data"),
                "--unlabeled_dataset", str(csv_data / "pool"), "--distill", "probe", "--teachers",
                *map(str, teacher_dirs), "--output_dir", str(root / name), "--per_device_train_batch_size", str(batch),
                "--optim", "sgd", "--learning_rate", "0.1", "--scales_learning_rate", "1.0", "--beta", "1.0",
                "--max_steps", "4", "--seed", "0", "--save_strategy", "no", "--logging_steps", "1",
                "--report_to", "none", "--skip_cost_report", "true", "--disable_tqdm", "true"]
        if processes == 1:  # in this process: no second start of Python
            assert main(args) == 0
            return None
        # As tests/test_distributed.py: --multi_gpu on a machine without GPUs (`accelerate launch --cpu` would start
        # one process only) and no --use_cpu: the product notices that there is no GPU by itself.
        command = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(free_port()), "-m", "hf_aft", *args]
        env = {**os.environ, "HF_HOME": str(root / "hf_home"), "OMP_NUM_THREADS": "1",
               "HF_DATASETS_CACHE": str(root / "cache")}  # its own cache: the two processes extract and fit too
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    launch("one", 1, 8)
    return root, launch("two", 2, 4)


def test_two_processes_train_like_one_with_unlabelled_rows_and_probe_distillation(distributed_runs):
    root, two_processes = distributed_runs
    start = load_file(root / "student" / "model.safetensors")
    one, two = (load_file(root / run / "model.safetensors") for run in ("one", "two"))
    update = max((one[k] - start[k]).abs().max().item() for k in start)
    assert update > 1e-3  # it trained
    assert max((one[k] - two[k]).abs().max().item() for k in start) < 1e-9 * update
    scales = [load_file(root / run / "transfer_state.safetensors")["scale_logits"] for run in ("one", "two")]
    torch.testing.assert_close(scales[1], scales[0], rtol=1e-6, atol=1e-12)

    def history(run):
        state = json.loads((root / run / "trainer_state.json").read_text())
        return [(e["task_loss"], e["transfer_loss"], e["distill_loss"]) for e in state["log_history"]
                if "distill_loss" in e]

    assert len(history("two")) == 4
    np.testing.assert_allclose(history("two"), history("one"), rtol=1e-6)
    summaries = [json.loads((root / run / "transfer_summary.json").read_text()) for run in ("one", "two")]
    for key in ("distill", "probe_accuracy", "unlabeled_rows", "labeled_rows", "labeled_fraction"):
        assert summaries[1][key] == summaries[0][key], key
    assert summaries[1]["processes"] == 2 and summaries[1]["unlabeled_rows"] == N_POOL
    assert two_processes.stdout.count("student saved to") == 1  # only the main process reports and writes
    assert "Assembling shards" in two_processes.stderr  # the two processes extracted the features themselves


def test_distill_logits_takes_a_classifier_and_refuses_a_bare_encoder(student_dir, teacher_dirs, csv_data, tmp_path,
                                                                      capsys):
    classifier = tiny.save_student(tmp_path / "task-teacher", hidden=12, seed=3)  # a *ForSequenceClassification
    args = train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "out", "--unlabeled_dataset",
                      str(csv_data / "pool"), "--distill", "logits")
    assert main(args + ["--distill_teacher", str(classifier)]) == 0
    summary = json.loads((tmp_path / "out" / "transfer_summary.json").read_text())
    assert summary["distill"] == "logits" and summary["distill_teacher"] == str(classifier)
    revision = summary["distill_teacher_revision"]
    card = (tmp_path / "out" / "README.md").read_text()
    assert revision.startswith("local-") and f"at revision `{revision}`" in card
    (model,) = json.loads((tmp_path / "out" / "audit.json").read_text())["other_models"]
    assert model["role"] == "distill_teacher" and model["resolved_revision"] == revision
    tiny.save_student(classifier, hidden=12, seed=4)  # the task teacher changed: check-updates says so
    capsys.readouterr()
    assert main(["check-updates", str(tmp_path / "out")]) == 1
    assert f"distill teacher {classifier}: {revision} -> local-" in capsys.readouterr().out
    bare = train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "bare", "--unlabeled_dataset",
                      str(csv_data / "pool"), "--distill", "logits", "--distill_teacher", str(teacher_dirs[0]))
    assert_one_line_error(main(bare), capsys.readouterr().err, "is not a classifier", "--distill probe")


def test_a_task_teacher_of_the_other_kind_or_without_its_image_processor_is_named(tmp_path):
    from hf_aft.distillation import task_teacher_order
    from hf_aft.teachers.image import ImageTeacher

    text = tiny.save_student(tmp_path / "text-classifier")  # LABEL_0, LABEL_1
    image = tiny.save_image_student(tmp_path / "image-classifier")
    assert task_teacher_order(str(text), ["0", "1"], images=False) == [0, 1]
    assert task_teacher_order(str(image), ["0", "1"], images=True) == [0, 1]
    with pytest.raises(AFTError, match=r"is a text classifier \(BertForSequenceClassification\) and the data are "
                                       r"images: give a \*ForImageClassification model"):
        task_teacher_order(str(text), ["0", "1"], images=True)
    with pytest.raises(AFTError, match=r"is an image classifier \(ViTForImageClassification\) and the data are texts"):
        task_teacher_order(str(image), ["0", "1"], images=False)
    (image / "preprocessor_config.json").unlink()
    with pytest.raises(AFTError, match=r"the folder has no image processor \(preprocessor_config.json\): save the "
                                       "model's AutoImageProcessor beside it"):
        ImageTeacher(str(image), str(image), "local", "logits", 0, 1, "cpu").load()


def test_a_pool_of_training_rows_or_a_pool_nothing_reads_is_refused(student_dir, teacher_dirs, csv_data, tmp_path,
                                                                    capsys):
    # The labelled training split given again as the pool (e.g. a features folder without --unlabeled_split).
    again = train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "a", "--unlabeled_dataset",
                       str(csv_data / "data"))
    assert_one_line_error(main(again), capsys.readouterr().err, "also in the labelled training split",
                          "--unlabeled_split unlabeled")
    unread = train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "b", "--unlabeled_dataset",
                        str(csv_data / "pool"), "--transfer", "none", "--distill", "none")
    assert_one_line_error(main(unread), capsys.readouterr().err, "no term reads unlabelled rows")
    # Turning distillation off the way a zero weight's refusal says must not lead into the refusal above.
    weightless = [*unread[:-2], "--distill", "probe", "--distill_weight", "0"]
    assert_one_line_error(main(weightless), capsys.readouterr().err, "use --distill none to turn distillation off "
                          "(with --transfer none, drop --unlabeled_dataset too")


@pytest.fixture(scope="module")
def test_split(tokenizer):
    """The evaluation rows (the CLI tests' test.csv), tokenized."""
    return tiny.sentiment_dataset(16, seed=1).map(lambda b: tokenizer(b["text"]), batched=True)


def shouted(dataset, rows: list[int]) -> list[str]:
    """The texts of `rows` as a fresh user's copy may hold them: capitals, outer and doubled spaces, full-width."""
    texts = [dataset["text"][row] for row in rows]
    return [f"  {text.upper().replace(' ', '  ')}\t" if i % 2 == 0 else text.replace("a", "\uff41")
            for i, text in enumerate(texts)]


def test_the_trainer_refuses_the_pools_hf_aft_train_refuses(student_dir, tmp_path, labelled, pool, test_split,
                                                            tokenizer):
    def refused(unlabeled, *fragments, eval_dataset=test_split, **config):
        with pytest.raises(AFTError) as caught:
            make_trainer(student_dir, tmp_path, labelled, unlabeled, eval_dataset, **config)
        for fragment in fragments:
            assert fragment in str(caught.value), caught.value

    refused(test_split, "16 rows of the unlabelled (unlabeled_dataset) split are also in the eval split "
            "(first at row 0)", "leakage")
    leaky = datasets.concatenate_datasets([pool.select_columns(["text"]), datasets.Dataset.from_dict(
        {"text": shouted(test_split, [3, 5])})]).map(lambda b: tokenizer(b["text"]), batched=True)
    # compared by text, whatever else a set holds (tokenized: an untokenized pool is refused first)
    refused(leaky, "2 rows of the unlabelled (unlabeled_dataset) split are also in the eval (test) split "
            "(first at row 16)",
            eval_dataset={"other": pool.select(range(0)), "test": test_split})
    no_text = test_split.remove_columns("text")  # a tokenized set without its text: compared by token ids
    refused(no_text.select([2, 9]), "2 rows", "also in the eval split (first at row 0)", eval_dataset=no_text)
    # The labelled training rows given again, in the API's words; a pool no term reads: the command's own line.
    refused(labelled, "also in the labelled training split", "Remove them from unlabeled_dataset", eval_dataset=None)
    with pytest.raises(AFTError) as caught:
        make_trainer(student_dir, tmp_path, labelled, labelled, None)
    assert "--" not in str(caught.value)  # no command-line option named to a Python caller
    refused(pool, "--unlabeled_dataset with --transfer none and --distill none: no term reads unlabelled rows",
            transfer="none", distill="none")
    # A pool whose texts sit in another column: said of the pool, with the way out that does not move the labelled
    # data's column too (text_column= names both).
    elsewhere = pool.rename_column("text", "sentence").remove_columns("teacher_features")
    refused(elsewhere, "unlabeled_dataset has no column 'text'", "unlabeled_dataset.rename_column(NAME, 'text')")
    trainer = make_trainer(student_dir, tmp_path, labelled, pool, {"test": test_split})  # a clean pool trains
    assert trainer.terms_summary()["unlabeled_rows"] == N_POOL


def test_the_trainer_refuses_an_image_pool_that_holds_eval_images(tmp_path):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    folder = tiny.save_image_student(tmp_path / "student", "resnet")
    images = tiny.image_dataset(12)
    args = AFTConfig(output_dir=str(tmp_path / "out"), transfer="none", distill="probe", report_to="none",
                     use_cpu=True)
    with pytest.raises(AFTError, match=r"2 rows of the unlabelled \(unlabeled_dataset\) split are also in the eval "
                                       r"split \(first at row 0"):
        AFTTrainer(model=AutoModelForImageClassification.from_pretrained(folder), args=args,
                   train_dataset=images.select(range(4, 12)), eval_dataset=images.select(range(4)),
                   unlabeled_dataset=images.select([1, 3]), image_column="image",
                   processing_class=AutoImageProcessor.from_pretrained(folder))
    with pytest.raises(AFTError, match=r"^unlabeled_dataset: image column 'image' not found"):  # a text pool
        AFTTrainer(model=AutoModelForImageClassification.from_pretrained(folder), args=args,
                   train_dataset=images, unlabeled_dataset=datasets.Dataset.from_dict({"text": ["a", "b"]}),
                   image_column="image", processing_class=AutoImageProcessor.from_pretrained(folder))


def test_texts_are_compared_as_an_uncased_tokenizer_reads_them(test_split):
    texts = shouted(test_split, [3, 5])
    assert texts[0] != test_split["text"][3] and texts[1] != test_split["text"][5]
    pool = datasets.Dataset.from_dict({"text": ["a text of its own", *texts]})
    with pytest.raises(AFTError, match=r"^2 rows of the unlabelled split are also in the eval split \(first at row 1"):
        check_no_leakage(pool, test_split, "text")
    labelled, validation = test_split.select(range(8)), test_split.select(range(8, 16))
    for rows, where in (([3], "labelled training split"), ([12], "validation (validation) split")):
        pool = datasets.Dataset.from_dict({"text": ["a text of its own", *shouted(test_split, rows)]})
        with pytest.raises(AFTError, match=rf"1 row of the unlabelled split is also in the {re.escape(where)} "
                                           r"\(first at row 1\)"):
            check_pool_leakage(pool, labelled, {"validation (validation)": validation}, "text")
    words = datasets.Dataset.from_dict({"tokens": [["John", "lives", "here"]]})
    with pytest.raises(AFTError, match="first at row 1"):  # sentences of words: joined, then compared the same way
        check_no_leakage(datasets.Dataset.from_dict({"tokens": [["other"], [" JOHN", "Lives", "here "]]}), words,
                         "tokens")
    check_no_leakage(datasets.Dataset.from_dict({"text": ["johnlives here", "john lives there"]}),
                     datasets.Dataset.from_dict({"text": ["John lives here"]}), "text")  # other words: kept
    for copy in ("John\u200b lives here", "Jöhn lives hére", "John\u00a0lives here"):  # what BERT-uncased drops
        with pytest.raises(AFTError, match="first at row 0"):
            check_no_leakage(datasets.Dataset.from_dict({"text": [copy]}),
                             datasets.Dataset.from_dict({"text": ["John lives here"]}), "text")


def test_hf_aft_train_checks_its_pool_once_before_training(student_dir, teacher_dirs, csv_data, tmp_path,
                                                          monkeypatch):
    """The command checks the pool as it loads it; the trainer it builds does not check the prepared pool again
    (an image pool's files would be hashed twice)."""
    names = []

    def counted(unlabeled, eval_set, input_column, eval_name="eval", name="unlabelled", advice=None):
        names.append(name)
        return check_no_leakage(unlabeled, eval_set, input_column, eval_name, name, advice)

    monkeypatch.setattr(unlabeled_module, "check_no_leakage", counted)
    args = train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "out", "--unlabeled_dataset",
                      str(csv_data / "pool"), "--max_steps", "1", "--skip_cost_report", "true")
    assert main(args) == 0
    assert len(names) == 3 and all(name.startswith("unlabelled (") for name in names), names  # eval, validation, train


def test_the_probe_chooses_its_penalty_by_out_of_fold_log_loss():
    """Many noisy features and few rows (n ~ d, where a fixed C = 1 overfits): the chosen C is the one whose
    out-of-fold predictions have the lowest log-loss, and those are the distillation targets (a fixed C when asked
    for one)."""
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 40)
    features = rng.normal(size=(80, 60)) + labels[:, None] * np.r_[0.8, np.zeros(59)]  # one informative feature
    chosen, proba = distillation.cross_fit_path(features, labels, folds=5)
    losses = {c: log_loss(labels, distillation.cross_fit_path(features, labels, 5, cs=(c,))[1])
              for c in distillation.PROBE_CS}
    assert chosen == min(losses, key=losses.get) and chosen < 1.0
    assert log_loss(labels, proba) == pytest.approx(losses[chosen])
    fit = distillation.fit_probe(features, labels, features[:3], num_classes=2)
    assert fit.c == chosen and np.exp(fit.labeled) == pytest.approx(proba, abs=1e-5)
    assert distillation.fit_probe(features, labels, features[:3], num_classes=2, cs=(1.0,)).c == 1.0


def test_the_cost_report_reuses_the_c_the_targets_probe_chose_on_the_same_rows(student_dir, teacher_dirs, csv_data,
                                                                              tmp_path, monkeypatch):
    """Both probes search C on the same rows with one teacher: 9 Cs x 5 folds twice, minutes at 100k rows. Now the
    targets' search only; with two teachers the report probes each alone, on other features, and searches."""
    calls = []
    search = distillation.cross_fit_path
    monkeypatch.setattr(distillation, "cross_fit_path", lambda *a, **k: calls.append(len(a[0])) or search(*a, **k))
    for teachers in (teacher_dirs[:1], teacher_dirs):
        out, calls[:] = tmp_path / str(len(teachers)), []
        assert main(train_args(student_dir, teachers, csv_data / "data", out, "--unlabeled_dataset",
                               str(csv_data / "pool"), "--distill", "probe", "--seed", "11")) == 0  # no cached fit
        summary = json.loads((out / "transfer_summary.json").read_text())
        report = json.loads((out / "cost_report.json").read_text())
        assert summary["probe_c"] in distillation.PROBE_CS
        assert all(0 <= t["probe_accuracy"] <= 1 for t in report["teachers"])
        assert calls == [N_LABELLED] * (1 if len(teachers) == 1 else 3)


def test_a_loss_weight_whose_gradients_overflow_stops_the_run_naming_the_options(student_dir, teacher_dirs, csv_data,
                                                                                  tmp_path, capsys):
    """--distill_weight 1e20: every loss term finite, the gradient norm inf, clipping zeroed every update, and the
    run exited 0 saving the untrained student. Now the step, the norm and the options that scale it; nothing saved."""
    out = tmp_path / "out"
    returncode = main(train_args(student_dir, teacher_dirs, csv_data / "data", out, "--unlabeled_dataset",
                                 str(csv_data / "pool"), "--distill", "probe", "--distill_weight", "1e20"))
    assert_one_line_error(returncode, capsys.readouterr().err, "training stopped at step 1: the gradient norm is inf",
                          "--distill_weight (now 1e+20)", "--distill_temperature")
    assert not (out / "model.safetensors").exists()


def test_a_loss_that_is_not_finite_names_the_options_that_scale_that_term():
    from hf_aft.losses import check_finite_loss

    terms = {"task_loss": torch.tensor(0.5), "distill_loss": torch.tensor(float("nan"))}
    with pytest.raises(AFTError, match=r"the distill loss is nan.*--learning_rate \(now 5e-05\), "
                                       r"--distill_temperature \(now 1e\+30\) or --distill_weight \(now 1\)"):
        check_finite_loss(terms, 1, 5e-5, 0.1, distill=(1e30, 1.0))


def test_unlabelled_rows_that_are_not_all_text_or_lack_features_are_named_as_the_unlabelled_data(
        student_dir, teacher_dirs, csv_data, tmp_path, capsys):
    mixed = tmp_path / "mixed.jsonl"  # one text is a number: datasets reads the column as Json, not text
    mixed.write_text('{"text": "a fine film"}\n{"text": 12345}\n{"text": "dull"}\n')
    returncode = main(train_args(student_dir, teacher_dirs, csv_data / "data", tmp_path / "a", "--unlabeled_dataset",
                                 str(mixed)))
    assert_one_line_error(returncode, capsys.readouterr().err, "column 'text' is not all text: row 1 holds 12345")
    (tmp_path / "labelled").mkdir()  # the same in the labelled data
    (tmp_path / "labelled" / "train.jsonl").write_text("".join(
        f'{{"text": {json.dumps(t) if i != 2 else "true"}, "label": {i % 2}}}\n' for i, t in enumerate(
            tiny.sentiment_dataset(12, seed=3)["text"])))
    returncode = main(train_args(student_dir, teacher_dirs, tmp_path / "labelled", tmp_path / "c"))
    assert_one_line_error(returncode, capsys.readouterr().err, "train split's column 'text' is not all text: row 2 "
                          "holds True")
    features = tmp_path / "features"  # the labelled rows' features saved, the pool given beside them without any
    assert main(["features", "--teachers", *map(str, teacher_dirs), "--dataset_name", str(csv_data / "data"),
                 "--output_dir", str(features)]) == 0
    capsys.readouterr()
    args = train_args(student_dir, teacher_dirs, features, tmp_path / "b", "--unlabeled_dataset",
                      str(csv_data / "pool"))
    args[args.index("--teachers"):args.index("--output_dir")] = []
    assert_one_line_error(main(args), capsys.readouterr().err, "no 'teacher_features' column in the unlabelled "
                          "dataset", "hf-aft features (--unlabeled_dataset for unlabelled rows")


def test_a_pool_holding_rows_of_a_split_the_run_does_not_evaluate_on_is_refused_too(student_dir, teacher_dirs,
                                                                                    tmp_path, capsys):
    """With --eval_split validation the `test` split is where the final numbers get reported: `hf-aft features`
    refused pool rows from it, `hf-aft train` took them."""
    data = tmp_path / "data"
    data.mkdir()
    for split, seed in (("train", 0), ("validation", 1), ("test", 2)):
        tiny.sentiment_dataset(16, seed=seed).to_csv(data / f"{split}.csv")
    test_texts = tiny.sentiment_dataset(16, seed=2)["text"]
    pool = tmp_path / "pool.csv"
    datasets.Dataset.from_dict({"text": [f"pool text {i}" for i in range(8)] + test_texts[:3]}).to_csv(pool)
    args = train_args(student_dir, teacher_dirs, data, tmp_path / "out", "--eval_split", "validation",
                      "--unlabeled_dataset", str(pool))
    assert_one_line_error(main(args), capsys.readouterr().err, "rows of the unlabelled", "also in the 'test' split",
                          "leakage")
    assert not (tmp_path / "out").exists()
    datasets.Dataset.from_dict({"text": [f"pool text {i}" for i in range(8)]}).to_csv(pool)  # clean: it trains
    assert main(args) == 0


def test_a_mixing_that_repeats_one_sets_rows_says_so_once(caplog):
    """A pool 18 times the labelled set made --num_train_epochs 1 into 18 passes over the labelled rows, and a 1-row
    pool sat in half of every batch, both without a word."""
    from hf_aft.unlabeled import say_repeats

    with caplog.at_level("WARNING"):
        say_repeats(200, 3575, 0.5)
        say_repeats(200, 1, 0.5)
        say_repeats(200, 200, 0.5)  # each set once an epoch: nothing to say
        say_repeats(200, 100, 0.5)  # each pool row twice: not worth a line
        say_repeats(200, 3575, 0.5)  # said once
    said = [r.getMessage() for r in caplog.records]
    assert said == ["hf-aft: one epoch follows the 3,575 unlabelled rows: each of the 200 labelled rows is drawn "
                    "about 17.9 times an epoch (a labelled share of 50% of each batch), and --num_train_epochs counts "
                    "passes over the unlabelled rows.",
                    "hf-aft: each of the 1 unlabelled rows is drawn about 200 times an epoch (a labelled share of 50% "
                    "of each batch, 200 labelled rows): a pool this small weighs each of its rows heavily; give more "
                    "unlabelled rows, or a larger --labeled_fraction."], said


def test_a_task_teachers_class_names_are_matched_ignoring_case_and_spacing_and_otherwise_refused(caplog):
    """A teacher tuned on NEG/POS for data labelled neg/pos was refused with no way out but editing its config."""
    from hf_aft.distillation import class_order

    with caplog.at_level("WARNING"):
        assert class_order({0: "POS", 1: "NEG "}, ["neg", "pos"], "t") == [1, 0]
    assert "read as the data's ['neg', 'pos']: the same names but for case and spacing" in caplog.text
    assert class_order({0: "neg", 1: "pos"}, ["pos", "neg"], "t") == [1, 0]  # exact names: no warning needed
    for teacher, data in (({0: "negative", 1: "positive"}, ["neg", "pos"]),  # other words: refused
                          ({0: "Neg", 1: "NEG"}, ["neg", "pos"])):  # two teacher classes would read as one
        with pytest.raises(AFTError, match="predicts the classes"):
            class_order(teacher, data, "t")


def test_a_pool_split_of_the_labelled_source_is_its_own_however_the_folder_is_spelled(student_dir, teacher_dirs,
                                                                                       tmp_path, capsys):
    data = tmp_path / "d3"
    pool = datasets.Dataset.from_dict({"text": [f"pool text {i}" for i in range(8)]})
    datasets.DatasetDict(train=tiny.sentiment_dataset(16), test=tiny.sentiment_dataset(8, seed=1),
                         pool=pool).save_to_disk(data)
    for spelled in (f"{data}/", f"{tmp_path}/./d3"):  # the run's --dataset_name is str(data)
        args = train_args(student_dir, teacher_dirs, data, tmp_path / "out", "--unlabeled_dataset", spelled,
                          "--unlabeled_split", "pool", "--overwrite_output_dir")
        assert main(args) == 0, capsys.readouterr().err

"""Augmented copies of the labelled texts (`--augment_copies`): what a user without unlabelled data relies on.

- copies are made of the labelled texts only (their words, in their order), never equal one of them or each other,
  and the same seed makes the same copies;
- the copies join the run as unlabelled rows: the task loss never reads them, the probe's targets and the transfer
  term do, and the summary and card count them;
- what cannot be copied (images, word lists) or would not be read is refused in one line.
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import tiny
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_aft import AFTConfig, AFTError, AFTTrainer, extract_teacher_features
from hf_aft.augmentation import augment_images, augment_texts, augmented_rows
from hf_aft.card import terms_note
from hf_aft.commands import main
from hf_aft.unlabeled import UNLABELED

ERROR = "hf-aft: error:"
words = st.lists(st.sampled_from(["good", "bad", "plot", "film", "a", "very", "dull", "moving"]), min_size=1,
                 max_size=12)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(words.map(" ".join), min_size=1, max_size=6), copies=st.integers(1, 4),
       seed=st.integers(0, 2**16))
def test_copies_use_the_labelled_words_and_repeat_nothing(texts, copies, seed):
    made = augment_texts(texts, copies, seed)
    vocabulary = {w for t in texts for w in t.split()}
    assert len(made) <= copies * len(texts)
    assert len(set(made)) == len(made) and not set(made) & set(texts)
    assert all(made_text and set(made_text.split()) <= vocabulary for made_text in made)
    assert made == augment_texts(texts, copies, seed)


def test_copies_differ_by_seed_and_grow_with_the_number_asked():
    texts = [f"the film was {w} and the plot was {v} from start to end" for w in ("good", "bad", "dull")
             for v in ("moving", "thin")]
    assert augment_texts(texts, 2, seed=0) != augment_texts(texts, 2, seed=1)
    assert len(augment_texts(texts, 1, 0)) < len(augment_texts(texts, 4, 0)) <= 4 * len(texts)


@pytest.fixture(scope="module")
def labelled(student_dir):
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    return tiny.sentiment_dataset(24, seed=0).map(lambda b: tokenizer(b["text"]), batched=True)


def make_trainer(student_dir, teacher_dirs, out, train, **config):
    settings_ = dict(output_dir=str(out), per_device_train_batch_size=8, max_steps=2, save_strategy="no",
                     report_to="none", seed=0, disable_tqdm=True, use_cpu=True,
                     teachers=[str(d) for d in teacher_dirs])
    settings_.update(config)
    return AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir),
                      args=AFTConfig(**settings_), train_dataset=train,
                      processing_class=AutoTokenizer.from_pretrained(student_dir))


def test_copies_join_the_run_as_unlabelled_rows_with_probe_targets(student_dir, teacher_dirs, tmp_path, labelled):
    trainer = make_trainer(student_dir, teacher_dirs, tmp_path, labelled, augment_copies=2, transfer="none")
    rows, data = trainer.rows, trainer.train_dataset
    assert trainer.distill == "probe"  # --distill auto: the copies turn the probe on, as unlabelled rows do
    assert rows.n_augmented == rows.n_unlabeled == len(data) - 24 > 24
    copies = data.select(range(24, len(data)))
    assert set(copies["labels"]) == {UNLABELED}  # the task loss never reads a copy
    assert not set(copies["text"]) & set(labelled["text"])
    assert all(len(ids) <= max(map(len, labelled["input_ids"])) for ids in copies["input_ids"])
    assert len(copies["teacher_features"][0]) == 12 + 8 and all(t is not None for t in copies["distill_targets"])
    trainer.train()


def test_copies_are_refused_where_they_cannot_be_made_or_read(student_dir, teacher_dirs, tmp_path, labelled):
    with pytest.raises(AFTError, match="augment_copies with --transfer none and --distill none: no term reads"):
        AFTConfig(output_dir=str(tmp_path), augment_copies=2, transfer="none", distill="none")
    with pytest.raises(AFTError, match="augment_copies must be a whole number >= 0"):
        AFTConfig(output_dir=str(tmp_path), augment_copies=-1)
    with pytest.raises(AFTError, match="augment_copies must be a whole number"):
        AFTConfig(output_dir=str(tmp_path), augment_copies=1.5)
    with pytest.raises(AFTError, match="--augment_copies 1,001 is more than the 1,000 copies of each labelled row"):
        AFTConfig(output_dir=str(tmp_path), augment_copies=1001)  # a billion rows would not fit in memory
    featured = extract_teacher_features(labelled, [str(d) for d in teacher_dirs])  # as `hf-aft features` stores
    with pytest.raises(AFTError, match=r"the rows this run makes \(--augment_copies, --generate_texts\) need the "
                                       r"teachers"):
        make_trainer(student_dir, teacher_dirs, tmp_path, featured, augment_copies=2, teachers=None)
    words = labelled.map(lambda row: {"words": row["text"].split()})
    with pytest.raises(AFTError, match="holds List.*word lists get none"):
        augmented_rows(words, 2, 0, None, text_column="words")
    with pytest.raises(AFTError, match="reads the texts of 'missing', which the training data lacks"):
        augmented_rows(words, 2, 0, None, text_column="missing")
    with pytest.raises(AFTError, match="copies images of a datasets Image column.*an image folder"):
        augmented_rows(datasets.Dataset.from_dict({"image": ["a.png", "b.png"]}), 2, 0, None, image_column="image")


def test_no_copy_equals_an_eval_text():
    texts = ["good film", "bad film", "good plot", "bad plot"]
    free = set(augment_texts(texts, 8, seed=0))
    held_out = sorted(free)[:3]
    assert held_out and not set(augment_texts(texts, 8, seed=0, held_out=held_out)) & set(held_out)


def cli_args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            *map(str, teacher_dirs), "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps",
            "2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--skip_cost_report", "true",
            "--augment_copies", "2", *extra]


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, lines
    return lines[0]


def test_train_with_augmented_copies_of_any_text_column_says_so(student_dir, teacher_dirs, tmp_path, capsys):
    data = tmp_path / "data"
    for split, n, seed in (("train", 24, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).rename_column("text", "review").to_csv(data / f"{split}.csv")
    out = tmp_path / "out"
    assert main(cli_args(student_dir, teacher_dirs, data, out, "--text_column", "review")) == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["distill"] == "probe" and summary["augmented_rows"] == summary["unlabeled_rows"] > 24
    n = summary["augmented_rows"]
    assert f"{n} unlabelled rows, {n} of them augmented copies of the labelled texts" in capsys.readouterr().out
    assert f"- Unlabelled data: {n} rows ({n} of them augmented copies of the labelled texts: words dropped" in (
        out / "README.md").read_text()

    unread = cli_args(student_dir, teacher_dirs, data, tmp_path / "b", "--text_column", "review", "--transfer", "none",
                      "--distill", "none")
    assert main(unread) == 2 and "no term reads the rows it makes" in one_error_line(capsys)


def test_texts_that_cannot_be_copied_are_refused_before_any_teacher_runs(student_dir, teacher_dirs, tmp_path,
                                                                         capsys, monkeypatch):
    import hf_aft.teachers

    def load(*args, **kwargs):
        raise AssertionError("a teacher was loaded")

    monkeypatch.setattr(hf_aft.teachers.TextTeacher, "load", load)
    data = tmp_path / "short"
    for split in ("train", "test"):
        datasets.Dataset.from_dict({"text": ["good", "bad"] * 6, "label": [1, 0] * 6}).to_csv(data / f"{split}.csv")
    assert main(cli_args(student_dir, teacher_dirs, data, tmp_path / "out")) == 2
    assert "made no copy that differs from the labelled texts" in one_error_line(capsys)


def test_images_get_cropped_flipped_rotated_copies_that_train_as_unlabelled_rows(tmp_path):
    from transformers import AutoModelForImageClassification

    images = tiny.image_dataset(8)
    copies = augment_images(images["image"], 3, seed=0)
    assert len(copies) == 24 and all(c.size == images[0]["image"].size and c.mode == "RGB" for c in copies)
    originals = [np.asarray(i.convert("RGB")) for i in images["image"]]
    assert not any(np.array_equal(np.asarray(c), o) for c in copies for o in originals)
    assert [np.asarray(c).tobytes() for c in augment_images(images["image"], 3, 0)] == [
        np.asarray(c).tobytes() for c in copies]

    teacher = tiny.save_image_teacher(tmp_path / "teacher", "convnext")
    student = AutoModelForImageClassification.from_pretrained(tiny.save_image_student(tmp_path / "s", "vit"))
    args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[str(teacher)], max_steps=2, augment_copies=2,
                     per_device_train_batch_size=8, report_to="none", use_cpu=True, save_strategy="no")
    trainer = AFTTrainer(model=student, args=args, train_dataset=tiny.image_dataset(16),
                         processing_class=tiny.image_processor(), image_column="image")
    assert trainer.rows.n_augmented == trainer.rows.n_unlabeled == 32 and trainer.distill == "probe"
    assert set(trainer.train_dataset.select(range(16, 48))["labels"]) == {UNLABELED}
    trainer.train()
    assert "32 of them augmented copies of the labelled images" in terms_note(trainer.terms_summary())

    with pytest.raises(AFTError, match="copies images of a datasets Image column"):
        augmented_rows(datasets.Dataset.from_dict({"image": [np.zeros((4, 4), np.uint8).tolist()] * 2}), 2, 0, None,
                       image_column="image")


def test_copies_dropped_as_duplicates_are_counted_in_one_warning(caplog):
    """Short texts have few distinct copies: a user asking for 8 per text learns how many the run really trains on."""
    rows = datasets.Dataset.from_dict({"text": ["good", "bad film", "a very dull plot that drags on"]})
    made = augmented_rows(rows, 8, 0, None)
    warnings = [r.getMessage() for r in caplog.records if "--augment_copies 8 made" in r.getMessage()]
    assert len(made) < 24 and warnings == [f"hf-aft: --augment_copies 8 made {len(made)} of 24 copies: "
                                           f"{24 - len(made)} equalled a labelled or eval text, or another copy, and "
                                           "were dropped."], warnings


def test_no_copy_is_an_eval_text_as_the_leakage_check_reads_texts():
    """Copies were kept away from the eval texts by exact equality: `Good great movie` beside the eval text `good
    great movie` is the same text to an uncased student and to the pool's leakage check."""
    texts = ["Good great movie film", "Bad dull plot story"]
    held_out = ["good  GREAT movie", "bad dull plot", "dull plot story", "good movie film"]
    copies = augment_texts(texts, 50, seed=0, held_out=held_out)
    from hf_aft.text_forms import normalised_text

    read = [normalised_text(t) for t in copies]
    assert copies and not set(read) & {normalised_text(t) for t in [*texts, *held_out]}
    assert len(set(read)) == len(read)  # no two copies the same text either

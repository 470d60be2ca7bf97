"""What a new user meets first: help that starts with hf-aft, `hf-aft student`, Python-API parity with the CLI
(paths, string labels, named classes), cards that tell the truth, an output dir without checkpoints."""

import json
import pathlib
import shutil
import subprocess
import sys

import datasets
import pytest
import tiny
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from hf_aft import AFTConfig, AFTTrainer
from hf_aft.commands import main


def cli(*args):
    return subprocess.run([sys.executable, "-m", "hf_aft", *args], capture_output=True, text=True, timeout=120)


def test_help_starts_with_hf_afts_own_options_and_lists_the_trainers_on_request():
    short = cli("train", "--help").stdout
    assert short.startswith("usage: hf-aft train") and "Adaptive Feature Transfer" in short
    for text in ("--teachers", "--beta BETA|auto", "{aft,kd,rkd,none}", "--config", "--help-all", "--use_peft"):
        assert text in short, text
    assert "--beta_auto" not in short and "--adam_beta1" not in short and len(short.splitlines()) < 280
    assert "--adam_beta1" in cli("train", "--help-all").stdout
    assert cli("--version").stdout.startswith("hf-aft ")
    bare = cli()
    assert bare.returncode == 2 and "rank-teachers" in bare.stdout
    assert "unknown command 'trian' (did you mean train?)" in cli("trian").stderr
    assert bare.stderr.strip().splitlines()[-1].startswith("hf-aft: error: no command given")


def test_student_command_keeps_the_first_layers(tmp_path, capsys):
    from transformers import BertConfig, BertModel

    source = tiny.save_teacher(tmp_path / "source")
    BertModel(BertConfig(vocab_size=len(tiny.WORDS) + 5, hidden_size=12, num_hidden_layers=4, num_attention_heads=2,
                         intermediate_size=24, max_position_embeddings=64)).save_pretrained(source)
    assert main(["student", "--from", str(source), "--num_layers", "2", "--output_dir", str(tmp_path / "s")]) == 0
    assert AutoConfig.from_pretrained(tmp_path / "s").num_hidden_layers == 2
    assert AutoTokenizer.from_pretrained(tmp_path / "s")("good movie")["input_ids"]
    tiny.assert_readable_like_config(tmp_path / "s")
    assert main(["student", "--from", str(source), "--num_layers", "9", "--output_dir", str(tmp_path / "t")]) == 2
    assert "num_layers must be in 1..4" in capsys.readouterr().err
    # an image model: a ConvNeXt's "layers" are its stages, and cutting them made a student that failed its first step
    convnext = tiny.save_image_teacher(tmp_path / "convnext", "convnext")
    assert main(["student", "--from", str(convnext), "--num_layers", "1", "--output_dir", str(tmp_path / "c")]) == 2
    assert "is an image model (convnext): image models are not supported" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_save_truncated_student_never_writes_over_its_source_or_a_folder_with_files(teacher_dirs, tmp_path):
    """In Python it saved into any folder: given its own source, the teacher was replaced by a 1-layer copy."""
    from hf_aft import AFTError, save_truncated_student

    source = tmp_path / "source"
    shutil.copytree(teacher_dirs[0], source)
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    for overwrite in (False, True):
        with pytest.raises(AFTError, match="is the folder of the source model"):
            save_truncated_student(source, source, num_layers=1, overwrite=overwrite)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(AFTError, match="already holds files: choose a new or empty folder, or pass overwrite=True"):
        save_truncated_student(source, tmp_path / "busy", num_layers=1)
    assert save_truncated_student(source, tmp_path / "busy", num_layers=1, overwrite=True)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(AFTError, match="is a file: choose a folder"):
        save_truncated_student(source, tmp_path / "busy" / "notes.txt", num_layers=1, overwrite=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (source / name).unlink(missing_ok=True)  # a model saved without its tokenizer: nothing is written from it
    with pytest.raises(AFTError, match="its tokenizer knows 5 tokens and its model 30"):
        save_truncated_student(source, tmp_path / "bare-student", num_layers=1)
    assert not (tmp_path / "bare-student").exists()


def test_python_api_takes_paths_and_string_labels_and_names_the_classes(student_dir, teacher_dirs, tmp_path):
    words = tiny.sentiment_dataset(24)
    train = datasets.Dataset.from_dict({"text": words["text"], "label": [["neg", "pos"][y] for y in words["label"]]})
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    train = train.map(lambda b: tokenizer(b["text"]), batched=True)
    args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[pathlib.Path(teacher_dirs[0])], max_steps=2,
                     per_device_train_batch_size=8, report_to="none", use_cpu=True)
    trainer = AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir), args=args,
                         train_dataset=train, processing_class=tokenizer)
    trainer.train()
    trainer.save_model()
    assert AutoConfig.from_pretrained(tmp_path / "out").id2label == {0: "neg", 1: "pos"}
    assert not list((tmp_path / "out").glob("checkpoint-*"))  # no checkpoints unless asked for


def test_stl_card_is_a_baseline_and_shows_what_ran(student_dir, teacher_dirs, tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for split, n in (("train", 24), ("test", 12)):
        tiny.sentiment_dataset(n, seed=n).map(lambda r: {"label": ["neg", "pos"][r["label"]]}).to_csv(
            folder / f"{split}.csv")
    out = tmp_path / "stl"
    stl = ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(folder), "--transfer", "none",
           "--output_dir", str(out), "--max_steps", "3", "--num_train_epochs", "3", "--per_device_train_batch_size",
           "8", "--report_to", "none", "--use_cpu", "true"]
    # --teachers that no term reads are refused: the run listed them in its recipe, though none ran.
    assert main(stl + ["--teachers", str(teacher_dirs[0])]) == 2 and not out.exists()
    assert main(stl) == 0
    card = (out / "README.md").read_text()
    assert "# Fine-tuning baseline (STL)" in card and "AFT student" not in card
    assert "Classes: `neg`, `pos`" in card and "On the `test` split (12 examples)" in card
    assert "- steps run: 3" in card and "num_train_epochs" not in card and "max_steps" not in card
    assert json.loads((out / "model_card.json").read_text())["eval_split"] == {"name": "test", "rows": 12}
    assert json.loads((out / "audit.json").read_text())["teachers"] == []  # no teacher shaped this run
    assert (out / "hf_aft_complete.json").exists() and (out / "recipe.yaml").exists()


def test_labels_that_differ_only_in_spacing_are_named_and_a_missing_label_names_its_row(tmp_path, caplog):
    """A stray space ('negative ') made a third class without a word; a missing training label named no row."""
    import logging

    from hf_aft import AFTError, load_labelled_splits

    texts = tiny.sentiment_dataset(12)["text"]
    labels = ["negative", "positive"] * 5 + ["negative ", "positive"]
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"text": texts, "label": labels})).save_to_disk(
        tmp_path / "spaced")
    with caplog.at_level(logging.WARNING):
        splits = load_labelled_splits(str(tmp_path / "spaced"))
    assert len(splits.labels.names) == 3
    assert "classes that differ only in spacing or case ('negative' / 'negative ')" in caplog.text
    missing = datasets.Dataset.from_dict({"text": texts, "label": labels[:7] + [None] + labels[8:]})
    datasets.DatasetDict(train=missing).save_to_disk(tmp_path / "missing")
    with pytest.raises(AFTError, match="the training split's column 'label' has no label at row 7"):
        load_labelled_splits(str(tmp_path / "missing"))


def test_a_csv_separated_by_semicolons_says_so(tmp_path):
    """A spreadsheet's csv in some locales: pandas' 'Error tokenizing data' or one column named 'text;label'."""
    from hf_aft import AFTError, load_labelled_splits

    (tmp_path / "one.csv").write_text("text;label\ngreat film;pos\nawful;neg\n")
    (tmp_path / "ragged.csv").write_text("text;label\ngreat film;pos\n" + "bad, awful;neg\n" * 3)
    for name in ("one.csv", "ragged.csv"):
        with pytest.raises(AFTError, match="separated by semicolons.*with commas, or as a .tsv with tabs"):
            load_labelled_splits(str(tmp_path / name))
    (tmp_path / "tabs.csv").write_text("text\tlabel\ngreat film\tpos\nawful\tneg\n")
    with pytest.raises(AFTError, match="looks separated by tabs: name it .tsv"):
        load_labelled_splits(str(tmp_path / "tabs.csv"))


def test_a_run_read_back_from_another_directory_finds_its_data_where_it_was_read(tmp_path, monkeypatch):
    """`hf-aft export ../OUT` from elsewhere loaded the recipe's relative `data` from there (another folder, or a
    cached copy of one); the run's own data is at the path audit.json recorded."""
    from hf_aft import AFTError
    from hf_aft.evaluation import recorded_dataset

    run, data = tmp_path / "run", tmp_path / "data"
    run.mkdir()
    data.mkdir()
    (run / "audit.json").write_text(json.dumps({"dataset": {"name": "data", "path": str(data)}}))
    monkeypatch.chdir(tmp_path)
    assert recorded_dataset(str(run)) is None  # the recipe's name leads there from here
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert recorded_dataset(str(run)) == str(data)
    data.rename(tmp_path / "moved")
    with pytest.raises(AFTError, match="is gone from .*data, where it read it: pass --dataset_name"):
        recorded_dataset(str(run))

"""Fuzz suite of the command line (issue 11): bad inputs and faults fed to `hf-aft ...`, each checked for what a user
sees.

Every case runs `hf_aft.commands.main(argv)` in this process, as `python -m hf_aft` would (`sys.exit(main())`: an
exception that escapes `main` is a traceback and exit status 1, argparse's `SystemExit` is its exit status), with
tiny models and data built here. For each case:

- exit status 2 and exactly one `hf-aft: error: ...` line, the last line of stderr, and no traceback;
- every file that existed in the case's folder before the command is byte-identical after it;
- an output dir that the command created does not look finished (no weights, card or results at its top level);
- for bad data (kinds 4, 5): refused before any teacher ran (no teacher cache file written).

A few cases are not refusals: the issue asks that they succeed (a decoder student without a pad token gets
`config.pad_token_id`; a corrupted feature cache is recomputed) or allows either (images: convert preserving the
range, or refuse; texts longer than a model can take: cap, or refuse). Those check the result instead.

Cases that fail today are marked `xfail(strict=True)` with what happens today: fixing one turns it into an XPASS,
which fails the suite until its mark is removed. `pytest_terminal_summary` in conftest.py prints how many cases ran.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pytest
import tiny
import torch
import yaml

from hf_aft.commands import main

ERROR = "hf-aft: error:"
# What a finished run leaves at the top of its output dir (checkpoint-* folders don't count).
FINISHED = ("model.safetensors", "adapter_model.safetensors", "README.md", "model_card.json", "train_results.json",
            "eval_results.json", "all_results.json", "transfer_summary.json")


# ---------------------------------------------------------------- models and runs, built once per session, lazily
class Models:
    def __init__(self, root: Path):
        self.root = root

    @functools.cached_property
    def student(self) -> Path:
        return tiny.save_student(self.root / "student", hidden=8)

    @functools.cached_property
    def teacher(self) -> Path:
        return tiny.save_teacher(self.root / "teacher", hidden=8, seed=1)

    @functools.cached_property
    def overflow_teacher(self) -> Path:
        """A teacher whose features (~1e6) do not fit float16."""
        from transformers import BertModel

        folder = self.root / "overflow-teacher"
        torch.manual_seed(2)
        model = BertModel(tiny.bert_config(8))
        with torch.no_grad():
            model.encoder.layer[-1].output.LayerNorm.weight.fill_(1e6)
        model.save_pretrained(folder)
        tiny.make_tokenizer(folder).save_pretrained(folder)
        return folder

    @functools.cached_property
    def image_teacher(self) -> Path:
        return tiny.save_image_teacher(self.root / "image-teacher", kind="convnext")

    @functools.cached_property
    def gpt2_student(self) -> Path:
        """A tiny GPT-2 sequence classifier whose tokenizer has no pad token (as GPT-2's doesn't)."""
        from transformers import GPT2Config, GPT2ForSequenceClassification

        folder = self.root / "gpt2-student"
        torch.manual_seed(0)
        config = GPT2Config(vocab_size=len(tiny.WORDS) + 2, n_embd=8, n_layer=1, n_head=2, n_positions=64,
                            bos_token_id=1, eos_token_id=1, num_labels=2)
        GPT2ForSequenceClassification(config).save_pretrained(folder)
        tiny.word_tokenizer().save_pretrained(folder)
        return folder

    @functools.cached_property
    def gguf_teacher(self) -> Path:
        return tiny.save_gguf_teacher(self.root / "gguf" / "tiny.gguf")

    @functools.cached_property
    def run(self) -> Path:
        """A finished `hf-aft train` run with a checkpoint-1 folder (model, optimizer, transfer state)."""
        data = self.root / "run-data"
        write_split_files(data, {"train": rows(16), "test": rows(8, seed=1)})
        out = self.root / "run"
        code = main(train_args(self, data, out, "--save_strategy", "steps", "--save_steps", "1"))
        assert code == 0 and (out / "checkpoint-1" / "transfer_state.safetensors").exists()
        return out


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    return Models(tmp_path_factory.mktemp("fuzz-models"))


# ---------------------------------------------------------------- data helpers
def rows(n: int = 16, seed: int = 0) -> list[dict]:
    return tiny.sentiment_dataset(n, seed=seed).to_list()


def write_rows(path: Path, records: list[dict]) -> Path:
    """csv or tsv (None: an empty cell), json lines in .jsonl or .json (None: null; a missing key stays missing) or
    parquet, by suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".csv", ".tsv"):
        names = list(dict.fromkeys(key for record in records for key in record))
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=names, delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix in (".jsonl", ".json"):
        path.write_text("".join(json.dumps(record) + "\n" for record in records))
    else:
        datasets.Dataset.from_list(records).to_parquet(str(path))
    return path


def write_split_files(folder: Path, splits: dict[str, list[dict]], suffix: str = ".csv") -> Path:
    for split, records in splits.items():
        write_rows(folder / f"{split}{suffix}", records)
    return folder


def train_args(models: Models, data, out, *extra, teachers: bool = True, max_steps: bool = True) -> list[str]:
    args = ["train", "--model_name_or_path", str(models.student), "--dataset_name", str(data), "--output_dir",
            str(out), "--per_device_train_batch_size", "4", "--report_to", "none", "--disable_tqdm", "true",
            "--use_cpu", "true", "--save_strategy", "no"]
    args += ["--teachers", str(models.teacher)] if teachers else []
    args += ["--max_steps", "1"] if max_steps else []
    return args + list(extra)


@dataclass
class Env:
    """One case's world: `work` is its folder (hashed before and after), `cache` the teachers' feature cache."""

    work: Path
    cache: Path
    models: Models

    @property
    def out(self) -> Path:
        return self.work / "out"

    def data(self, train: list[dict] | None = None, test: list[dict] | None = None, suffix: str = ".csv",
             name: str = "data") -> Path:
        splits = {"train": rows(16) if train is None else train}
        if test is not False:
            splits["test"] = rows(8, seed=1) if test is None else test
        return write_split_files(self.work / name, splits, suffix)

    def train(self, *extra, data=None, **kwargs) -> list[str]:
        return train_args(self.models, data or self.data(), self.out, *extra, **kwargs)

    def file(self, name: str, text: str = "") -> Path:
        path = self.work / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def yaml(self, text: str) -> Path:
        return self.file("recipe.yaml", text)

    def recipe(self, **values) -> Path:
        base = {"model_name_or_path": str(self.models.student), "dataset_name": str(self.data()),
                "teachers": [str(self.models.teacher)], "max_steps": 1, "per_device_train_batch_size": 4,
                "report_to": "none", "use_cpu": True, "save_strategy": "no"}
        return self.yaml(yaml.safe_dump({**base, **values}))

    def teacher_files(self) -> list[Path]:
        return sorted((self.cache / "hf_aft_features").glob("teacher-*.arrow"))


# ---------------------------------------------------------------- cases
@dataclass
class Case:
    id: str
    kind: int  # the numbering of what goes wrong
    argv: Callable[[Env], list[str]]  # builds the case's files under env.work, returns the command line
    fragments: tuple[str, ...] = ()  # the error line must contain each
    absent: tuple[str, ...] = ()  # ...and none of these (case-insensitive)
    outcome: str = "error"  # "error"; "ok": exit 0 and `check`; "either": one of the two
    check: Callable[[Env], None] | None = None  # what a successful run must have produced
    before_teachers: bool = False  # the refusal must come before any teacher ran
    subprocess: bool = False  # run `python -m hf_aft` in a fresh process instead
    hidden: tuple[str, ...] = ()  # modules that cannot be imported while it runs (an optional extra not installed)


def _labelled(records: list[dict], labels) -> list[dict]:
    return [{**record, "label": label} for record, label in zip(records, labels, strict=True)]


def _class_label_data(env: Env, train_labels, test_labels) -> Path:
    """A save_to_disk folder with a ClassLabel column, as GLUE has (-1: hidden label)."""
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    splits = {}
    for split, labels, seed in (("train", train_labels, 0), ("test", test_labels, 1)):
        texts = [row["text"] for row in rows(len(labels), seed)]
        splits[split] = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    folder = env.work / "glue-like"
    datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def _ragged_features(env: Env) -> Path:
    records = [{**row, "teacher_features": [0.5] * (4 if i != 5 else 3)} for i, row in enumerate(rows(16))]
    return write_split_files(env.work / "ragged", {"train": records}, ".jsonl")


def _long_texts(env: Env, name: str = "long") -> Path:
    records = rows(16)
    records[3] = {**records[3], "text": " ".join(tiny.WORDS * 6)}  # ~160 tokens; the models have 64 positions
    return write_split_files(env.work / name, {"train": records, "test": rows(8, seed=1)})


def _parquet_duplicate_columns(env: Env) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = rows(16)
    texts = pa.array([r["text"] for r in records])
    table = pa.Table.from_arrays([texts, texts, pa.array([r["label"] for r in records])],
                                 names=["text", "text", "label"])
    path = env.work / "dup.parquet"
    pq.write_table(table, path)
    return path


def _not_a_dataset(env: Env) -> Path:
    env.file("notes/README.txt", "just some notes")
    env.file("notes/model.bin", "\x00\x01")
    return env.work / "notes"


def _copy_checkpoint(env: Env, edit: Callable[[Path], None] | None = None) -> Path:
    """The session run's checkpoint-1, copied into a fresh output dir, optionally damaged."""
    checkpoint = env.out / "checkpoint-1"
    shutil.copytree(env.models.run / "checkpoint-1", checkpoint)
    if edit:
        edit(checkpoint)
    return checkpoint


def _resume(env: Env, edit=None) -> list[str]:
    checkpoint = _copy_checkpoint(env, edit)
    return env.train("--resume_from_checkpoint", str(checkpoint), "--max_steps", "2",
                     data=env.models.root / "run-data")


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _features_args(env: Env, data: Path, *extra, teacher: Path | None = None, out: str = "features") -> list[str]:
    return ["features", "--dataset_name", str(data), "--teachers", str(teacher or env.models.teacher),
            "--output_dir", str(env.work / out), *extra]


def _fresh_features(env: Env, data: Path, teacher: Path, **kwargs) -> np.ndarray:
    """Features computed now, without any cache: what a run must have stored."""
    from hf_aft.data import load_dataset_dict
    from hf_aft.features import FEATURES_COLUMN, extract_teacher_features

    train = load_dataset_dict(str(data))["train"]
    fresh = extract_teacher_features(train, [str(teacher)], cache_dir=env.work.parent / "fresh-cache", **kwargs)
    return np.asarray(fresh[FEATURES_COLUMN], dtype=np.float32)


def _stored_features(folder: Path) -> np.ndarray:
    from hf_aft.features import FEATURES_COLUMN

    return np.asarray(datasets.load_from_disk(str(folder))["train"][FEATURES_COLUMN], dtype=np.float32)


def _corrupt_cache(env: Env, damage: Callable[[Path], None]) -> list[str]:
    """Fill the cache with one features run, damage its cached Arrow files (the teacher's and the joined one), and
    run again."""
    data = env.data(name="cached")
    assert main(_features_args(env, data, out="first")) == 0
    cache_files = sorted((env.cache / "hf_aft_features").glob("*.arrow"))
    assert len(cache_files) == 2
    for path in cache_files:
        damage(path)
    shutil.rmtree(env.work / "first")
    return _features_args(env, data)


def _overwrite_same_size(path: Path) -> None:
    """Change one stored feature value in place: same size, still a valid Arrow file."""
    table = datasets.Dataset.from_file(str(path)).with_format("numpy")
    first = np.asarray(table[0][table.column_names[0]], dtype=np.float32)[0]
    data = bytearray(path.read_bytes())
    at = data.find(np.float32(first).tobytes())
    assert at >= 0
    data[at : at + 4] = np.float32(first + 1000.0).tobytes()
    path.write_bytes(bytes(data))


def _check_cache_recovered(env: Env) -> None:
    expected = _fresh_features(env, env.work / "cached", env.models.teacher)
    np.testing.assert_allclose(_stored_features(env.work / "features"), expected, rtol=1e-5, atol=1e-6)


def _to_16_bit(array: np.ndarray) -> np.ndarray:
    """The 8-bit picture v as 16 bits, v * 256 + 128: v again whether converted by x >> 8 or round(x / 257), and a
    constant 128 if wrapped modulo 256."""
    return array.astype(np.uint16) * 256 + 128


def _images_16bit_png(env: Env) -> list[str]:
    from PIL import Image

    arrays, labels = tiny.image_arrays(8)
    records = []
    for i, (array, label) in enumerate(zip(arrays, labels, strict=True)):
        path = env.work / "png16" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_to_16_bit(array)).save(path)  # 16-bit grayscale ("I;16"), the same picture
        records.append({"image": str(path), "label": label})
    write_rows(env.work / "png16-data" / "train.csv", records)
    return _features_args(env, env.work / "png16-data", "--image_column", "image", teacher=env.models.image_teacher)


def _images_uint16_arrays(env: Env) -> list[str]:
    arrays, labels = tiny.image_arrays(8)
    features = datasets.Features({"image": datasets.Array2D((12, 12), "uint16"), "label": datasets.Value("int64")})
    data = datasets.Dataset.from_dict({"image": [_to_16_bit(a) for a in arrays], "label": labels},
                                      features=features)
    datasets.DatasetDict({"train": data}).save_to_disk(str(env.work / "uint16-data"))
    return _features_args(env, env.work / "uint16-data", "--image_column", "image",
                          teacher=env.models.image_teacher)


def _check_images_kept_their_range(env: Env) -> None:
    """The 16-bit images are the 8-bit ones at 16 bits: their features must be those of the 8-bit images."""
    from hf_aft.features import FEATURES_COLUMN, extract_teacher_features

    arrays, labels = tiny.image_arrays(8)
    eight_bit = datasets.Dataset.from_dict({"image": [a for a in arrays], "label": labels})
    expected = extract_teacher_features(eight_bit, [str(env.models.image_teacher)], image_column="image",
                                        cache_dir=env.work.parent / "fresh-cache")
    np.testing.assert_allclose(_stored_features(env.work / "features"),
                               np.asarray(expected[FEATURES_COLUMN], dtype=np.float32), rtol=1e-4, atol=1e-5)


def _check_regression(env: Env) -> None:
    assert json.loads((env.out / "config.json").read_text())["problem_type"] == "regression"


def _check_student_saved(env: Env) -> None:
    from transformers import AutoConfig

    assert (env.out / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(env.out).pad_token_id is not None


def _unfinished_run_copy(env: Env) -> Path:
    """A finished run whose completion marker is gone: a run that stopped or failed before its end."""
    run = _finished_run_copy(env)
    (run / "hf_aft_complete.json").unlink()
    return run


def _drop_checksum(path: Path) -> None:
    path.with_name(path.name + ".sha256.json").unlink()


def _images_float_arrays(env: Env, scale: float, dtype: str, name: str) -> list[str]:
    """The 8-bit pictures as `dtype` arrays times `scale` (1/255: floats in [0, 1]; 1: 0..255 in a wide type)."""
    arrays, labels = tiny.image_arrays(8)
    features = datasets.Features({"image": datasets.Array2D((12, 12), dtype), "label": datasets.Value("int64")})
    data = datasets.Dataset.from_dict({"image": [a.astype(dtype) * scale for a in arrays], "label": labels},
                                      features=features)
    datasets.DatasetDict({"train": data}).save_to_disk(str(env.work / name))
    return _features_args(env, env.work / name, "--image_column", "image", teacher=env.models.image_teacher)


def _check_capped_or_refused(env: Env) -> None:
    assert (env.out / "model.safetensors").exists()


def _with_student(argv: list[str], student) -> list[str]:
    at = argv.index("--model_name_or_path") + 1
    return argv[:at] + [str(student)] + argv[at + 1 :]


def _student_copy(env: Env) -> Path:
    shutil.copytree(env.models.student, env.work / "student")
    return env.work / "student"


def _finished_run_copy(env: Env) -> Path:
    run = env.work / "run"
    shutil.copytree(env.models.run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    return run


def _existing_ranking(env: Env) -> list[str]:
    output = env.file("ranking.json", '{"earlier": "ranking"}')
    return ["rank-teachers", "--teachers", str(env.models.teacher), "--dataset_name", str(env.data()),
            "--folds", "2", "--output_file", str(output)]


def _rank(env: Env, *extra, data=None) -> list[str]:
    return ["rank-teachers", "--teachers", str(env.models.teacher), "--dataset_name", str(data or env.data()),
            "--output_dir", str(env.work / "ranking"), *extra]


# ---- kind 13: library messages
HAS_MOUNTS = Path("/proc/self/mounts").exists()  # Linux: /proc and /sys are kernel filesystems


def _without(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value: hf-aft's own default applies."""
    at = argv.index(flag)
    return argv[:at] + argv[at + 2 :]


def _default_save(env: Env, *extra) -> list[str]:
    """A train command that leaves --save_strategy at hf-aft's default, 'no'."""
    return _without(env.train(*extra), "--save_strategy")


def _mixed_files(env: Env, *suffixes: str) -> str:
    """Comma-separated data files of the same kind of rows, one per suffix."""
    return ",".join(str(write_rows(env.work / "mixed" / f"part{i}{suffix}", rows(16, seed=i)))
                    for i, suffix in enumerate(suffixes))


def _grouped(env: Env) -> Path:
    """Splits with a `source` column (the test split's: two groups of 4 rows)."""
    def grouped(records):
        return [{**row, "source": "a" if i % 2 else "b"} for i, row in enumerate(records)]

    return env.data(grouped(rows(16)), grouped(rows(8, seed=1)), name="grouped")


def _mixed_folder(env: Env) -> Path:
    write_rows(env.work / "mixed-folder" / "train.csv", rows(16))
    write_rows(env.work / "mixed-folder" / "test.jsonl", rows(8, seed=1))
    return env.work / "mixed-folder"


def _export(env: Env, *extra, out: str = "export") -> list[str]:
    return ["export", str(_finished_run_copy(env)), "--output_dir", str(env.work / out), *extra]


def _rank_to(env: Env, flag: str, path: str) -> list[str]:
    return ["rank-teachers", "--teachers", str(env.models.teacher), "--dataset_name", str(env.data()), "--folds", "2",
            flag, path]


def _gguf_features(env: Env, spec: str | None = None) -> list[str]:
    return ["features", "--dataset_name", str(env.data()), "--teachers", spec or str(env.models.gguf_teacher),
            "--output_dir", str(env.work / "features")]


def _long_everywhere(env: Env, suffix: str) -> Path:
    """Train and test splits whose every fourth text (~160 tokens) is longer than the models' 64 positions."""
    def long(records):
        return [{**r, "text": " ".join(tiny.WORDS * 6)} if i % 4 == 3 else r for i, r in enumerate(records)]

    return env.data(long(rows(16)), long(rows(8, seed=1)), suffix=suffix, name=f"long{suffix.replace('.', '-')}")


def _export_tokenizer_without_limit(env: Env) -> list[str]:
    """Export a run whose saved tokenizer forgot the student's limit, checked on long texts at its --max_length."""
    argv = _export(env, "--dataset_name", str(_long_everywhere(env, ".jsonl")))
    config = Path(argv[1]) / "tokenizer_config.json"
    config.write_text(json.dumps({k: v for k, v in json.loads(config.read_text()).items() if k != "model_max_length"}))
    return argv


def _check_exported(env: Env) -> None:
    assert (env.work / "export" / "export_report.json").exists()


def _check_glob_features(env: Env) -> None:
    assert len(datasets.load_from_disk(str(env.work / "features"))["train"]) == 32


CASES = [
    Case("metric-for-best-model-unknown", 13, lambda e: e.train("--load_best_model_at_end", "true", "--eval_strategy",
         "epoch", "--save_strategy", "epoch", "--metric_for_best_model", "nope"),
         ("--metric_for_best_model 'nope'", "accuracy, macro_f1, loss"), before_teachers=True),
    # ---- 1. numeric options out of range, labels that make a broken or wrong student
    Case("beta-inf", 1, lambda e: e.train("--beta", "inf"), ("beta",)),
    Case("beta-negative", 1, lambda e: e.train("--beta", "-1"), ("--beta must be a number >= 0 or auto (got '-1')",)),
    Case("beta-nan", 1, lambda e: e.train("--beta", "nan"), ("beta",)),
    Case("num-train-epochs-negative", 1, lambda e: e.train("--num_train_epochs", "-1", max_steps=False),
         ("num_train_epochs",)),
    Case("learning-rate-nan", 1, lambda e: e.train("--learning_rate", "nan"), ("learning_rate",)),
    Case("learning-rate-negative", 1, lambda e: e.train("--learning_rate", "-1"), ("learning_rate",)),
    Case("learning-rate-inf", 1, lambda e: e.train("--learning_rate", "inf"), ("learning_rate",)),
    Case("scales-learning-rate-nan", 1, lambda e: e.train("--scales_learning_rate", "nan"),
         ("scales_learning_rate",)),
    Case("scales-learning-rate-inf", 1, lambda e: e.train("--scales_learning_rate", "inf"),
         ("scales_learning_rate",)),
    Case("weight-decay-nan", 1, lambda e: e.train("--weight_decay", "nan"), ("weight_decay",)),
    Case("max-grad-norm-nan", 1, lambda e: e.train("--max_grad_norm", "nan"), ("max_grad_norm",)),
    Case("max-length-negative", 1, lambda e: e.train("--max_length", "-5"), ("max_length",)),
    Case("max-length-zero", 1, lambda e: e.train("--max_length", "0"), ("max_length",)),
    Case("teacher-batch-size-zero", 1, lambda e: e.train("--teacher_batch_size", "0"), ("teacher_batch_size",)),
    Case("teacher-max-length-negative", 1, lambda e: e.train("--teacher_max_length", "-1"),
         ("teacher_max_length",)),
    Case("lora-r-zero", 1, lambda e: e.train("--use_peft", "true", "--lora_r", "0"), ("lora_r",)),
    Case("lora-dropout-above-one", 1, lambda e: e.train("--use_peft", "true", "--lora_dropout", "1.5"),
         ("lora_dropout",)),
    Case("train-batch-size-zero", 1, lambda e: e.train("--per_device_train_batch_size", "0"),
         ("per_device_train_batch_size",)),
    Case("gradient-accumulation-zero", 1, lambda e: e.train("--gradient_accumulation_steps", "0"),
         ("gradient_accumulation_steps",)),
    Case("warmup-steps-negative", 1, lambda e: e.train("--warmup_steps", "-3"), ("warmup_steps",)),
    Case("max-steps-zero", 1, lambda e: e.train("--max_steps", "0"), ("--max_steps must be > 0, or -1",)),
    Case("max-steps-below-minus-one", 1, lambda e: e.train("--max_steps", "-5"), ("--max_steps must be > 0",)),
    Case("save-steps-zero", 1, lambda e: e.train("--save_strategy", "steps", "--save_steps", "0"), ("save_steps",)),
    Case("eval-steps-negative", 1, lambda e: e.train("--eval_strategy", "steps", "--eval_steps", "-2"),
         ("eval_steps",)),
    Case("seed-negative", 1, lambda e: e.train("--seed", "-1"), ("seed",)),
    Case("beta-validation-fraction-above-one", 1,
         lambda e: e.train("--beta", "auto", "--beta_validation_fraction", "1.5"), ("beta_validation_fraction",)),
    Case("beta-validation-fraction-zero", 1,
         lambda e: e.train("--beta", "auto", "--beta_validation_fraction", "0"),
         ("beta_validation_fraction", "(0, 1)"), before_teachers=True),
    Case("beta-validation-split-with-a-fixed-beta", 1,
         lambda e: e.train("--beta", "0.3", "--beta_validation_split", "test"),
         ("--beta_validation_split", "--beta auto"), before_teachers=True),
    Case("beta-validation-fraction-with-the-default-beta", 1, lambda e: e.train("--beta_validation_fraction", "0.3"),
         ("--beta_validation_fraction", "--beta auto"), before_teachers=True),
    Case("single-class-labels", 1, lambda e: e.train(data=e.data(_labelled(rows(16), [1] * 16), test=False)),
         ("class",)),
    Case("float-labels-many-values-as-classes", 1,
         lambda e: e.train("--problem_type", "single_label_classification",
                           data=e.data(_labelled(rows(16), [i / 7 + 0.01 for i in range(16)]), test=False)),
         ("label", "fractional")),
    Case("float-labels-many-values-are-a-regression", 1,
         lambda e: e.train(data=e.data(_labelled(rows(16), [i / 7 + 0.01 for i in range(16)]), test=False)),
         outcome="ok", check=_check_regression),
    Case("features-teacher-batch-size-zero", 1,
         lambda e: _features_args(e, e.data(), "--teacher_batch_size", "0"), ("teacher_batch_size",)),
    Case("rank-folds-one", 1, lambda e: _rank(e, "--folds", "1"), ("--folds",)),
    Case("rank-teacher-batch-size-zero", 1, lambda e: _rank(e, "--teacher_batch_size", "0", "--folds", "2"),
         ("teacher_batch_size",)),

    Case("seed-above-numpy-range", 1, lambda e: e.train("--seed", str(2**32)), ("seed",)),
    Case("learning-rate-huge-loss-becomes-nan", 1,
         lambda e: e.train("--learning_rate", "1e30", "--max_steps", "3", max_steps=False),
         ("step 2", "--learning_rate")),

    # ---- 2. resume
    Case("resume-missing-checkpoint", 2,
         lambda e: e.train("--resume_from_checkpoint", str(e.work / "no-such-checkpoint")),
         ("no-such-checkpoint",)),
    Case("resume-without-transfer-state", 2,
         lambda e: _resume(e, lambda c: (c / "transfer_state.safetensors").unlink()),
         ("transfer_state.safetensors",), before_teachers=True),
    Case("resume-max-steps-reached", 1, lambda e: e.train("--resume_from_checkpoint", str(_copy_checkpoint(e)),
                                                          "--max_steps", "1", data=e.models.root / "run-data"),
         ("it is at step 1 already", "give a --max_steps above 1")),
    Case("resume-truncated-model-weights", 2, lambda e: _resume(e, lambda c: _truncate(c / "model.safetensors")),
         ("model.safetensors",), before_teachers=True),

    Case("resume-truncated-optimizer", 2, lambda e: _resume(e, lambda c: _truncate(c / "optimizer.pt")),
         ("optimizer.pt",), before_teachers=True),
    Case("resume-truncated-trainer-state", 2, lambda e: _resume(e, lambda c: _truncate(c / "trainer_state.json")),
         ("trainer_state.json",), before_teachers=True),

    # ---- 3. feature cache
    Case("cache-truncated-arrow-file", 3, lambda e: _corrupt_cache(e, _truncate), outcome="ok",
         check=_check_cache_recovered),
    Case("cache-overwritten-same-size", 3, lambda e: _corrupt_cache(e, _overwrite_same_size), outcome="ok",
         check=_check_cache_recovered),

    Case("cache-checksum-missing", 3, lambda e: _corrupt_cache(e, _drop_checksum), outcome="ok",
         check=_check_cache_recovered),

    # ---- 4. data the tokenizer or the model can't take
    Case("csv-empty-text-cell", 4,
         lambda e: e.train(data=e.data([{**r, "text": None if i == 5 else r["text"]} for i, r in enumerate(rows())])),
         ("'text'", "5"), before_teachers=True),
    Case("jsonl-null-text", 4,
         lambda e: e.train(data=e.data([{**r, "text": None if i == 5 else r["text"]} for i, r in enumerate(rows())],
                                       suffix=".jsonl")),
         ("'text'", "5"), before_teachers=True),
    Case("jsonl-missing-text-key", 4,
         lambda e: e.train(data=e.data([{"label": r["label"]} if i == 5 else r for i, r in enumerate(rows())],
                                       suffix=".jsonl")),
         ("'text'", "5"), before_teachers=True),
    Case("csv-empty-text-cell-in-eval-split", 4,
         lambda e: e.train(data=e.data(test=[{**r, "text": None if i == 2 else r["text"]}
                                             for i, r in enumerate(rows(8, seed=1))])),
         ("'text'", "2"), before_teachers=True),
    Case("features-csv-empty-text-cell", 4,
         lambda e: _features_args(e, e.data([{**r, "text": None if i == 5 else r["text"]}
                                             for i, r in enumerate(rows())])),
         ("'text'", "5"), before_teachers=True),
    Case("rank-csv-empty-text-cell", 4,
         lambda e: _rank(e, "--folds", "2", data=e.data([{**r, "text": None if i == 5 else r["text"]}
                                                         for i, r in enumerate(rows())])),
         ("'text'", "5"), before_teachers=True),
    Case("teacher-features-ragged-rows", 4, lambda e: e.train(data=_ragged_features(e), teachers=False),
         ("teacher_features", "5")),
    Case("texts-longer-than-position-table", 4, lambda e: e.train(data=_long_texts(e)), outcome="either",
         check=_check_capped_or_refused),
    Case("features-texts-longer-than-position-table", 4, lambda e: _features_args(e, _long_texts(e)),
         outcome="either", check=lambda e: None),
    Case("text-column-holds-numbers", 4, lambda e: e.train("--text_column", "label"), ("'label'",)),

    Case("features-empty-text-in-second-split", 4,
         lambda e: _features_args(e, e.data(test=[{**r, "text": None if i == 2 else r["text"]}
                                                  for i, r in enumerate(rows(8, seed=1))]),
                                  "--splits", "train", "test"),
         ("'text'", "2"), before_teachers=True),

    # ---- 5. labels that are not for training
    Case("labels-column-beside-the-label-column", 5,
         lambda e: e.train(data=e.data(*([{**r, "labels": "x"} for r in rows(n, seed)]
                                         for n, seed in ((16, 0), (8, 1))), name="with-labels")),
         outcome="ok", check=_check_student_saved),
    Case("label-column-beside-another-named-label", 5,
         lambda e: e.train("--label_column", "sentiment", data=e.data(*(
             [{**r, "sentiment": r["label"], "label": 7} for r in rows(n, seed)] for n, seed in ((16, 0), (8, 1))))),
         outcome="ok", check=_check_student_saved),
    Case("class-label-minus-one-in-train", 5,
         lambda e: e.train(data=_class_label_data(e, [-1, 0, 1, 1] * 4, [0, 1] * 4)), ("-1",),
         absent=("load it with num_labels",), before_teachers=True),
    Case("class-label-minus-one-eval-split", 5,
         lambda e: e.train(data=_class_label_data(e, [0, 1] * 8, [-1] * 8)), ("-1", "eval_split"),
         before_teachers=True),
    Case("csv-minus-one-labels-in-train", 5, lambda e: e.train(data=e.data(_labelled(rows(16), [-1, 0, 1, 1] * 4))),
         ("-1",), before_teachers=True),
    Case("csv-minus-one-labels-in-eval-split", 5, lambda e: e.train(data=e.data(test=_labelled(rows(8, 1), [-1] * 8))),
         ("-1", "eval_split"), before_teachers=True),
    Case("missing-labels", 5,
         lambda e: e.train(data=e.data([{**r, "label": None if i == 3 else r["label"]}
                                        for i, r in enumerate(rows())])),
         ("label",), before_teachers=True),

    Case("eval-labels-not-in-train", 5, lambda e: e.train(data=e.data(test=_labelled(rows(8, 1), [0, 1, 2, 2] * 2))),
         ("'2'", "eval_split"), before_teachers=True),
    Case("jsonl-null-label-in-eval-split", 5,
         lambda e: e.train(data=e.data(test=_labelled(rows(8, 1), [0, 1, 1, None, 0, 1, 0, 1]), suffix=".jsonl")),
         ("label", "3"), before_teachers=True),

    # ---- 6. images whose value range is lost
    Case("images-16bit-grayscale-png", 6, _images_16bit_png, ("'image'",), outcome="either",
         check=_check_images_kept_their_range),
    Case("images-uint16-arrays", 6, _images_uint16_arrays, ("'image'",), outcome="either",
         check=_check_images_kept_their_range),

    Case("images-float-arrays-in-0-255", 6, lambda e: _images_float_arrays(e, 1.0, "float32", "float255"),
         ("'image'", "[0, 1]")),
    Case("images-float-arrays-in-0-1", 6, lambda e: _images_float_arrays(e, 1 / 255, "float32", "float01"),
         outcome="ok", check=_check_images_kept_their_range),
    Case("images-int64-arrays-of-8-bit-values", 6, lambda e: _images_float_arrays(e, 1, "int64", "int64"),
         outcome="ok", check=_check_images_kept_their_range),

    # ---- 7. decoder student without a pad token
    Case("gpt2-student-without-pad-token", 7, lambda e: _with_student(e.train("--transfer", "none", teachers=False),
                                                                      e.models.gpt2_student),
         outcome="ok", check=_check_student_saved),

    # ---- 8. one line instead of tracebacks and usage dumps
    Case("misspelled-flag", 8, lambda e: e.train("--lerning_rate", "0.1"), ("--lerning_rate", "--learning_rate")),
    Case("misspelled-flag-subprocess", 8, lambda e: e.train("--lerning_rate", "0.1"),
         ("--lerning_rate", "--learning_rate"), subprocess=True),
    Case("misspelled-teacher-flag", 8, lambda e: e.train("--teacher_batchsize", "4"), ("--teacher_batch_size",)),
    Case("features-misspelled-flag", 8, lambda e: _features_args(e, e.data(), "--teacher_batchsize", "4"),
         ("--teacher_batch_size",)),
    Case("rank-misspelled-flag", 8, lambda e: _rank(e, "--fodls", "2"), ("--folds",)),
    Case("beta-not-a-number", 8, lambda e: e.train("--beta", "abc"), ("--beta", "abc")),
    Case("max-length-not-a-number", 8, lambda e: e.train("--max_length", "abc"), ("--max_length",)),
    Case("bool-flag-not-a-bool", 8, lambda e: e.train("--use_cpu", "maybe"), ("--use_cpu",)),
    Case("rank-folds-not-a-number", 8, lambda e: _rank(e, "--folds", "abc"), ("--folds",)),
    Case("unknown-transfer", 8, lambda e: e.train("--transfer", "distill"), ("unknown transfer 'distill'",)),
    Case("unknown-kernel", 8, lambda e: e.train("--kernel", "poly"), ("kernel",)),
    Case("distill-temperature-underflow", 8, lambda e: e.train("--distill", "probe", "--distill_temperature", "1e-30"),
         ("distill_temperature must be between 0.05 and 100", "1e-30")),  # T^2 = 0 in float32: the term was off
    Case("distill-temperature-overflow", 8, lambda e: e.train("--distill", "probe", "--distill_temperature", "1e200"),
         ("distill_temperature must be between 0.05 and 100",)),  # T ** 2: OverflowError traceback
    Case("unknown-teacher-pooling", 8, lambda e: e.train("--teacher_pooling", "max"), ("teacher_pooling",)),
    Case("unknown-feature-dtype", 8, lambda e: e.train("--teacher_feature_dtype", "float8"),
         ("teacher_feature_dtype",)),
    Case("unknown-lr-scheduler", 8, lambda e: e.train("--lr_scheduler_type", "zigzag"), ("lr_scheduler_type",)),
    Case("unknown-report-to", 8, lambda e: e.train("--report_to", "carrier-pigeon"), ("report_to",)),
    Case("yaml-beta-is-a-list", 8, lambda e: ["train", "--config", str(e.recipe(beta=[0.1, 0.2])),
                                              "--output_dir", str(e.out)], ("beta",)),
    Case("yaml-teachers-is-a-number", 8, lambda e: ["train", "--config", str(e.recipe(teachers=5)),
                                                    "--output_dir", str(e.out)], ("teachers",)),
    Case("yaml-max-steps-is-text", 8, lambda e: ["train", "--config", str(e.recipe(max_steps="many")),
                                                 "--output_dir", str(e.out)], ("max_steps",)),
    Case("yaml-malformed", 8, lambda e: ["train", "--config", str(e.yaml("beta: [0.1\nteachers: {")),
                                         "--output_dir", str(e.out)], ("recipe.yaml",)),
    Case("yaml-unknown-keys", 8, lambda e: ["train", "--config", str(e.recipe(lerning_rate=0.1)),
                                            "--output_dir", str(e.out)], ("lerning_rate",)),
    Case("yaml-not-a-mapping", 8, lambda e: ["train", "--config", str(e.yaml("- beta\n- 0.1\n")),
                                             "--output_dir", str(e.out)], ("mapping",)),
    Case("config-file-missing", 8, lambda e: ["train", "--config", str(e.work / "nope.yaml")], ("nope.yaml",)),
    Case("output-dir-is-a-file", 8, lambda e: train_args(e.models, e.data(), e.file("out-file", "keep me")),
         ("out-file",)),
    Case("output-dir-cannot-be-created", 8,
         lambda e: train_args(e.models, e.data(), e.file("blocker", "a file") / "out"), ("blocker",)),
    Case("features-output-dir-is-a-file", 8,
         lambda e: ["features", "--dataset_name", str(e.data()), "--teachers", str(e.models.teacher),
                    "--output_dir", str(e.file("features-file", "keep me"))], ("features-file",)),
    Case("rank-output-dir-is-a-file", 8, lambda e: _rank(e, "--folds", "2")[:-2]
         + ["--output_dir", str(e.file("ranking-file", "keep me"))], ("ranking-file",)),
    Case("no-subcommand", 8, lambda e: [], ("train",)),
    Case("no-subcommand-subprocess", 8, lambda e: [], ("train",), subprocess=True),
    Case("unknown-subcommand", 8, lambda e: ["trian"], ("trian", "train")),
    Case("train-without-arguments", 8, lambda e: ["train"], ("--model_name_or_path",)),
    Case("features-without-dataset", 8, lambda e: ["features", "--teachers", str(e.models.teacher)],
         ("--dataset_name",)),
    Case("features-without-teachers", 8,
         lambda e: ["features", "--dataset_name", str(e.data()), "--output_dir", str(e.work / "features")],
         ("--teachers",)),
    Case("rank-without-teachers", 8, lambda e: ["rank-teachers", "--dataset_name", str(e.data())], ("--teachers",)),
    Case("push-without-repo-id", 8, lambda e: ["push", str(_finished_run_copy(e))], ("--hub_model_id",)),
    Case("split-not-found", 8, lambda e: e.train("--eval_split", "dev"), ("'dev'",)),
    Case("label-column-not-found", 8, lambda e: e.train("--label_column", "sentiment"), ("'sentiment'",)),
    Case("per-device-batch-of-one-with-aft", 8, lambda e: e.train("--per_device_train_batch_size", "1"),
         ("--per_device_train_batch_size 3",)),

    Case("yaml-list-of-numbers", 8, lambda e: ["train", "--config", str(e.recipe(lora_target_modules=[1, 2])),
                                               "--output_dir", str(e.out)], ("lora_target_modules",)),
    Case("rank-output-dir-cannot-be-created", 8, lambda e: _rank(e, "--folds", "2")[:-2]
         + ["--output_dir", str(e.file("rank-blocker", "a file") / "ranking")], ("rank-blocker",),
         before_teachers=True),

    # ---- 9. errors that name the wrong thing
    Case("student-path-missing", 9,
         lambda e: _with_student(e.train(), e.work / "no" / "student"), ("no/student",),
         absent=("repo id", "repo_name")),
    Case("student-path-missing-relative", 9,
         lambda e: _with_student(e.train(), "./missing-student"), ("missing-student",),
         absent=("repo id", "repo_name")),
    Case("teacher-path-missing", 9, lambda e: e.train("--teachers", str(e.work / "no-teacher"), teachers=False),
         ("no-teacher",)),
    Case("distill-teacher-path-missing", 9,
         lambda e: e.train("--distill", "logits", "--distill_teacher", str(e.work / "no-classifier")),
         ("distill teacher", "no-classifier", "no such folder or file"), absent=("repo id", "repo_name"),
         before_teachers=True),
    Case("generator-gguf-missing", 9,
         lambda e: e.train("--generate_texts", "4", "--generator", str(e.work / "no-generator.gguf")),
         ("generator", "no-generator.gguf", "no such folder or file"), absent=("teacher",), before_teachers=True),
    Case("dataset-folder-not-a-dataset", 9, lambda e: e.train(data=_not_a_dataset(e)), ("notes", "data"),
         absent=("generating the dataset",)),
    Case("dataset-file-missing", 9, lambda e: e.train(data=e.work / "train.csv"), ("train.csv",)),
    Case("parquet-duplicate-columns", 9, lambda e: e.train(data=_parquet_duplicate_columns(e)), ("duplicate",),
         absent=("error occurred while generating",)),
    Case("rank-too-many-folds", 9, lambda e: _rank(e, "--folds", "20"), ("--folds",), absent=("np.",)),

    # ---- 10. something already there is changed or lost
    Case("push-invalid-repo-id", 10, lambda e: ["push", str(_finished_run_copy(e)), "--hub_model_id", "not a/re po!"],
         ("not a/re po!",)),
    Case("push-fails-offline", 10, lambda e: ["push", str(_finished_run_copy(e)), "--hub_model_id", "org/name"],
         ("org/name",)),
    Case("rank-output-file-exists", 10, _existing_ranking, ("ranking.json",)),
    Case("output-dir-holds-files", 10, lambda e: [e.file("out/keep.txt", "earlier work"), e.train()][1],
         ("already holds files",)),
    Case("features-output-dir-holds-files", 10,
         lambda e: [e.file("features/keep.txt", "earlier work"), _features_args(e, e.data())][1],
         ("already holds files",)),
    Case("check-updates-retrain-dir-holds-files", 10,
         lambda e: [e.file("retrained/keep.txt", "earlier work"),
                    ["check-updates", str(_finished_run_copy(e)), "--retrain", str(e.work / "retrained")]][1],
         ("--retrain", "already holds files"), absent=("--overwrite_output_dir", "--resume_from_checkpoint")),
    Case("export-output-dir-holds-files", 10,
         lambda e: [e.file("onnx/keep.txt", "earlier work"),
                    ["export", str(_finished_run_copy(e)), "--output_dir", str(e.work / "onnx")]][1],
         ("already holds files",), absent=("--overwrite_output_dir", "--resume_from_checkpoint")),

    Case("features-output-dir-is-its-dataset", 10,
         lambda e: _features_args(e, e.data(), "--overwrite_output_dir", "true", out="data"),
         ("--output_dir", "is the folder of --dataset_name", "choose a folder outside it"), before_teachers=True),
    Case("train-output-dir-is-its-student", 10,
         lambda e: _with_student(e.train("--output_dir", str(e.work / "student"), "--overwrite_output_dir", "true"),
                                 _student_copy(e)),
         ("is the folder of --model_name_or_path", "student"), before_teachers=True),
    Case("train-output-dir-inside-its-data-folder", 10,
         lambda e: e.train("--output_dir", str(e.work / "data" / "run")),
         ("is inside --dataset_name", "data"), before_teachers=True),
    Case("push-unfinished-run", 10, lambda e: ["push", str(_unfinished_run_copy(e)), "--hub_model_id", "org/name"],
         ("hf_aft_complete.json",)),

    # ---- 12. float16 features that overflow
    Case("features-float16-overflow", 12,
         lambda e: _features_args(e, e.data(), "--teacher_feature_dtype", "float16",
                                  teacher=e.models.overflow_teacher),
         ("float16",)),
    Case("features-float16-overflow-names-the-teacher", 12,
         lambda e: ["features", "--dataset_name", str(e.data()), "--teachers", str(e.models.teacher),
                    str(e.models.overflow_teacher), "--output_dir", str(e.work / "features"),
                    "--teacher_feature_dtype", "float16"],
         ("overflow-teacher", "float16")),
    Case("train-float16-overflow", 12,
         lambda e: e.train("--teacher_feature_dtype", "float16", "--teachers", str(e.models.overflow_teacher),
                           teachers=False),
         ("float16",)),
    # ---- 13. library messages: folded not cut, hf-aft's changed defaults named, a missing extra named, data files
    # of another format said as such, output dirs that can't hold folders, texts cut at every model's limit
    Case("load-best-with-default-save-strategy", 13,
         lambda e: _default_save(e, "--load_best_model_at_end", "true", "--eval_strategy", "epoch"),
         ("hf-aft's default --save_strategy is 'no'", "--save_strategy epoch"), before_teachers=True),
    Case("load-best-without-eval-strategy", 13, lambda e: _default_save(e, "--load_best_model_at_end", "true"),
         ("--eval_strategy epoch --save_strategy epoch", "hf-aft's default"), before_teachers=True),
    Case("load-best-eval-steps-from-default-logging-steps", 13,
         lambda e: e.train("--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "steps"),
         ("--eval_steps", "--logging_steps", "0.1"), before_teachers=True),
    Case("save-steps-with-default-save-strategy", 13, lambda e: _default_save(e, "--save_steps", "5"),
         ("--save_steps 5", "--save_strategy steps", "hf-aft's default"), before_teachers=True),
    Case("training-arguments-message-of-three-lines", 13,
         lambda e: e.train("--load_best_model_at_end", "true", "--eval_strategy", "epoch", "--save_strategy", "steps"),
         ("but found", "Evaluation strategy: IntervalStrategy.EPOCH", "Save strategy: SaveStrategy.STEPS")),
    Case("yaml-error-keeps-where", 13, lambda e: ["train", "--config", str(e.yaml("beta: [0.1\nteachers: {")),
                                                  "--output_dir", str(e.out)], ("recipe.yaml", "line 1", "expected")),
    Case("load-best-with-matching-strategies", 13,
         lambda e: e.train("--load_best_model_at_end", "true", "--eval_strategy", "steps", "--save_strategy", "steps",
                           "--eval_steps", "1", "--save_steps", "1"),
         outcome="ok", check=_check_capped_or_refused),
    Case("export-without-onnxscript", 13, _export, ('pip install "hf-aft[export]"', "onnxscript"),
         hidden=("onnxscript",)),
    Case("export-without-onnxruntime", 13, _export, ('pip install "hf-aft[export]"', "onnxruntime"),
         hidden=("onnxruntime",)),
    Case("export-int8-without-onnx", 13, lambda e: _export(e, "--quantize", "dynamic-int8"),
         ('pip install "hf-aft[export]"', "onnx"), hidden=("onnx",)),
    Case("features-onnxruntime-backend-without-onnxruntime", 13,
         lambda e: _features_args(e, e.data(), "--teacher_backend", "onnxruntime"),
         ('pip install "hf-aft[export]"', "--teacher_backend onnxruntime needs it"), hidden=("onnxruntime",),
         before_teachers=True),
    Case("train-int8-backend-without-onnxscript", 13, lambda e: e.train("--teacher_backend", "onnxruntime-int8"),
         ('pip install "hf-aft[export]"', "onnxscript"), hidden=("onnxscript",), before_teachers=True),
    Case("features-onnxruntime-backend-image-teacher", 13,
         lambda e: [*_images_16bit_png(e), "--teacher_backend", "onnxruntime"],
         ("runs text teachers", "is an image model", "--teacher_backend torch"), before_teachers=True),
    Case("features-gguf-teacher-without-gguf", 13, _gguf_features, ('pip install "hf-aft[gguf]"', "tiny.gguf"),
         hidden=("gguf",), before_teachers=True),
    Case("features-gguf-source-file-without-gguf", 13,
         lambda e: _gguf_features(e, f"{e.models.gguf_teacher.parent}::tiny.gguf"), ('pip install "hf-aft[gguf]"',),
         hidden=("gguf",), before_teachers=True),
    Case("train-gguf-teacher-without-gguf", 13,
         lambda e: e.train("--teachers", str(e.models.gguf_teacher), teachers=False),
         ('pip install "hf-aft[gguf]"',), hidden=("gguf",), before_teachers=True),
    Case("rank-gguf-teacher-without-gguf", 13,
         lambda e: ["rank-teachers", "--teachers", str(e.models.gguf_teacher), "--dataset_name", str(e.data()),
                    "--output_dir", str(e.work / "ranking")], ('pip install "hf-aft[gguf]"',), hidden=("gguf",),
         before_teachers=True),
    *([Case("output-dir-under-proc", 13, lambda e: train_args(e.models, e.data(), "/proc/hfaft-test/out"),
            ("/proc/hfaft-test/out", "proc filesystem"), before_teachers=True),
       Case("features-output-dir-under-proc", 13,
            lambda e: _features_args(e, e.data())[:-1] + ["/proc/hfaft-test/features"], ("proc filesystem",),
            before_teachers=True),
       Case("export-output-dir-under-sys", 13, lambda e: _export(e, out="/sys/hfaft-test/export"),
            ("/sys/hfaft-test/export", "sysfs")),
       Case("rank-output-file-under-proc", 13, lambda e: _rank_to(e, "--output_file", "/proc/hfaft-test.json"),
            ("/proc", "proc filesystem"), before_teachers=True),
       Case("rank-output-dir-under-proc", 13, lambda e: _rank_to(e, "--output_dir", "/proc/hfaft-test/ranking"),
            ("proc filesystem",), before_teachers=True),
       Case("student-output-dir-under-proc", 13,
            lambda e: ["student", "--from", str(e.models.teacher), "--num_layers", "1", "--output_dir",
                       "/proc/hfaft-test/student"], ("proc filesystem",)),
       ] if HAS_MOUNTS else []),
    Case("dataset-files-of-two-formats", 13, lambda e: e.train(data=_mixed_files(e, ".csv", ".json")),
         ("different formats (.csv, .json)", "one format"), before_teachers=True),
    Case("dataset-files-csv-and-tsv", 13, lambda e: e.train(data=_mixed_files(e, ".csv", ".tsv")),
         ("different formats (.csv, .tsv)",), before_teachers=True),
    Case("features-dataset-files-of-two-formats", 13,
         lambda e: _features_args(e, _mixed_files(e, ".jsonl", ".parquet")), ("different formats",),
         before_teachers=True),
    Case("rank-dataset-files-of-two-formats", 13,
         lambda e: _rank(e, "--folds", "2", data=_mixed_files(e, ".csv", ".parquet")), ("different formats",),
         before_teachers=True),
    Case("unlabeled-dataset-files-of-two-formats", 13,
         lambda e: e.train("--unlabeled_dataset", _mixed_files(e, ".csv", ".jsonl")),
         ("--unlabeled_dataset", "different formats"), before_teachers=True),
    Case("export-dataset-files-of-two-formats", 13,
         lambda e: _export(e, "--dataset_name", _mixed_files(e, ".csv", ".json")), ("different formats",)),
    Case("dataset-folder-of-two-formats", 13, lambda e: e.train(data=_mixed_folder(e)),
         ("mixed-folder", "different formats (.csv, .jsonl)"), before_teachers=True),
    Case("dataset-file-of-unknown-format", 13, lambda e: e.train(data=e.file("data.txt", "text,label\ngood,1\n")),
         ("data.txt", "csv, tsv, json, jsonl or parquet"), before_teachers=True),
    Case("dataset-file-missing-among-several", 13,
         lambda e: e.train(data=f"{_mixed_files(e, '.csv')},{e.work / 'missing.csv'}"),
         ("missing.csv", "does not exist"), before_teachers=True),
    # a folder name mistyped reads as a Hub id: the Hub's failure must also say that no such path is here
    *[Case(f"{name}-path-missing", 13, argv, ("no-such-folder/data", "here either", "check the path"),
           before_teachers=True)
      for name, argv in (("dataset", lambda e: e.train(data="no-such-folder/data")),
                         ("unlabeled-dataset", lambda e: e.train("--unlabeled_dataset", "no-such-folder/data")),
                         ("features-dataset", lambda e: _features_args(e, "no-such-folder/data")),
                         ("rank-dataset", lambda e: _rank(e, data="no-such-folder/data")))],
    Case("dataset-pattern-matches-nothing", 13, lambda e: e.train(data=e.work / "nowhere" / "*.csv"),
         ("matches no file",), before_teachers=True),
    Case("dataset-file-named-twice", 13, lambda e: e.train(data=f"{_mixed_files(e, '.csv')},{e.work}/mixed/part0.csv"),
         ("named twice",), before_teachers=True),
    Case("dataset-files-and-a-folder", 13, lambda e: e.train(data=f"{_mixed_files(e, '.csv')},{e.data()}"),
         ("is a folder",), before_teachers=True),
    Case("features-dataset-pattern", 13,
         lambda e: [_mixed_files(e, ".jsonl", ".jsonl"), _features_args(e, e.work / "mixed" / "*.jsonl")][1],
         outcome="ok", check=_check_glob_features),
    *[Case(f"max-length-above-position-table{suffix.replace('.', '-')}", 13,
           lambda e, suffix=suffix: e.train("--max_length", "128", data=_long_everywhere(e, suffix)),
           outcome="ok", check=_check_capped_or_refused) for suffix in (".jsonl", ".csv", ".parquet")],
    Case("gpt2-student-max-length-above-n-positions", 13,
         lambda e: _with_student(e.train("--max_length", "128", "--transfer", "none", teachers=False,
                                         data=_long_everywhere(e, ".jsonl")), e.models.gpt2_student),
         outcome="ok", check=_check_student_saved),
    Case("export-max-length-above-position-table", 13, _export_tokenizer_without_limit, outcome="ok",
         check=_check_exported),
    Case("features-teacher-max-length-above-position-table", 13,
         lambda e: _features_args(e, _long_everywhere(e, ".jsonl"), "--teacher_max_length", "128"), outcome="ok",
         check=lambda e: None),
    # ---- 25. per-group results: group columns that cannot be judged
    Case("group-column-missing", 25, lambda e: e.train("--group_column", "sorce", data=_grouped(e)),
         ("--group_column 'sorce'", "'source'"), before_teachers=True),
    Case("group-column-every-group-too-small", 25, lambda e: e.train("--group_column", "text", data=_grouped(e)),
         ("--group_column 'text'", "no group has 30 rows", "--group_min_rows"), before_teachers=True),
    Case("group-column-without-an-eval-split", 25,
         lambda e: e.train("--group_column", "source", data=e.data(test=False)), ("evaluation split",),
         before_teachers=True),
    Case("group-min-rows-zero", 25, lambda e: e.train("--group_column", "source", "--group_min_rows", "0",
                                                       data=_grouped(e)), ("--group_min_rows",), before_teachers=True),
    Case("group-min-rows-without-group-column", 25, lambda e: e.train("--group_min_rows", "5"),
         ("--group_min_rows", "--group_column"), before_teachers=True),
]


USAGE = "exit 2, but argparse's usage dump and an 'hf-aft <command>: error:' line instead of one 'hf-aft: error:' line"

# What each case that fails today does (exit status, exception, message), grouped by the kinds. Each is an
# xfail(strict=True): once fixed it XPASSes, which fails the suite until its entry here is removed.
FAILING_TODAY: dict[str, str] = {}  # every case passes (issue 11's fixes)


def _param(case: Case):
    today = FAILING_TODAY.get(case.id)
    marks = pytest.mark.xfail(strict=True, reason=f"kind {case.kind}: {today}") if today else ()
    return pytest.param(case, id=f"kind{case.kind}-{case.id}", marks=marks)


# ---------------------------------------------------------------- the harness
def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _looks_finished(folder: Path) -> bool:
    return folder.is_dir() and any((folder / name).exists() for name in FINISHED)


def _run(argv: list[str], capsys, in_subprocess: bool) -> tuple[int, str]:
    """Exit status and stderr of `hf-aft ARGV`, as the user would see them."""
    if in_subprocess:
        result = subprocess.run([sys.executable, "-m", "hf_aft", *argv], capture_output=True, text=True,
                                timeout=300)
        return result.returncode, result.stderr
    capsys.readouterr()
    try:
        code = main(argv)
        extra = ""
    except SystemExit as exit_:  # argparse; sys.exit(message) prints the message and exits 1
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        extra = "" if isinstance(exit_.code, int) or exit_.code is None else f"{exit_.code}\n"
    except Exception:  # what python -m hf_aft would print before exiting 1
        code, extra = 1, traceback.format_exc()
    return code, capsys.readouterr().err + extra


@pytest.fixture
def env(tmp_path, monkeypatch, models):
    monkeypatch.delenv("HF_AFT_DEBUG", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))  # this case's own feature cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))  # ...and a subprocess's
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return Env(work, cache, models)


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_bad_input(case: Case, env: Env, capsys, monkeypatch):
    argv = case.argv(env)
    teachers_before = set(env.teacher_files())  # building the case may run the session's first run in its cache
    before = _hashes(env.work)
    out_was_finished = _looks_finished(env.out)
    for module in case.hidden:  # `import module` now raises ModuleNotFoundError
        monkeypatch.setitem(sys.modules, module, None)
    code, stderr = _run(argv, capsys, case.subprocess)

    assert "Traceback" not in stderr, stderr
    after = _hashes(env.work)
    changed = sorted(name for name, digest in before.items() if after.get(name) != digest)
    assert not changed, f"pre-existing files changed or removed: {changed}"

    if case.outcome == "ok" or (case.outcome == "either" and code == 0):
        assert code == 0, stderr
        assert ERROR not in stderr, stderr
        case.check(env)
        return
    assert code == 2, f"exit status {code}; stderr:\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(ERROR)]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    for fragment in case.fragments:
        assert fragment in errors[0], errors[0]
    for fragment in case.absent:
        assert fragment.lower() not in errors[0].lower(), errors[0]
    if not out_was_finished:
        assert not _looks_finished(env.out), f"{env.out} looks finished: {sorted(p.name for p in env.out.iterdir())}"
    if case.before_teachers:
        assert not set(env.teacher_files()) - teachers_before, "a teacher ran before the input was refused"


def test_the_suite_tries_at_least_60_cases(request):
    ids = [case.id for case in CASES]
    assert len(set(ids)) == len(ids) and set(FAILING_TODAY) <= set(ids)
    assert len(CASES) >= 60
    failing = sum(case.id in FAILING_TODAY for case in CASES)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    message = f"hf-aft fuzz suite: {len(CASES)} bad inputs, {failing} of them marked as failing today (xfail)"
    if reporter is not None:
        reporter.write_line("")
        reporter.write_line(message)
    print(message)

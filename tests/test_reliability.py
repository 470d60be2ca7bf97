"""Issue 11, tested through the Python API: the feature cache repairs itself and survives two runs filling it at once,
images keep their range, texts are cut to what each model can take, a loss that stops being finite stops the run,
and the checks that refuse bad input before any teacher runs. (The command line is covered by test_fuzz_cli.py.)"""

import json
import logging
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import tiny
import torch
from PIL import Image

from hf_aft import AFTConfig, AFTError, AFTTrainer, extract_teacher_features, load_labelled_splits
from hf_aft.cache import checksum_file, file_sha256
from hf_aft.images import to_rgb
from hf_aft.losses import check_finite_loss
from hf_aft.outputs import COMPLETE_NAME
from hf_aft.teachers.loading import token_limit

CHECKSUM_WARNING = "does not match its recorded checksum"


def features_of(dataset) -> np.ndarray:
    return np.asarray(dataset["teacher_features"], dtype=np.float32)


# ---------------------------------------------------------------- the feature cache
def _filled_cache(teacher, cache: Path, n: int = 16):
    data = tiny.sentiment_dataset(n)
    features = features_of(extract_teacher_features(data, [str(teacher)], cache_dir=cache))
    files = sorted(cache.glob("*.arrow"))
    assert [f.name.split("-")[0] for f in files] == ["joined", "teacher"]
    for path in files:  # each file written got its checksum
        record = json.loads(checksum_file(path).read_text())
        assert record["sha256"] == file_sha256(path) and record["size"] == path.stat().st_size
    return data, features, files


def _overwrite_one_value(path: Path) -> None:
    """A float of the file changed in place: same size, still a valid Arrow file, wrong features."""
    first = datasets.Dataset.from_file(str(path)).with_format("numpy")[0]
    value = np.float32(np.asarray(next(iter(first.values())), dtype=np.float32)[0])
    data = bytearray(path.read_bytes())
    at = data.find(value.tobytes())
    data[at : at + 4] = np.float32(value + 1000).tobytes()
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncated", "overwritten-same-size", "checksum-missing"])
def test_a_damaged_cache_file_is_deleted_and_recomputed_with_one_warning(damage, teacher_dirs, tmp_path, caplog):
    data, expected, files = _filled_cache(teacher_dirs[0], tmp_path)
    for path in files:
        if damage == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif damage == "overwritten-same-size":
            _overwrite_one_value(path)
        else:
            checksum_file(path).unlink()
    with caplog.at_level(logging.WARNING, logger="hf_aft"):
        again = extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path)
    np.testing.assert_array_equal(features_of(again), expected)
    warnings = [r.getMessage() for r in caplog.records if CHECKSUM_WARNING in r.getMessage()]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    for path in files:  # recomputed and verified again
        assert json.loads(checksum_file(path).read_text())["sha256"] == file_sha256(path)


def test_an_intact_cache_is_read_without_warning_or_teacher(teacher_dirs, tmp_path, caplog):
    from unittest import mock

    from hf_aft.teachers import TextTeacher

    data, expected, _ = _filled_cache(teacher_dirs[0], tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_aft"), \
            mock.patch.object(TextTeacher, "load", side_effect=AssertionError("teacher loaded")):
        again = extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path)
    np.testing.assert_array_equal(features_of(again), expected)
    assert not [r for r in caplog.records if CHECKSUM_WARNING in r.getMessage()]


FILLER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    sys.path.insert(0, {tests!r})
    import tiny
    from hf_aft import extract_teacher_features
    from hf_aft.teachers import TextTeacher

    calls = [0]
    original = TextTeacher.__call__
    def counted(self, *args, **kwargs):
        calls[0] += 1
        time.sleep(0.2)  # a slow teacher: the other process arrives while this one is writing
        return original(self, *args, **kwargs)
    TextTeacher.__call__ = counted

    work = Path({work!r})
    (work / f"ready-{{sys.argv[1]}}").touch()
    while not (work / "go").exists():
        time.sleep(0.01)
    data = tiny.sentiment_dataset(600)
    out = extract_teacher_features(data, [{teacher!r}], cache_dir={cache!r}, map_batch_size=100)
    np.save(work / f"features-{{sys.argv[1]}}.npy", np.asarray(out["teacher_features"], dtype=np.float32))
    (work / f"calls-{{sys.argv[1]}}").write_text(str(calls[0]))
""")


def test_two_processes_filling_the_same_cache_at_once_compute_it_once_and_agree(teacher_dirs, tmp_path):
    work, cache = tmp_path / "work", tmp_path / "shared-cache"
    work.mkdir()
    script = FILLER.format(tests=str(Path(__file__).parent), work=str(work), teacher=str(teacher_dirs[0]),
                           cache=str(cache))
    processes = [subprocess.Popen([sys.executable, "-c", script, str(i)], stderr=subprocess.PIPE, text=True)
                 for i in range(2)]
    for _ in range(6000):  # both have imported everything: start them together
        if all((work / f"ready-{i}").exists() for i in range(2)) or any(p.poll() for p in processes):
            break
        time.sleep(0.02)
    (work / "go").touch()
    for process in processes:
        assert process.wait(timeout=600) == 0, process.stderr.read()
    expected = features_of(extract_teacher_features(tiny.sentiment_dataset(600), [str(teacher_dirs[0])],
                                                    cache_dir=tmp_path / "fresh-cache"))
    for i in range(2):
        np.testing.assert_allclose(np.load(work / f"features-{i}.npy"), expected, rtol=1e-6, atol=1e-7)
    calls = sorted(int((work / f"calls-{i}").read_text()) for i in range(2))
    assert calls == [0, 6], calls  # one process ran the teacher (6 blocks of 100 rows), the other read its file
    for path in cache.glob("*.arrow"):
        assert json.loads(checksum_file(path).read_text())["sha256"] == file_sha256(path)


def test_float16_features_that_overflow_are_refused_as_they_are_written(tmp_path):
    from transformers import BertModel

    teacher = tmp_path / "loud"
    torch.manual_seed(0)
    model = BertModel(tiny.bert_config(8))
    with torch.no_grad():
        model.encoder.layer[-1].output.LayerNorm.weight.fill_(1e6)
    model.save_pretrained(teacher)
    tiny.make_tokenizer(teacher).save_pretrained(teacher)
    with pytest.raises(AFTError, match=r"teacher '.*loud'.*float16's range"):
        extract_teacher_features(tiny.sentiment_dataset(8), [str(teacher)], cache_dir=tmp_path / "cache",
                                 feature_dtype="float16")
    assert not list((tmp_path / "cache").glob("joined-*.arrow"))  # nothing half-written left behind
    extract_teacher_features(tiny.sentiment_dataset(8), [str(teacher)], cache_dir=tmp_path / "cache")  # float32


# ---------------------------------------------------------------- images keep their range
def test_wide_pixel_types_become_the_same_8_bit_picture():
    arrays, _ = tiny.image_arrays(2)
    eight = arrays[0]
    expected = np.asarray(to_rgb(eight, "image", 0))
    sixteen = eight.astype(np.uint16) * 256 + 128
    same = {
        "uint16 array": sixteen, "PIL I;16": Image.fromarray(sixteen), "PIL I (16-bit values)": Image.fromarray(
            sixteen.astype(np.int32)), "int64 array of 8-bit values": eight.astype(np.int64),
        "float array in [0, 1]": eight / 255.0, "PIL F in [0, 1]": Image.fromarray((eight / 255.0).astype(np.float32)),
        "[H, W, 1]": eight[..., None], "[H, W, 2] gray + alpha": np.stack([eight, eight], -1),
    }
    for name, value in same.items():
        np.testing.assert_array_equal(np.asarray(to_rgb(value, "image", 0)), expected, err_msg=name)
    assert to_rgb(Image.new("La", (3, 3)), "image").mode == "RGB"


@pytest.mark.parametrize("value, fragment", [
    (np.full((4, 4), 200.0), "[0, 1]"), (np.full((4, 4), np.nan), "[0, 1]"),
    (np.full((4, 4), -3, np.int32), "0..255"), (np.full((4, 4), 70000, np.int64), "0..65535"),
])
def test_pixels_outside_any_image_range_are_refused_naming_column_and_row(value, fragment):
    with pytest.raises(AFTError, match=r"column 'image', row 7") as error:
        to_rgb(value, "image", 7)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_a_16_bit_png_and_its_8_bit_png_give_the_same_teacher_features(tmp_path):
    teacher = tiny.save_image_teacher(tmp_path / "teacher", kind="convnext")
    arrays, labels = tiny.image_arrays(6)
    paths = {}
    for bits in (8, 16):
        paths[bits] = []
        for i, array in enumerate(arrays):
            path = tmp_path / f"png{bits}" / f"{i}.png"
            path.parent.mkdir(exist_ok=True)
            Image.fromarray(array if bits == 8 else array.astype(np.uint16) * 257).save(path)
            paths[bits].append(str(path))
    assert Image.open(paths[16][0]).mode == "I;16"
    features = {bits: features_of(extract_teacher_features(datasets.Dataset.from_dict(
        {"image": paths[bits], "label": labels}), [str(teacher)], image_column="image", cache_dir=tmp_path / "c"))
        for bits in (8, 16)}
    np.testing.assert_array_equal(features[16], features[8])


# ---------------------------------------------------------------- texts longer than a model takes
def test_token_limit_reads_the_position_table_its_offset_and_the_tokenizer():
    assert token_limit(SimpleNamespace(max_position_embeddings=512, model_type="bert")) == 512
    assert token_limit(SimpleNamespace(max_position_embeddings=514, model_type="roberta", pad_token_id=1)) == 512
    assert token_limit(SimpleNamespace(max_position_embeddings=514, model_type="xlm-roberta", pad_token_id=1)) == 512
    assert token_limit(SimpleNamespace(max_position_embeddings=512), SimpleNamespace(model_max_length=128)) == 128
    assert token_limit(SimpleNamespace(), SimpleNamespace(model_max_length=int(1e30))) is None
    assert token_limit(SimpleNamespace(model_type="llama")) is None


def test_texts_longer_than_the_position_table_are_cut_with_one_warning(teacher_dirs, tmp_path, caplog):
    data = datasets.Dataset.from_dict({"text": [" ".join(tiny.WORDS * 8), "good film"], "label": [1, 0]})
    with caplog.at_level(logging.WARNING, logger="hf_aft"):
        for cache in ("a", "b"):  # a second extraction of the same teacher says nothing new
            capped = extract_teacher_features(data, [str(teacher_dirs[0])], max_length=1000,
                                              cache_dir=tmp_path / cache)
    cut = extract_teacher_features(data, [str(teacher_dirs[0])], max_length=64, cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(features_of(capped), features_of(cut))
    said = [r.getMessage() for r in caplog.records if "takes at most 64 tokens" in r.getMessage()]
    assert len(said) == 1 and "--teacher_max_length 1000" in said[0]


# ---------------------------------------------------------------- non-finite losses, options
def test_a_loss_that_becomes_nan_stops_training_naming_the_step(student_dir, teacher_dirs, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = extract_teacher_features(tiny.sentiment_dataset(16), [str(teacher_dirs[0])], cache_dir=tmp_path / "c")
    data = data.map(lambda b: tokenizer(b["text"], truncation=True), batched=True).rename_column("label", "labels")
    args = AFTConfig(output_dir=str(tmp_path / "out"), learning_rate=1e30, max_steps=4, per_device_train_batch_size=4,
                     report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True)
    trainer = AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir), args=args,
                         train_dataset=data, processing_class=tokenizer)
    with pytest.raises(AFTError, match=r"training stopped at step 2: the task loss is nan.*--learning_rate.*--beta"):
        trainer.train()
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_check_finite_loss_names_the_term():
    check_finite_loss({"task_loss": torch.tensor(0.5), "transfer_loss": torch.tensor(0.1)}, 3, 1e-3, 0.1)
    with pytest.raises(AFTError, match=r"step 7: the transfer loss is inf, so nothing"):
        check_finite_loss({"task_loss": torch.tensor(0.5), "transfer_loss": torch.tensor(float("inf"))}, 7, 1e-3, 0.1)
    with pytest.raises(AFTError, match="another process"):  # this process is fine, another one is not
        check_finite_loss({"task_loss": torch.tensor(0.5)}, 1, 1e-3, 0.1, reduce=lambda flag: flag * 0)


@pytest.mark.parametrize("options, fragment", [
    ({"learning_rate": float("nan")}, "learning_rate"), ({"weight_decay": float("inf")}, "weight_decay"),
    ({"max_grad_norm": float("nan")}, "max_grad_norm"), ({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"),
    ({"report_to": "carrier-pigeon"}, "report_to"),
])
def test_the_python_api_refuses_what_the_command_line_refuses(options, fragment, tmp_path):
    with pytest.raises(AFTError, match=fragment):
        AFTConfig(output_dir=str(tmp_path), **options)


# ---------------------------------------------------------------- data, labels, output dirs
def _splits(tmp_path, train, test, suffix=".jsonl"):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name, records in (("train", train), ("test", test)):
        (folder / f"{name}{suffix}").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(folder)


def test_every_split_is_checked_before_any_model_sees_it(tmp_path):
    good = [{"text": "good film", "label": i % 2} for i in range(8)]
    cases = {
        "the test split's column 'text' has no text at row 1": (good, [good[0], {"label": 1}]),
        "the eval split 'test' has labels ['7']": (good, [{**good[0], "label": 7}]),
        "the eval split 'test' has hidden labels (-1": (good, [{**good[0], "label": -1}]),
        "the training split's label column 'label' holds -1 from row 2": (
            [*good[:2], {**good[2], "label": -1}, *good[3:]], good),
    }
    for message, (train, test) in cases.items():
        with pytest.raises(AFTError, match=message.replace("(", r"\(").replace("[", r"\[")):
            load_labelled_splits(_splits(tmp_path, train, test))


def test_a_split_that_files_named_directly_cannot_have_points_to_a_folder_of_split_files(tmp_path, capsys):
    from hf_aft.commands import main
    from hf_aft.unlabeled_data import load_unlabeled

    train = [{"text": "good film", "label": i % 2} for i in range(8)]
    folder = _splits(tmp_path, train, [{"text": "bad", "label": 0}])
    files = [f"{folder}/train.jsonl,{folder}/test.jsonl", f"{folder}/*.jsonl", f"{folder}/train.jsonl"]
    way_out = "data files named directly form one split, 'train': put each split in a file named after it"
    for named in files:  # every shape of files named directly: never "pass --eval_split" to one who did
        with pytest.raises(AFTError, match=f"split 'test' not found; the dataset has splits \\['train'\\]: {way_out}"):
            load_labelled_splits(named, eval_split="test")
    train = load_labelled_splits(folder, eval_split="test")  # the folder the way out names has both splits
    assert (train.train.num_rows, train.eval.num_rows) == (8, 1)
    with pytest.raises(AFTError, match=f"--unlabeled_dataset .*split 'pool' not found.*{way_out}"):
        load_unlabeled(files[1], "pool", "text", "label", train.train, {"test": train.eval})
    with pytest.raises(AFTError, match="split 'pool' not found; the dataset has splits .*: name one of them with "):
        load_unlabeled(folder, "pool", "text", "label", train.train, {"test": train.eval})
    returncode = main(["features", "--teachers", "unused", "--dataset_name", files[0], "--splits", "train", "test",
                       "--output_dir", str(tmp_path / "features")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert returncode == 2 and len(errors) == 1 and "split 'test' not found" in errors[0] and way_out in errors[0]
    # A file the folder way out would leave out (datasets reads splits from file names) is refused, not dropped.
    (Path(folder) / "extra.jsonl").write_text(json.dumps({"text": "more", "label": 1}) + "\n")
    with pytest.raises(AFTError, match="would leave out 'extra.jsonl': name it after its split"):
        load_labelled_splits(folder, eval_split="test")
    (Path(folder) / "extra.jsonl").rename(Path(folder) / "train-2.jsonl")  # named after its split: read
    assert load_labelled_splits(folder, eval_split="test").train.num_rows == 9
    # Unlabelled rows beside the splits (a Hub dataset's split name, which no folder has): the way out is the pool
    (Path(folder) / "unlabeled.jsonl").write_text(json.dumps({"text": "unread"}) + "\n")
    with pytest.raises(AFTError, match="datasets reads no 'unlabeled' split from a folder of data files, only train, "
                                       "test and validation, so it would leave out 'unlabeled.jsonl': move it out of "
                                       "the folder and give it on its own as --unlabeled_dataset"):
        load_labelled_splits(folder, eval_split="test")
    (Path(folder) / "unlabeled.jsonl").unlink()
    # Without --eval_split the run says it will not be evaluated, with the same way out (not "pass --eval_split").
    assert main(["train", "--model_name_or_path", str(tmp_path / "none"), "--teachers", str(tmp_path / "none"),
                 "--dataset_name", files[0], "--output_dir", str(tmp_path / "out")]) == 2  # no such teacher
    notice = next(line for line in capsys.readouterr().out.splitlines() if "no evaluation split" in line)
    assert way_out in notice and "pass --eval_split" not in notice
    (Path(folder) / "test.jsonl").rename(Path(folder) / "Test.jsonl")  # datasets would train on it
    with pytest.raises(AFTError, match="'Test.jsonl' is named after a split in capitals.*rename 'Test' to 'test'"):
        load_labelled_splits(folder)
    assert not (tmp_path / "features").exists()


def test_an_image_folder_whose_splits_datasets_would_misread_is_refused_naming_the_fix(tmp_path):
    """An image folder's splits are its top subfolders: `Test/` in capitals would join the train split, and one
    metadata.csv above train/ and test/ is not read (each image would be labelled by its split's name)."""
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for i in range(4):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / split / f"{i}.png")
    (tmp_path / "metadata.csv").write_text("file_name,label\n" + "".join(
        f"{split}/{i}.png,{i % 2}\n" for split in ("train", "test") for i in range(4)))
    with pytest.raises(AFTError, match="'metadata.csv' sits above the split folders test/, train/.*put one "
                                       "metadata.csv in each split folder"):
        load_labelled_splits(str(tmp_path), input_column="image")
    for split in ("train", "test"):  # the fix it names: read, labels from the metadata
        (tmp_path / split / "metadata.csv").write_text("file_name,label\n" + "".join(
            f"{i}.png,{i % 2}\n" for i in range(4)))
    (tmp_path / "metadata.csv").unlink()
    loaded = load_labelled_splits(str(tmp_path), input_column="image", eval_split="test")
    assert (loaded.train.num_rows, loaded.eval.num_rows) == (4, 4) and sorted(loaded.train["label"]) == [0, 0, 1, 1]
    (tmp_path / "test").rename(tmp_path / "Test")
    with pytest.raises(AFTError, match="'Test/' is named after a split in capitals.*rename 'Test' to 'test'"):
        load_labelled_splits(str(tmp_path), input_column="image")


def _image_folder(root: Path, paths: list[str]) -> Path:
    for i, path in enumerate(paths):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (20 * i, 0, 0)).save(root / path)
    return root


def test_an_image_folder_is_read_whole_into_the_splits_its_folders_name_or_refused(tmp_path):
    """datasets reads a split's name anywhere in an image's path and leaves out images outside the split folders or
    missing from a metadata file: each such layout is one line naming the image and the fix, and the fix reads."""
    split_folders = ["train/bus/a.png", "train/bus/b.png", "train/car/c.png", "test/bus/d.png", "test/car/e.png"]
    layouts = {  # layout -> (what is refused, the fixed layout)
        "a class named like a split": (
            ["train/bus/a.png", "train/train/b.png", "test/bus/d.png", "test/train/e.png"],
            r"datasets would read 'test/train/e.png' into the train and test splits: rename .* 'train' -> 'trainx'"),
        "an image beside the split folders": (
            [*split_folders, "extra/bus/f.png"], "would leave out 'extra/bus/f.png': move it into its split's folder"),
        "a split's name in a file name, no split folders": (
            ["bus/a.png", "bus/test_b.png", "car/c.png"],
            r"split names in its paths \(test: 1 file, e.g. 'bus/test_b.png'\) and would leave out 'bus/a.png'"),
    }
    for name, (paths, refusal) in layouts.items():
        with pytest.raises(AFTError, match=refusal):
            load_labelled_splits(str(_image_folder(tmp_path / name.replace(" ", "-"), paths)), input_column="image")
    flat = _image_folder(tmp_path / "flat", ["train/bus/a.png", "train/b.png", "test/bus/c.png", "test/d.png"])
    with pytest.raises(AFTError, match=r"column 'label' not found.* a folder per class \(train/cat/a.png\)"):
        load_labelled_splits(str(flat), input_column="image")  # not "pass --label_column": there is none to pass
    loaded = load_labelled_splits(str(_image_folder(tmp_path / "fixed", split_folders)), input_column="image")
    assert (loaded.train.num_rows, loaded.eval.num_rows, loaded.labels.names) == (3, 2, ["bus", "car"])
    # What datasets reads right is read: split folders one level down or with digits; hidden files are skipped.
    for name, top in (("down", "images/"), ("digits", "")):
        paths = [p.replace("train/", f"{top}train{'_2024' * (name == 'digits')}/").replace(
            "test/", f"{top}test{'_2024' * (name == 'digits')}/") for p in [*split_folders, "train/bus/._a.png"]]
        loaded = load_labelled_splits(str(_image_folder(tmp_path / name, paths)), input_column="image")
        assert (loaded.train.num_rows, loaded.eval.num_rows) == (3, 2)
    with pytest.raises(AFTError, match="would read 'test/train/x.ppm' into the train and test splits"):
        load_labelled_splits(str(_image_folder(tmp_path / "ppm", [*split_folders, "test/train/x.ppm"])),
                             input_column="image")  # every format datasets reads as an image is checked
    linked = _image_folder(tmp_path / "linked", split_folders)
    _image_folder(tmp_path, ["elsewhere.png"])
    (linked / "train" / "car" / "linked.png").symlink_to(tmp_path / "elsewhere.png")  # a linked file is read
    assert load_labelled_splits(str(linked), input_column="image").train.num_rows == 4
    (linked / "test" / "car").rename(tmp_path / "car-elsewhere")
    (linked / "test" / "car").symlink_to(tmp_path / "car-elsewhere", target_is_directory=True)
    with pytest.raises(AFTError, match="'test/car' is a link to a folder, which datasets does not follow"):
        load_labelled_splits(str(linked), input_column="image")
    # A metadata file must list its folder's images, and only images that are there.
    folder = _image_folder(tmp_path / "metadata", ["train/a.png", "train/b.png", "test/c.png", "test/d.png"])
    (folder / "test" / "metadata.csv").write_text("file_name,label\nc.png,0\nd.png,1\n")
    (folder / "train" / "metadata.csv").write_text("file_name,label\na.png,0\n")
    with pytest.raises(AFTError, match="'train/metadata.csv' does not list 'train/b.png', so datasets would leave"):
        load_labelled_splits(str(folder), input_column="image")
    (folder / "train" / "metadata.csv").write_text("file_name,label\na.png,0\nb.png,1\ngone.png,0\n")
    with pytest.raises(AFTError, match="'train/metadata.csv' names 'gone.png', which is not an image in its folder"):
        load_labelled_splits(str(folder), input_column="image")
    (folder / "train" / "metadata.csv").write_text("file_name,label\na.png,0\nb.png,1\n")
    assert load_labelled_splits(str(folder), input_column="image").train["label"] == [0, 1]
    # A test class the training split lacks (an image folder's class names come from every split's folders).
    folder = _image_folder(tmp_path / "new-class", [*split_folders, "test/van/f.png"])
    with pytest.raises(AFTError, match=r"the eval split 'test' has labels \['van'\] that the training split lacks "
                                       r"\(it has \['bus', 'car'\]\)"):
        load_labelled_splits(str(folder), input_column="image")


def test_unlabelled_images_are_checked_for_leakage_and_every_image_file_opens(tmp_path, capsys):
    """The pool's images are compared with the eval and training images by their files' SHA-256 (a copy at another
    path is found), and an image file that does not open is one line naming it, before any model runs."""
    from hf_aft.commands import main
    from hf_aft.unlabeled_data import load_unlabeled

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png", "test/car/d.png"])
    pool = _image_folder(tmp_path / "pool", ["p1.png", "p2.png"])  # images of their own: their colours differ
    for i in range(2):
        Image.new("RGB", (8, 8), (0, 50 + i, 0)).save(pool / f"p{i + 1}.png")
    splits = load_labelled_splits(str(data), input_column="image")
    assert len(load_unlabeled(str(pool), "train", "image", "label", splits.train, {"eval": splits.eval})) == 2
    (pool / "copy.png").write_bytes((data / "test" / "car" / "d.png").read_bytes())
    with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
        load_unlabeled(str(pool), "train", "image", "label", splits.train, {"eval": splits.eval})
    returncode = main(["features", "--teachers", "unused", "--dataset_name", str(data), "--image_column", "image",
                       "--unlabeled_dataset", str(data), "--unlabeled_split", "test",
                       "--output_dir", str(tmp_path / "features")])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
    assert returncode == 2 and len(errors) == 1 and "are also in the" in errors[0], errors
    (data / "test" / "car" / "d.png").write_bytes(b"not a png")  # a damaged file: opens as no image
    with pytest.raises(AFTError, match=r"image column 'image', row 1: '.*test/car/d.png' is not a readable image"):
        load_labelled_splits(str(data), input_column="image")
    (data / "test" / "car" / "d.png").write_bytes(b"")  # an empty one is named before datasets reads the folder
    with pytest.raises(AFTError, match=r"the file '.*test/car/d.png' is empty"):
        load_labelled_splits(str(data), input_column="image")
    assert not (tmp_path / "features").exists()


def test_an_eval_image_in_the_pool_in_another_form_is_leakage_and_a_huge_one_is_one_line(tmp_path):
    """The same picture re-saved (an optimised PNG, a BMP) or stored as an array beside an image folder: it was
    compared by file bytes with the eval image and trained on (exit 0). Now by decoded pixels. An image past PIL's
    decompression-bomb limit was a traceback (DecompressionBombError is not an OSError)."""
    from hf_aft.unlabeled_data import load_unlabeled

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png", "test/car/d.png"])
    splits = load_labelled_splits(str(data), input_column="image")
    leaked = Image.open(data / "test" / "car" / "d.png")
    own = Image.new("RGB", (8, 8), (0, 77, 0))
    arrays = datasets.Dataset.from_dict({"image": [np.asarray(own), np.asarray(leaked)]})  # lists of ints on disk
    forms = {"optimised.png": lambda f: (own.save(f / "own.png"), leaked.save(f / "x.png", optimize=True)),
             "bmp": lambda f: (own.save(f / "own.png"), leaked.save(f / "x.bmp")),
             "rgba": lambda f: (own.save(f / "own.png"), leaked.convert("RGBA").save(f / "x.png")),
             "palette": lambda f: (own.save(f / "own.png"), leaked.quantize(4).save(f / "x.png")),
             "array": arrays.save_to_disk}
    for form, save in forms.items():
        pool = tmp_path / form
        pool.mkdir()
        save(pool)
        with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
            load_unlabeled(str(pool), "train", "image", "label", splits.train, {"eval": splits.eval})
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    own.save(bomb / "own.png")
    Image.new("L", (14000, 14000)).save(bomb / "huge.png")  # 196 million pixels, a 200 KB file
    with pytest.raises(AFTError, match=r"huge.png' is not a readable image \(Image size \(196000000 pixels\) "
                                       "exceeds limit"):
        load_unlabeled(str(bomb), "train", "image", "label", splits.train, {"eval": splits.eval})


def test_the_trainer_finds_an_eval_image_given_as_a_file_path_in_the_pool_or_the_reverse(tmp_path):
    """AFTTrainer takes a pool (or eval set) of image file paths as it is; its leakage check compared the paths as
    strings with the eval images, so the eval images saved as files and given as the pool were trained on."""
    from hf_aft.unlabeled_data import check_trainer_pool

    images = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(4)]
    for i, image in enumerate(images):
        image.save(tmp_path / f"{i}.png")
    as_images = datasets.Dataset.from_dict({"image": images[:2]}).cast_column("image", datasets.Image())
    paths = datasets.Dataset.from_dict({"image": [str(tmp_path / "1.png"), str(tmp_path / "3.png")]})
    with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
        check_trainer_pool(paths, None, as_images, "image")
    with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
        check_trainer_pool(as_images, None, paths, "image")
    check_trainer_pool(datasets.Dataset.from_dict({"image": [str(tmp_path / "2.png")]}), None, as_images, "image")
    records = datasets.Dataset.from_dict({"image": [{"bytes": None, "path": str(tmp_path / "1.png")}]})
    with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
        check_trainer_pool(records, None, as_images, "image")  # an Image column's undecoded form


def test_a_pool_that_reads_as_several_splits_says_which_rows_it_leaves_out(tmp_path, caplog):
    """A flat pool folder whose file names hold split words (test_1.png, train_2.png) reads as two splits, and the
    default --unlabeled_split train quietly left the test_* images out: now said, with the way out."""
    from hf_aft.unlabeled_data import load_unlabeled

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png", "test/car/d.png"])
    splits = load_labelled_splits(str(data), input_column="image")
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(5):
        Image.new("RGB", (8, 8), (0, 0, 100 + i)).save(pool / f"{'test' if i < 2 else 'train'}_{i}.png")
    with caplog.at_level(logging.WARNING):
        rows = load_unlabeled(str(pool), "train", "image", "label", splits.train, {"eval": splits.eval})
    assert len(rows) == 3
    (line,) = [m for m in caplog.messages if "also has" in m]
    assert "also has split 'test' (2 rows): only its 'train' split is used (--unlabeled_split, train unless given: " \
           "name another with it, or give the pool a folder of its own)." in line
    # the note holds whether --unlabeled_split train was given or left out: it said "--unlabeled_split names another"
    assert "names another" not in line


def test_a_broken_link_or_an_unlabeled_folder_in_an_image_folder_is_named_as_such(tmp_path):
    """A link to a missing file was blamed on split naming (advice that did not help); an `unlabeled/` folder beside
    train/ and test/ (a Hub dataset's split name, which datasets does not read from a folder) got the advice to move
    its images into their split's folder."""
    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png", "test/car/d.png"])
    (data / "train" / "bus" / "zz.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(AFTError, match=r"'train/bus/zz.png' is a link to '.*nowhere.png', which does not exist"):
        load_labelled_splits(str(data), input_column="image")
    (data / "train" / "bus" / "zz.png").unlink()
    for name in ("unlabeled", "Unlabelled", "unsupervised"):
        _image_folder(data, [f"{name}/u1.png", f"{name}/u2.png"])
        with pytest.raises(AFTError, match=rf"datasets reads no '{name}' split from a folder.* move {name}/ out of "
                                           ".* and give it on its own as --unlabeled_dataset"):
            load_labelled_splits(str(data), input_column="image")
        shutil.rmtree(data / name)


def test_a_pool_of_image_paths_beside_an_image_folder_reads_as_images(tmp_path):
    """A csv of image file paths as the pool of an image-folder task: its paths read as images, so a path to a copy
    of an eval image is found as leakage; a csv of other text stays refused as text beside images."""
    from hf_aft.unlabeled_data import load_unlabeled

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png", "test/car/d.png"])
    pool = tmp_path / "pool"
    pool.mkdir()
    for i in range(2):
        Image.new("RGB", (8, 8), (0, 90 + i, 0)).save(pool / f"p{i}.png")
    (tmp_path / "pool.csv").write_text(f"image,label\n{pool / 'p0.png'},x\n{pool / 'p1.png'},y\n")
    splits = load_labelled_splits(str(data), input_column="image")
    rows = load_unlabeled(str(tmp_path / "pool.csv"), "train", "image", "label", splits.train, {"eval": splits.eval})
    assert isinstance(rows.features["image"], datasets.Image) and rows.column_names == ["image"] and len(rows) == 2
    (pool / "copy.png").write_bytes((data / "test" / "car" / "d.png").read_bytes())
    (tmp_path / "pool.csv").write_text(f"image\n{pool / 'p0.png'}\n{pool / 'copy.png'}\n")
    with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
        load_unlabeled(str(tmp_path / "pool.csv"), "train", "image", "label", splits.train, {"eval": splits.eval})
    (tmp_path / "pool.csv").write_text("image\nelsewhere/p0.png\n")  # a relative path that is not found from here
    with pytest.raises(AFTError, match=r"row 0: 'elsewhere/p0.png' is not an image file .* a relative path is read "
                                       "from"):
        load_unlabeled(str(tmp_path / "pool.csv"), "train", "image", "label", splits.train, {"eval": splits.eval})
    (tmp_path / "pool.csv").write_text("image\na sentence and not a file\nanother\n")
    with pytest.raises(AFTError, match="holds text but the labelled data's holds image"):
        load_unlabeled(str(tmp_path / "pool.csv"), "train", "image", "label", splits.train, {"eval": splits.eval})


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_a_truncated_image_is_named_before_any_model_runs(tmp_path, suffix, capsys):
    """An image file cut short (an interrupted copy: its header reads, its pixels do not) is one line naming the
    split's row, not a traceback when evaluation decodes it after training."""
    data = _image_folder(tmp_path / "data", [f"train/bus/a.{suffix}", f"train/car/b.{suffix}",
                                             f"test/bus/c.{suffix}", f"test/car/d.{suffix}"])
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)  # compresses little
    Image.fromarray(noise).save(data / "test" / "car" / f"d.{suffix}")
    whole = (data / "test" / "car" / f"d.{suffix}").read_bytes()
    (data / "test" / "car" / f"d.{suffix}").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(AFTError, match=rf"image column 'image', row 1: '.*test/car/d.{suffix}' is not a readable "
                                       "image .*replace or drop that file"):
        load_labelled_splits(str(data), input_column="image")
    # hf-aft features copies the eval split beside the train split's features: checked too, before any teacher runs
    from hf_aft.commands import main

    capsys.readouterr()
    assert main(["features", "--teachers", "unused", "--dataset_name", str(data), "--image_column", "image",
                 "--output_dir", str(tmp_path / "features")]) == 2 and not (tmp_path / "features").exists()
    assert f"test/car/d.{suffix}' is not a readable image" in capsys.readouterr().err
    # embedded in a saved dataset, the image is named by the file it came from
    datasets.load_dataset("imagefolder", data_dir=str(data)).cast_column(
        "image", datasets.Image(decode=False)).save_to_disk(str(tmp_path / "saved"))
    with pytest.raises(AFTError, match=rf"row 1: 'd.{suffix}' is not a readable image"):
        load_labelled_splits(str(tmp_path / "saved"), input_column="image")


def test_an_image_folder_read_whole_once_is_not_read_again_until_a_file_changes(tmp_path, monkeypatch):
    """Reading every image to its end costs about 0.5 ms a JPEG: a second run on the same images skips it (a marker
    named by the dataset's fingerprint), and a replaced file is read again (its modification time changes it)."""
    import time as clock

    from hf_aft import images

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png"])
    load = lambda: datasets.load_dataset("imagefolder", data_dir=str(data))["train"]  # noqa: E731
    images.check_images_open(load(), "image")
    images._OPENED.clear()  # a new process
    monkeypatch.setattr(images, "read_whole", lambda source: (_ for _ in ()).throw(LookupError("read again")))
    images.check_images_open(load(), "image")
    clock.sleep(0.01)
    (data / "train" / "car" / "b.png").write_bytes((data / "train" / "bus" / "a.png").read_bytes()[:40])
    with pytest.raises(LookupError, match="read again"):
        images.check_images_open(load(), "image")


def test_an_image_that_fails_to_decode_later_is_one_error_naming_it(tmp_path):
    """A lazily decoded PIL image whose pixels do not read (datasets hands the collator such images)."""
    from hf_aft.images import to_rgb

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "a.png").write_bytes((tmp_path / "a.png").read_bytes()[:2000])
    with pytest.raises(AFTError, match=r"column 'image', row 3: the image does not decode .*replace or drop"):
        to_rgb(Image.open(tmp_path / "a.png"), "image", 3)


def test_a_missing_folder_is_not_read_from_the_cached_copy_of_a_folder_of_that_name(student_dir, tmp_path,
                                                                                   monkeypatch, capsys):
    """Offline, datasets answers a name that is no local path with the latest dataset cached under that name, which
    can be a folder of that name loaded from another directory: that is refused, not trained on."""
    from hf_aft.commands import main

    name = f"data_{tmp_path.name}"  # unique in the session's datasets cache
    (tmp_path / "project" / name).mkdir(parents=True)
    tiny.sentiment_dataset(16, seed=0).to_csv(tmp_path / "project" / name / "train.csv")
    monkeypatch.chdir(tmp_path / "project")
    assert load_labelled_splits(name).train.num_rows == 16  # cached under the folder's name
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    with pytest.raises(AFTError, match="cached copy of a local folder once loaded under that name"):
        load_labelled_splits(name)
    capsys.readouterr()
    assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", name, "--output_dir", "out",
                 "--use_cpu", "true"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "give the path of the data you mean" in error and not Path("out").exists()


def test_a_run_is_marked_complete_last_and_push_refuses_one_that_is_not(student_dir, teacher_dirs, tmp_path, capsys):
    from hf_aft.commands import main

    data = _splits(tmp_path, [{"text": t, "label": i % 2} for i, t in enumerate(tiny.sentiment_dataset(8)["text"])],
                   [{"text": "good film", "label": 1}, {"text": "bad film", "label": 0}])
    out = tmp_path / "out"
    assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", data, "--output_dir", str(out),
                 "--teachers", str(teacher_dirs[0]), "--max_steps", "1", "--per_device_train_batch_size", "4",
                 "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no"]) == 0
    marker = json.loads((out / COMPLETE_NAME).read_text())
    assert marker["complete"] and {"model.safetensors", "README.md", "eval_results.json"} <= set(marker["files"])
    (out / COMPLETE_NAME).unlink()
    capsys.readouterr()
    assert main(["push", str(out), "--hub_model_id", "org/name"]) == 2
    assert COMPLETE_NAME in capsys.readouterr().err


def test_a_parquet_pool_of_image_bytes_beside_an_image_folder_reads_as_images(tmp_path):
    """Raw PNG bytes, or pandas' {"bytes", "path"} records, in a parquet pool were refused as "binary values" /
    "dict" with a way out (--image_column) that was already taken: they read as images, leakage found by pixels."""
    import io

    import pandas as pd

    from hf_aft.unlabeled_data import load_unlabeled

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png", "test/car/d.png"])
    splits = load_labelled_splits(str(data), input_column="image")

    def png(image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    own, leaked = png(Image.new("RGB", (8, 8), (0, 99, 0))), png(Image.open(data / "test" / "car" / "d.png"))
    for name, rows in (("raw", [own, own]), ("records", [{"bytes": own, "path": None}] * 2)):
        pd.DataFrame({"image": rows}).to_parquet(tmp_path / f"{name}.parquet")
        pool = load_unlabeled(str(tmp_path / f"{name}.parquet"), "train", "image", "label", splits.train,
                              {"eval": splits.eval})
        assert isinstance(pool.features["image"], datasets.Image) and pool[0]["image"].size == (8, 8)
    pd.DataFrame({"image": [own, leaked]}).to_parquet(tmp_path / "leaky.parquet")
    with pytest.raises(AFTError, match="1 row of the unlabelled .* split is also in the eval split"):
        load_unlabeled(str(tmp_path / "leaky.parquet"), "train", "image", "label", splits.train, {"eval": splits.eval})
    floats = datasets.Dataset.from_dict({"image": [np.full((8, 8, 3), 0.5, np.float32)] * 2})
    floats.save_to_disk(tmp_path / "floats")  # a traceback in the join with the labelled rows, after the teachers
    with pytest.raises(AFTError, match="are arrays of float32 beside labelled image files.*save them as 8-bit"):
        load_unlabeled(str(tmp_path / "floats"), "train", "image", "label", splits.train, {"eval": splits.eval})


def test_an_image_file_whose_values_fit_no_range_is_named_once_with_its_file(tmp_path):
    """A 32-bit TIFF of values up to 252,000: the message said column and row twice, around 'is not a readable image
    file', though the file reads; it names what the pixels hold."""
    path = tmp_path / "wide.tiff"
    Image.fromarray((np.arange(64).reshape(8, 8) * 4000).astype(np.int32)).save(path)
    with pytest.raises(AFTError) as refused:
        to_rgb(str(path), "image", 16)
    message = str(refused.value)
    assert message.startswith(f"column 'image', row 16 ({str(path)!r}): mode I holds values in [0, 252000]")
    assert message.count("row 16") == 1 and "not a readable image" not in message


def test_image_digests_are_decoded_once_and_kept_beside_the_datasets_cache(tmp_path, monkeypatch):
    """Pixel digests cost a decode per image: a second run (a new process, the same folder) reads them back; a file
    replaced under the same name changes the folder's fingerprint and is decoded again."""
    from hf_aft import images

    data = _image_folder(tmp_path / "data", ["train/bus/a.png", "train/car/b.png", "test/bus/c.png"])
    decoded = []
    digest = images._digest
    monkeypatch.setattr(images, "_digest",
                        lambda value, column, *where: decoded.append(1) or digest(value, column, *where))
    first = images.image_digests(load_labelled_splits(str(data), input_column="image").train, "image")
    assert len(decoded) == 2
    images._DIGESTS.clear()  # as in a new process
    again = images.image_digests(load_labelled_splits(str(data), input_column="image").train, "image")
    assert again == first and len(decoded) == 2
    time.sleep(0.01)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(data / "train" / "car" / "b.png")
    changed = images.image_digests(load_labelled_splits(str(data), input_column="image").train, "image")
    assert len(decoded) == 4 and changed[0] == first[0] and changed[1] != first[1]


@pytest.mark.parametrize("role", ["--teachers", "--distill_teacher", "--model_name_or_path"])
def test_a_model_folder_without_its_tokenizer_is_refused_not_read_as_unknown_tokens(role, student_dir, teacher_dirs,
                                                                                   tmp_path, capsys):
    """`model.save_pretrained(dir)` alone writes no tokenizer: transformers then builds one of 5 special tokens, every
    word reads as [UNK], and a teacher's features (or a task teacher's logits) only saw each text's length."""
    from transformers import BertForSequenceClassification, BertModel

    from hf_aft.commands import main

    bare = tmp_path / "bare"
    torch.manual_seed(0)
    kind = BertModel if role == "--teachers" else BertForSequenceClassification
    kind(tiny.bert_config(12, id2label={0: "0", 1: "1"})).save_pretrained(bare)
    data = tiny.save_sentiment_files(tmp_path / "data") / "labelled"
    models = {"--model_name_or_path": str(student_dir), "--teachers": str(teacher_dirs[0]), role: str(bare)}
    extra = ["--distill", "logits"] if role == "--distill_teacher" else []
    assert main(["train", *[x for pair in models.items() for x in pair], "--dataset_name", str(data), "--output_dir",
                 str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none", "--use_cpu", "true", *extra]) == 2
    line = tiny.error_line(capsys)
    assert f"{bare}'" in line and "its tokenizer knows 5 tokens and its model 30" in line, line
    who = {"--teachers": "teacher", "--distill_teacher": "--distill_teacher", "--model_name_or_path": "the student"}
    assert line.startswith(f"hf-aft: error: {who[role]} "), line
    assert "tokenizer.save_pretrained(DIR)" in line and not (tmp_path / "out").exists()


def test_a_tokenizer_larger_than_its_models_vocabulary_is_one_line_not_an_index_error(student_dir, tmp_path, capsys):
    from transformers import BertConfig, BertModel

    from hf_aft.commands import main

    teacher = tmp_path / "teacher"
    config = BertConfig(vocab_size=12, hidden_size=12, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=24, max_position_embeddings=64)
    BertModel(config).save_pretrained(teacher)
    tiny.make_tokenizer(teacher).save_pretrained(teacher)  # 30 tokens for 12 embeddings
    data = tiny.save_sentiment_files(tmp_path / "data") / "labelled"
    assert main(["train", "--model_name_or_path", str(student_dir), "--teachers", str(teacher), "--dataset_name",
                 str(data), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to", "none",
                 "--use_cpu", "true"]) == 2
    line = tiny.error_line(capsys)
    assert "its tokenizer knows 30 tokens and its model 12: token ids from 12 up would index past" in line, line

"""Library messages as hf-aft quotes them (issue 23): folded into one line, not cut; a missing optional extra named
with its pip install; data files whose formats differ; output folders on filesystems that hold none; texts cut at
the model's limit whatever max_length is asked. The command-line cases are kind 13 of tests/test_fuzz_cli.py."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from hf_aft import filesystems
from hf_aft.config import AFTConfig
from hf_aft.data_files import named_files, suffix
from hf_aft.errors import AFTError, first_line, missing_extra, one_line, require_extra
from hf_aft.outputs import check_creatable
from hf_aft.teachers.loading import token_limit
from hf_aft.tokens import within_limit


def test_one_line_keeps_every_line_that_first_line_cuts():
    error = ValueError("requires the strategies to match, but found\n- Evaluation strategy: EPOCH\n- Save: NO\n")
    assert first_line(error) == "requires the strategies to match, but found"
    assert one_line(error) == "requires the strategies to match, but found - Evaluation strategy: EPOCH - Save: NO"
    assert one_line(KeyError()) == "KeyError" and one_line(ValueError("  \n ")) == "ValueError"


@pytest.mark.parametrize("module, extra", [("onnxscript", "export"), ("onnxruntime", "export"), ("onnx", "export"),
                                           ("gguf", "gguf")])
def test_a_missing_optional_module_names_its_extra(module, extra):
    error = missing_extra(ModuleNotFoundError(f"No module named '{module}'", name=module), "hf-aft export")
    assert isinstance(error, AFTError)
    assert str(error) == (f'{module} is not installed (hf-aft export needs it): pip install "hf-aft[{extra}]", the '
                          f"optional {extra} extra.")


def test_missing_extra_reads_library_messages_and_ignores_other_modules():
    gguf = missing_extra(ImportError("Please install torch and gguf>=0.10.0 to load a GGUF checkpoint in PyTorch."))
    assert 'pip install "hf-aft[gguf]"' in str(gguf) and "did not import" in str(gguf)
    submodule = missing_extra(ModuleNotFoundError("No module named 'onnxscript.x'", name="onnxscript.x"))
    assert "onnxscript did not import" in str(submodule)  # installed, but another version: not "not installed"
    assert missing_extra(ModuleNotFoundError("No module named 'wandb'", name="wandb")) is None


def test_require_extra_imports_the_extra_up_front(monkeypatch):
    require_extra("export", "hf-aft export")  # installed in the test environment
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(AFTError, match=r'onnxscript is not installed \(hf-aft export needs it\): pip install "hf-aft'):
        require_extra("export", "hf-aft export")


def test_a_gguf_teacher_without_gguf_is_refused_when_the_options_are_made(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "gguf", None)
    with pytest.raises(AFTError, match=r'pip install "hf-aft\[gguf\]"'):
        AFTConfig(output_dir=str(tmp_path), report_to="none", teachers=["org/repo::model.Q8_0.gguf"])


@pytest.mark.parametrize("options, fragment", [
    ({"load_best_model_at_end": True, "eval_strategy": "epoch"}, "--save_strategy epoch (matching --eval_strategy"),
    ({"load_best_model_at_end": True}, "--eval_strategy epoch --save_strategy epoch"),
    ({"load_best_model_at_end": True, "eval_strategy": "steps", "save_strategy": "steps"}, "pass --eval_steps too"),
    ({"save_steps": 7}, "--save_steps 7 would save nothing"),
])
def test_options_that_clash_with_hf_afts_defaults_name_the_default(options, fragment, tmp_path):
    with pytest.raises(AFTError, match="hf-aft's default") as refused:
        AFTConfig(output_dir=str(tmp_path), report_to="none", **options)
    assert fragment in str(refused.value)


def test_the_fixes_the_messages_give_are_accepted(tmp_path):
    for options in ({"load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "epoch"},
                    {"load_best_model_at_end": True, "eval_strategy": "steps", "save_strategy": "steps",
                     "eval_steps": 500}, {"save_strategy": "steps", "save_steps": 7}):
        AFTConfig(output_dir=str(tmp_path), report_to="none", **options)


@pytest.mark.parametrize("config, limit", [
    (SimpleNamespace(max_position_embeddings=64), 64),
    (SimpleNamespace(n_positions=32), 32),  # GPT-2-style names without transformers' attribute map
    (SimpleNamespace(n_ctx=48), 48),
    (SimpleNamespace(model_type="roberta", max_position_embeddings=514, pad_token_id=1), 512),
    (SimpleNamespace(model_type="llama"), None),
])
def test_token_limit_reads_every_name_of_the_position_table(config, limit):
    assert token_limit(config) == limit


def test_encodings_are_cut_at_the_limit_the_tokenizer_was_given():
    taught, untaught = SimpleNamespace(model_max_length=64), SimpleNamespace(model_max_length=int(1e30))
    assert within_limit(taught, 128) == 64 and within_limit(taught, 32) == 32 and within_limit(taught, None) is None
    assert within_limit(untaught, 128) == 128


def test_named_files(tmp_path):
    for name in ("a.csv", "b.csv", "c.json", "d.jsonl", "e.csv.gz", "notes.txt"):
        (tmp_path / name).write_text("x")
    assert named_files(f"{tmp_path}/*.csv") == [f"{tmp_path}/a.csv", f"{tmp_path}/b.csv"]
    assert named_files(f"{tmp_path}/c.json,{tmp_path}/d.jsonl") == [f"{tmp_path}/c.json", f"{tmp_path}/d.jsonl"]
    assert suffix("e.csv.gz") == ".csv" and named_files(f"{tmp_path}/a.csv,{tmp_path}/e.csv.gz")[1].endswith(".gz")
    assert named_files("stanfordnlp/imdb") == [] and named_files(str(tmp_path)) == []
    (tmp_path / "v1,v2").mkdir()  # a folder or a file whose name holds a comma is that one path
    (tmp_path / "x,y.csv").write_text("text,label\na,0\n")
    assert named_files(f"{tmp_path}/v1,v2") == [] and named_files(f"{tmp_path}/x,y.csv") == [f"{tmp_path}/x,y.csv"]
    with pytest.raises(AFTError, match=r"different formats \(.csv, .jsonl\): give files of one format"):
        named_files(f"{tmp_path}/a.csv,{tmp_path}/d.jsonl")
    with pytest.raises(AFTError, match=r"notes.txt.*\(.txt\)"):
        named_files(f"{tmp_path}/notes.txt")


@pytest.mark.parametrize("kind, options, fragment", [("proc", "rw", "the kernel's proc filesystem"),
                                                     ("sysfs", "rw", "the kernel's sysfs filesystem"),
                                                     ("ext4", "ro,relatime", "read-only filesystem")])
def test_check_creatable_reads_the_filesystem(kind, options, fragment, tmp_path, monkeypatch):
    mounts = tmp_path / "mounts"
    folder = tmp_path / "mount point"  # a space: written \040 in the mount table
    folder.mkdir()
    point = str(folder).replace(" ", "\\040")
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nnone {point} {kind} {options} 0 0\n")
    monkeypatch.setattr(filesystems, "MOUNTS", str(mounts))
    with pytest.raises(AFTError, match=fragment):
        check_creatable(str(folder / "out" / "run"))
    check_creatable(str(tmp_path / "elsewhere"))  # on the root's ext4, rw
    monkeypatch.setattr(filesystems, "MOUNTS", str(tmp_path / "no-mount-table"))
    check_creatable(str(folder / "out"))  # nothing known: nothing refused


def test_a_record_rewritten_and_failing_keeps_the_old_one_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """Run records (hf_aft_complete.json, options, checksums) are replaced whole or not at all."""
    record = tmp_path / "hf_aft_complete.json"
    filesystems.write_atomically(record, "old")
    filesystems.write_atomically(record, "new")
    assert record.read_text() == "new"

    def no_rename(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(filesystems.os, "replace", no_rename)
    with pytest.raises(OSError):
        filesystems.write_atomically(record, "half")
    assert record.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["hf_aft_complete.json"]


@pytest.mark.parametrize("name, content", [("empty.csv", ""), ("empty.jsonl", ""), ("blank.jsonl", "\n\n  \n"),
                                           ("empty.parquet", ""), ("header.csv", "text,label\n")])
def test_an_empty_data_file_is_named_in_one_line_wherever_it_is_given(name, content, tmp_path):
    """datasets says "An error occurred while generating the dataset" or a bare StopIteration for these."""
    from hf_aft.data import load_dataset_dict

    (tmp_path / name).write_text(content)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / f"train{suffix(name)}").write_text(content)
    for given in (str(tmp_path / name), f"{tmp_path}/*{suffix(name)}", str(tmp_path / "folder")):
        with pytest.raises(AFTError, match=r"the file '.*' (is empty|has a header and no rows): fill it, or leave"):
            load_dataset_dict(given)
    rows = "".join(f"a review of film {i},{i % 2}\n" for i in range(400))  # over the 4 KB the check reads: read
    (tmp_path / "big.csv").write_text("text,label\n" + rows)
    assert len(load_dataset_dict(str(tmp_path / "big.csv"))["train"]) == 400


@pytest.mark.parametrize("good, bad", [("text,label\nfine,1\n", 'text,label\n"an unclosed quote,1\n'),
                                       ('{"text": "fine", "label": 1}\n', '{"text": "cut off", "label": \n')])
def test_the_data_file_that_cannot_be_read_is_named_among_several(good, bad, tmp_path):
    """A folder's or a pattern's files are read together, and the reader's error named no file: the folder's name
    alone left a user to open every file."""
    from hf_aft.data import load_dataset_dict

    ext = ".csv" if good.startswith("text") else ".jsonl"
    for name, content in ((f"train{ext}", bad), (f"test{ext}", good), (f"validation{ext}", good)):
        (tmp_path / "data" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "data" / name).write_text(content)
    for given in (str(tmp_path / "data"), f"{tmp_path}/data/*{ext}"):
        with pytest.raises(AFTError, match=rf"could not load dataset .*: {tmp_path}/data/train{ext}: "):
            load_dataset_dict(given)


@pytest.mark.parametrize("as_dict", [False, True])
def test_an_empty_saved_dataset_is_named_in_one_line(as_dict, tmp_path):
    """datasets saves an empty dataset without a data file, then fails to load it with "list index out of range"."""
    import datasets

    from hf_aft.data import load_dataset_dict

    empty = datasets.Dataset.from_dict({"text": ["a film"]}).select([])
    saved = datasets.DatasetDict({"train": empty}) if as_dict else empty
    saved.save_to_disk(str(tmp_path / "pool"))
    with pytest.raises(AFTError, match=r"the dataset saved in '.*pool.*' has no rows: save it again with its rows"):
        load_dataset_dict(str(tmp_path / "pool"))


def test_an_eval_split_without_labels_is_named_with_the_labelled_splits(tmp_path):
    """`--eval_split unlabeled` on a features folder: the unlabelled rows cannot score the student."""
    import datasets

    from hf_aft.data import load_labelled_splits

    rows = {"text": ["a good film", "a dull film"], "label": [1, 0]}
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows),
                          "unlabeled": datasets.Dataset.from_dict({"text": ["another film"]})}
                         ).save_to_disk(str(tmp_path / "features"))
    with pytest.raises(AFTError, match=r"the split 'unlabeled' has no label column 'label' \(train, test have "
                                       r"it\): choose a labelled split with --eval_split\."):
        load_labelled_splits(str(tmp_path / "features"), eval_split="unlabeled")
    with pytest.raises(AFTError, match=r"the split 'unlabeled' has no label column 'label' \(train, test have "
                                       r"it\): choose a labelled split with --train_split\."):
        load_labelled_splits(str(tmp_path / "features"), train_split="unlabeled")


def test_image_files_given_as_data_files_point_to_their_folder(tmp_path):
    from PIL import Image

    from hf_aft.data import load_dataset_dict

    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    (tmp_path / "notes.xyz").write_text("x")
    with pytest.raises(AFTError, match=r"'.*a.png' is an image: give the folder that holds the images"):
        load_dataset_dict(f"{tmp_path / 'a.png'},{tmp_path / 'b.png'}")
    with pytest.raises(AFTError, match=r"is not a data file hf-aft reads \(.xyz\): .* a folder of them or of images"):
        load_dataset_dict(str(tmp_path / "notes.xyz"))


def test_an_image_dataset_read_as_text_names_its_image_column(tmp_path):
    import datasets
    from PIL import Image

    from hf_aft.data import load_labelled_splits

    for i, name in enumerate(["a", "b"]):
        Image.new("RGB", (4, 4), (i, 0, 0)).save(tmp_path / f"{name}.png")
    rows = {"image": [str(tmp_path / "a.png"), str(tmp_path / "b.png")], "label": [0, 1]}
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "data"))
    with pytest.raises(AFTError, match=r"column 'text' not found; .* Its images are in 'image': pass --image_column "
                                       "image."):
        load_labelled_splits(str(tmp_path / "data"))  # no --image_column: the text column is looked for

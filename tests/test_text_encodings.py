"""Texts that no model can read are refused in one line before any teacher runs: bytes that are not UTF-8 (labelled
or unlabelled), blank unlabelled texts, and a labelled share of batches so small that one epoch would not fit; a
student that cannot read the texts (all unknown tokens) is named."""

import json

import pytest
import tiny
from tiny import error_line

from hf_aft.commands import main
from hf_aft.errors import AFTError
from hf_aft.unlabeled import epoch_positions


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny.save_sentiment_files(tmp_path_factory.mktemp("texts"), "jsonl")


def latin1_copy(path, target):
    """`path` with its first text's first character replaced by a Latin-1 byte (not UTF-8)."""
    lines = path.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b'"text":"', b'"text":"caf\xe9 ', 1)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\n".join(lines))
    return target


def run(student_dir, teacher_dirs, dataset, out, *extra):
    return main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(dataset),
                 *(["--teachers", *map(str, teacher_dirs)] if teacher_dirs else []), "--output_dir", str(out),
                 "--max_steps", "1", "--report_to", "none",
                 "--use_cpu", "true", *extra])


def test_a_pool_that_is_not_utf8_is_named_with_its_row(student_dir, teacher_dirs, data, tmp_path, capsys):
    pool = latin1_copy(data / "pool.jsonl", tmp_path / "pool.jsonl")
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 2
    line = error_line(capsys)
    assert "column 'text' is not UTF-8 text at row 0" in line and "unlabelled" in line
    assert not (tmp_path / "out").exists()


def test_labelled_texts_that_are_not_utf8_are_named_with_their_row(student_dir, teacher_dirs, data, tmp_path,
                                                                   capsys):
    labelled = tmp_path / "labelled"
    latin1_copy(data / "labelled" / "train.jsonl", labelled / "train.jsonl")
    (labelled / "test.jsonl").write_bytes((data / "labelled" / "test.jsonl").read_bytes())
    assert run(student_dir, teacher_dirs, labelled, tmp_path / "out") == 2
    assert "split's column 'text' is not UTF-8 text at row 0" in error_line(capsys)


@pytest.mark.parametrize("blank", ["", "   ", "\\u200b", "\\u00ad\\u0301", "\\u0000"])  # JSON escapes
def test_a_blank_unlabelled_text_is_refused(student_dir, teacher_dirs, data, tmp_path, capsys, blank):
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "a fine film"}\n' + f'{{"text": "{blank}"}}\n')
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 2
    assert "row 1 has an empty text in 'text'" in error_line(capsys)


def test_blank_and_missing_unlabelled_texts_are_named_first_and_counted(student_dir, teacher_dirs, data, tmp_path,
                                                                        capsys):
    """A missing text (null) after blank ones was named first, counted alone: dropping it met a second refusal."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "a fine film"}\n{"text": ""}\n{"text": "   "}\n{"text": null}\n{"text": "dull"}\n')
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 2
    assert "row 1 has an empty text in 'text': drop those 3 rows" in error_line(capsys)


@pytest.mark.parametrize("labelled", [False, True])
def test_a_csv_text_that_pandas_reads_as_missing_says_so(student_dir, teacher_dirs, data, tmp_path, capsys, labelled):
    """"NA" or "None" in a CSV is read as a missing value by pandas (datasets' CSV reader): the refusal says why a
    row that holds words is called empty, and how to keep such texts."""
    texts = ["a fine film", "None", "dull", "NA"]
    if labelled:
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "train.csv").write_text("text,label\n" + "".join(f"{t},{i % 2}\n"
                                                                               for i, t in enumerate(texts * 4)))
        (tmp_path / "data" / "test.csv").write_text("text,label\ngood,1\nbad,0\n")
        assert run(student_dir, teacher_dirs, tmp_path / "data", tmp_path / "out") == 2
    else:
        (tmp_path / "pool.csv").write_text("text\n" + "".join(f"{t}\n" for t in texts))
        assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset",
                   str(tmp_path / "pool.csv")) == 2
    line = error_line(capsys)
    assert "row 1" in line and "NA, N/A, NULL, None or NaN is missing too" in line and "JSON lines or parquet" in line


def test_the_trainer_refuses_a_blank_unlabelled_text_too(student_dir, teacher_dirs, tmp_path):
    """The Python API checks its pool as the command does (it trained on the blank row)."""
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_aft import AFTConfig, AFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(str(student_dir))
    train_set = tiny.sentiment_dataset(16, seed=0).map(lambda b: tokenizer(b["text"]), batched=True)
    texts = tiny.sentiment_dataset(4, seed=2)["text"]
    for blank in ("\u200b ", None):  # None: a missing text was a TypeError
        pool = datasets.Dataset.from_dict({"text": [*texts[:2], blank, texts[3]], "input_ids": [[1, 2]] * 4})
        with pytest.raises(AFTError, match="row 2 has an empty text in 'text'"):
            AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(str(student_dir)),
                       args=AFTConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True,
                                      teachers=[str(teacher_dirs[0])]),
                       train_dataset=train_set, unlabeled_dataset=pool, processing_class=tokenizer)


def test_a_labelled_share_too_small_for_a_batch_is_refused_with_the_range(student_dir, teacher_dirs, data,
                                                                          tmp_path, capsys):
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset",
               str(data / "pool.jsonl"), "--labeled_fraction", "1e-9") == 2
    assert "--labeled_fraction 1e-09 leaves 8e-09 labelled rows in each batch of 8: give one from 0.125" in \
        error_line(capsys)
    with pytest.raises(AFTError, match="would make one epoch longer than 24,000 rows"):  # a batch of thousands
        epoch_positions(4, 20, 1e-9)


def test_the_epoch_stays_as_it_was_within_the_bound():
    assert epoch_positions(200, 300, 0.001) == (200, 199800)
    assert epoch_positions(16, 8, 0.5) == (16, 16)
    with pytest.raises(AFTError, match="give one from"):
        epoch_positions(200, 300, 1 - 1e-9)
    assert epoch_positions(200, 200, 0.9995) == (399800, 200)  # the ends of the range it gives train


@pytest.mark.parametrize("name, content", [
    ("latin1.csv", b"text\ncaf\xe9 good\nbad movie\n"),
    ("latin1.json", b'[{"text": "caf\xe9 good"}, {"text": "bad movie"}]'),  # an array, not JSON lines
])
def test_a_pool_file_datasets_cannot_decode_says_it_is_not_utf8(student_dir, teacher_dirs, data, tmp_path, capsys,
                                                                 name, content):
    pool = tmp_path / name
    pool.write_bytes(content)
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 2
    assert "a file is not UTF-8 text" in error_line(capsys)


def test_an_image_folder_as_the_pool_of_a_text_task_says_it_holds_images(student_dir, teacher_dirs, data, tmp_path,
                                                                         capsys):
    from PIL import Image

    for i in range(2):
        (tmp_path / "pool" / "cat").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (i * 90, 0, 0)).save(tmp_path / "pool" / "cat" / f"{i}.png")
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset",
               str(tmp_path / "pool")) == 2
    assert "(images in 'image')" in error_line(capsys)


def test_a_pool_column_of_records_or_word_lists_is_not_called_images(student_dir, teacher_dirs, data, tmp_path,
                                                                     capsys):
    """Only nested lists of numbers are pixels; records and lists of lists of words are not."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"review": f"film {i}", "title": "t", "entities": [{"name": "x", "start": i}],
                                        "tags": [["a", "b"], ["c"]]}) + "\n" for i in range(3)))
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 2
    line = error_line(capsys)
    assert "column 'text' not found" in line and "['review', 'title', 'entities', 'tags']" in line
    assert "images" not in line


def test_a_pool_whose_one_text_column_has_another_name_is_read_as_the_text(student_dir, teacher_dirs, data,
                                                                             tmp_path, capsys):
    """A pool cannot be given its own column: one text column named otherwise is the text, with a note."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"review": f"a film numbered {i}", "stars": i}) + "\n" for i in range(4)))
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 0
    assert "text column 'review' is read as 'text', the labelled data's" in capsys.readouterr().out


def test_a_json_escape_of_half_a_surrogate_pair_names_the_reader_error_and_the_way_out(
        student_dir, teacher_dirs, data, tmp_path, capsys):
    """datasets said only "An error occurred while generating the dataset"; the reader's error names the row."""
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "good \\ud800 film"}\n{"text": "fine"}\n')
    assert run(student_dir, teacher_dirs, data / "labelled", tmp_path / "out", "--unlabeled_dataset", str(pool)) == 2
    line = error_line(capsys)
    assert "The surrogate pair in string is invalid. in row 0" in line and "outside a surrogate pair" in line
    assert "An error occurred while generating" not in line


def test_the_trainer_names_a_pool_that_is_no_dataset(student_dir, tmp_path):
    """A DatasetDict was refused for a missing column ("the dataset has columns {'train': [...]}"), a list of dicts
    was an AttributeError."""
    import datasets
    from transformers import AutoModelForSequenceClassification

    from hf_aft import AFTConfig, AFTTrainer

    pool = tiny.sentiment_dataset(4, seed=2).remove_columns("label")
    for given, expected in ((datasets.DatasetDict({"train": pool}), r"not DatasetDict: give one split of it"),
                            (pool.to_list(), "not list: datasets.Dataset.from_list"),
                            (pool.to_dict(), "not dict: datasets.Dataset.from_dict"),
                            (pool.to_pandas(), "not DataFrame: datasets.Dataset.from_pandas")):
        with pytest.raises(AFTError, match=r"unlabeled_dataset must be a datasets.Dataset, " + expected):
            AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(str(student_dir)),
                       args=AFTConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True),
                       train_dataset=tiny.sentiment_dataset(8, seed=0), unlabeled_dataset=given)


def test_a_student_that_cannot_read_the_texts_is_named(student_dir, teacher_dirs, data, tmp_path, caplog):
    """Texts in an alphabet the student's vocabulary lacks tokenize to its unknown token: every text looks alike to
    the student, which trained (exit 0) on nothing. One warning names the share and the way out; texts it can read
    get none."""
    words = ["αβγ", "δεζ", "ηθι", "κλμ", "νξο", "πρσ"]
    folder = tmp_path / "greek"
    folder.mkdir()
    rows = [{"text": f"{words[i % 6]} {words[(i + 1) % 6]}", "label": i % 2} for i in range(16)]
    (folder / "train.jsonl").write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n")
    assert run(student_dir, (), folder, tmp_path / "out", "--transfer", "none") == 0
    assert any("the student's tokenizer reads 100% of the training texts' tokens as its unknown token" in message
               and "choose a student made for this text" in message for message in caplog.messages)
    caplog.clear()
    assert run(student_dir, (), data / "labelled", tmp_path / "out2", "--transfer", "none") == 0
    assert not any("unknown token" in message for message in caplog.messages)

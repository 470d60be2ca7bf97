"""Token classification (issue 27): labels aligned to word pieces, teachers' per-word features aligned word by word
whatever their tokenizers, the kernel's word subsample, entity F1, the one-line refusals, and the whole CLI run with
the saved student read back by transformers' pipeline."""

from __future__ import annotations

import json
import random
import re

import datasets
import numpy as np
import pytest
import torch
from test_hub import one_error_line
from tiny import WORDS, save_student, save_teacher

from hf_aft.collators import TeacherFeatureCollator
from hf_aft.commands import main
from hf_aft.data import load_labelled_splits
from hf_aft.errors import AFTError
from hf_aft.metrics import token_metrics
from hf_aft.targets import MULTI, TOKEN, infer_problem_type
from hf_aft.word_batches import MAX_KERNEL_WORDS, TokenCollator, subsample_words, word_pairs, word_transfer
from hf_aft.word_features import extract_word_features, word_means
from hf_aft.words import IGNORED, TokenLabels, align_labels, split_words, student_word_batch

TAGS = ["O", "B-POS", "I-POS", "B-NEG"]
PIECES = ["un", "##bel", "##iev"]  # "unbeliev" splits into three word pieces for the piece tokenizer


def piece_tokenizer():
    """A WordPiece tokenizer that knows the tiny words and the pieces of 'unbeliev' (3 sub-tokens)."""
    from transformers import BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *PIECES]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})


def char_tokenizer():
    """A WordPiece tokenizer of single letters: every word splits into one piece per letter (a teacher whose
    tokenizer splits differently from the student's)."""
    from transformers import BertTokenizerFast

    letters = sorted({c for w in WORDS + ["unbeliev"] for c in w})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *letters, *(f"##{c}" for c in letters)]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)})


def tagged_rows(n: int, seed: int) -> dict:
    """Sentences of 2-6 words; a positive word is B-POS (followed by 'very' as I-POS), a negative one B-NEG."""
    rng = random.Random(seed)
    tokens, tags = [], []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(2, 6))
        row = ["B-POS" if w in WORDS[:6] else "B-NEG" if w in WORDS[6:12] else "O" for w in words]
        tokens.append(words)
        tags.append(row)
    return {"tokens": tokens, "ner_tags": tags}


def class_label_split(n: int, seed: int) -> datasets.Dataset:
    rows = tagged_rows(n, seed)
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=TAGS))})
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    datasets.DatasetDict(train=class_label_split(48, 0), test=class_label_split(16, 1)).save_to_disk(root / "data")
    char_teacher = root / "char-teacher"
    torch.manual_seed(3)
    from transformers import BertConfig, BertModel

    tokenizer = char_tokenizer()
    BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=10, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=20, max_position_embeddings=64)).save_pretrained(char_teacher)
    tokenizer.save_pretrained(char_teacher)
    return {"root": root, "data": root / "data", "student": save_student(root / "student"),
            "teacher": save_teacher(root / "teacher"), "char_teacher": char_teacher}


def _train(world, out, *extra, data=None, teachers=True) -> int:
    return main(["train", "--model_name_or_path", str(world["student"]), "--dataset_name", str(data or world["data"]),
                 "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps", "12",
                 "--learning_rate", "1e-2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true",
                 "--label_column", "ner_tags",
                 *(["--teachers", str(world["teacher"]), str(world["char_teacher"])] if teachers else []), *extra])


def test_only_the_first_of_three_word_pieces_is_labelled():
    tokenizer = piece_tokenizer()
    batch = {"tokens": [["good", "unbeliev", "movie"]], "labels": [[1, 3, 0]]}
    out = student_word_batch(tokenizer, "tokens", None)(batch)
    pieces = tokenizer.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces == ["[CLS]", "good", "un", "##bel", "##iev", "movie", "[SEP]"]
    assert out["labels"][0] == [IGNORED, 1, 3, IGNORED, IGNORED, 0, IGNORED]
    assert out["word_positions"][0] == [-1, 0, 1, -1, -1, 2, -1]
    # the loss reads the labelled positions only: the same as cross-entropy over the three words' first pieces
    logits = torch.randn(1, 7, 4)
    labels = torch.tensor(out["labels"])
    loss = torch.nn.functional.cross_entropy(logits.view(-1, 4), labels.view(-1), ignore_index=IGNORED)
    expected = torch.nn.functional.cross_entropy(logits[0, [1, 2, 5]], torch.tensor([1, 3, 0]))
    assert loss.item() == pytest.approx(expected.item())


def test_tokenize_beside_features_reads_word_labels_from_the_column_named_or_refuses_to_drop_them():
    """A `ner_tags` column (the datasets convention) was silently read as no labels at all (-100 on every piece):
    the task loss saw no token, and a run with a pool trained to a NaN eval loss."""
    from hf_aft import tokenize_beside_features

    split = class_label_split(6, seed=0)
    with pytest.raises(AFTError, match=r"per-word label columns \['ner_tags'\] and none named 'labels'.*"
                                       "label_column='ner_tags'"):
        tokenize_beside_features(split, piece_tokenizer(), text_column="tokens", max_length=32)
    encoded = tokenize_beside_features(split, piece_tokenizer(), text_column="tokens", max_length=32,
                                       label_column="ner_tags")
    firsts = [[label for label in row if label != IGNORED] for row in encoded["labels"]]
    assert firsts == split["ner_tags"]  # one label per word, on its first piece
    unlabelled = tokenize_beside_features(split.remove_columns("ner_tags"), piece_tokenizer(), text_column="tokens")
    assert all(label == IGNORED for row in unlabelled["labels"] for label in row)
    names = datasets.Dataset.from_dict(tagged_rows(4, seed=1))  # tags as strings reached the loss as they were
    with pytest.raises(AFTError, match="per-word labels in 'ner_tags' hold Value\\('string'\\), not class ids"):
        tokenize_beside_features(names, piece_tokenizer(), text_column="tokens", label_column="ner_tags")


def test_align_labels_handles_truncation_and_repeated_words():
    assert align_labels([None, 0, 0, 1, None], [2, 1]) == ([IGNORED, 2, IGNORED, 1, IGNORED], [-1, 0, -1, 1, -1])
    assert align_labels([None, 0, 1], [2, 1, 3]) == ([IGNORED, 2, 1], [-1, 0, 1])  # word 2 cut by max_length


def test_teachers_with_different_tokenizers_give_the_same_words_in_the_same_order():
    words = [["good", "unbeliev", "movie"], ["the", "plot"]]
    piece, char = piece_tokenizer(), char_tokenizer()
    _, piece_ids = split_words(piece, words, None)
    _, char_ids = split_words(char, words, None)
    assert [len(x) for x in piece_ids] != [len(x) for x in char_ids]  # the tokenizers really split differently
    assert [sorted({w for w in ids if w is not None}) for ids in piece_ids] == [[0, 1, 2], [0, 1]]
    assert [sorted({w for w in ids if w is not None}) for ids in char_ids] == [[0, 1, 2], [0, 1]]
    # the mean of each word's sub-token states, in word order: states that are the word index give the index back
    encoded = char(words, is_split_into_words=True, padding=True, return_tensors="pt")
    states = torch.tensor([[[float(w) if w is not None else 99.0] for w in encoded.word_ids(i)]
                           + [[99.0]] * (encoded["input_ids"].shape[1] - len(encoded.word_ids(i))) for i in range(2)])
    pooled = word_means(states, char_ids, [3, 2])
    assert [p[:, 0].tolist() for p in pooled] == [[0.0, 1.0, 2.0], [0.0, 1.0]]


def test_word_features_of_two_teachers_align_and_a_truncated_word_is_nan(world):
    data = datasets.Dataset.from_dict({"tokens": [["good", "unbeliev", "movie"], ["the", "plot", "is", "bad"]]})
    with_features = extract_word_features(data, [str(world["teacher"]), str(world["char_teacher"])], "tokens",
                                          max_length=6, cache_dir=world["root"] / "cache")
    rows = [np.asarray(r, dtype=np.float32) for r in with_features["teacher_features"]]
    assert [r.shape for r in rows] == [(3, 22), (4, 22)]
    # 6 tokens: the char teacher (one piece per letter) sees 'good' and only 'the' + 'plot' of row 2 cut short
    assert np.isfinite(rows[0][0]).all() and np.isnan(rows[0][2, 12:]).all() and np.isfinite(rows[0][2, :12]).all()
    again = extract_word_features(data, [str(world["teacher"]), str(world["char_teacher"])], "tokens", max_length=6,
                                  cache_dir=world["root"] / "cache")
    assert json.loads(again.info.description)["hf_aft_from_cache"] == [True, True]  # cached per teacher
    assert json.loads(again.info.description)["hf_aft_teachers"][0]["pooling"] == "word-mean"
    half = extract_word_features(data, [str(world["teacher"]), str(world["char_teacher"])], "tokens", max_length=6,
                                 cache_dir=world["root"] / "cache", feature_dtype="float16")
    assert half.features["teacher_features"].feature.feature.dtype == "float16"
    assert json.loads(half.info.description)["hf_aft_from_cache"] == [True, True]  # float32 per teacher, reused
    np.testing.assert_allclose(np.asarray(half[0]["teacher_features"], np.float32), rows[0], rtol=1e-3, atol=1e-3)


def test_word_pairs_keep_the_words_both_sides_saw():
    student = torch.arange(2 * 5 * 1, dtype=torch.float32).reshape(2, 5, 1)
    positions = torch.tensor([[-1, 0, -1, 1, -1], [-1, 0, 1, -1, -1]])  # row 0 word 2 cut by the student
    teacher = torch.tensor([[[10.0], [11.0], [12.0]], [[20.0], [float("nan")], [float("nan")]]])  # row 1 word 1 unseen
    s, t = word_pairs(student, positions, teacher)
    assert s[:, 0].tolist() == [1.0, 3.0, 6.0] and t[:, 0].tolist() == [10.0, 11.0, 20.0]


def test_the_kernel_subsample_takes_the_same_words_for_student_and_teacher():
    student = torch.arange(1000, dtype=torch.float32)[:, None].repeat(1, 3)
    teacher = torch.arange(1000, dtype=torch.float32)[:, None] * 2
    s, t = subsample_words(student, teacher, seed=0, step=5, max_words=64)
    assert s.shape == (64, 3) and torch.equal(s[:, 0] * 2, t[:, 0])  # pair by pair
    s2, _ = subsample_words(student, teacher, seed=0, step=5, max_words=64)
    assert torch.equal(s, s2)  # every process draws the same words at a step
    s3, _ = subsample_words(student, teacher, seed=0, step=6, max_words=64)
    assert not torch.equal(s, s3)
    assert subsample_words(student[:10], teacher[:10], 0, 0, 64)[0].shape[0] == 10


def test_word_transfer_bounds_the_kernel_and_gives_zero_without_two_words():
    from hf_aft.losses import AdaptiveKernelLoss

    seen = []
    record = lambda s, t: seen.append((s.shape[0], t.shape[0])) or s.sum() * 0  # noqa: E731
    word_transfer(record, torch.randn(600, 4), torch.randn(600, 3), True, 0, 0)
    word_transfer(record, torch.randn(600, 4), torch.randn(600, 3), False, 0, 0)  # KD: every word
    assert seen == [(MAX_KERNEL_WORDS, MAX_KERNEL_WORDS), (600, 600)]
    student = torch.randn(1, 4, requires_grad=True)
    value = word_transfer(AdaptiveKernelLoss([3]), student, torch.randn(1, 3), True, 0, 0)
    value.backward()
    assert value.item() == 0 and student.grad is not None
    assert word_transfer(AdaptiveKernelLoss([3]), torch.randn(0, 4), torch.randn(0, 3), True, 0, 0).item() == 0


def test_collator_pads_labels_positions_and_word_features():
    tokenizer = piece_tokenizer()
    rows = student_word_batch(tokenizer, "tokens", None)({"tokens": [["good"], ["the", "unbeliev"]],
                                                          "labels": [[1], [0, 3]]})
    examples = [{k: rows[k][i] for k in rows} for i in range(2)]
    examples[0]["teacher_features"], examples[1]["teacher_features"] = [[1.0, 2.0]], [[3.0, 4.0], [5.0, 6.0]]
    batch = TeacherFeatureCollator(TokenCollator(tokenizer))(examples)
    assert batch["labels"].tolist()[0] == [IGNORED, 1, IGNORED, IGNORED, IGNORED, IGNORED]
    assert batch["word_positions"].tolist()[0] == [-1, 0, -1, -1, -1, -1]
    assert batch["word_positions"].tolist()[1] == [-1, 0, 1, -1, -1, -1]
    features = batch["teacher_features"]
    assert features.shape == (2, 2, 2) and torch.isnan(features[0, 1]).all() and features[1, 1].tolist() == [5, 6]


def test_token_problem_type_is_inferred_and_overridable():
    data = class_label_split(4, 0)
    assert infer_problem_type(data, "ner_tags", words_column="tokens") == TOKEN
    assert infer_problem_type(data, "ner_tags", MULTI, words_column="tokens") == MULTI
    assert infer_problem_type(data, "ner_tags") == MULTI  # no words column: a set of classes per row
    with pytest.raises(AFTError, match="token_classification does not fit"):
        infer_problem_type(data, "ner_tags", TOKEN)


def test_entity_f1_matches_a_hand_computation():
    names = ["O", "B-PER", "I-PER", "B-LOC"]
    # reference: PER(1-2), LOC(4); prediction: PER(1) only one token (wrong span), LOC(4) right -> 1 of 2 right
    refs = np.array([[0, 1, 2, 0, 3, -100]])
    preds = np.array([[0, 1, 0, 0, 3, 2]])
    result = token_metrics(preds, refs, names)
    assert result["precision"] == pytest.approx(0.5) and result["recall"] == pytest.approx(0.5)
    assert result["f1"] == pytest.approx(0.5) and result["accuracy"] == pytest.approx(4 / 5)


def _fail_if_a_teacher_loads(monkeypatch):
    from hf_aft.teachers.text import TextTeacher

    def boom(self):
        raise AssertionError("a teacher loaded")

    monkeypatch.setattr(TextTeacher, "load", boom)


@pytest.mark.parametrize("rows, expected", [
    ({"tokens": [["good", "movie"], ["bad"]], "ner_tags": [["B-POS", "O", "O"], ["B-NEG"]]},
     r"train split's row 0 has 3 labels in 'ner_tags' for 2 words"),
    ({"tokens": [["good", "movie"], ["bad"]], "ner_tags": [["B-POS", "O"], []]},
     r"train split's row 1 has 0 labels in 'ner_tags' for 1 words"),
    ({"tokens": [["good", "movie"], []], "ner_tags": [["B-POS", "O"], []]},
     r"train split's row 1 has no words in 'tokens'"),
    ({"tokens": [["good", "movie"], ["bad", " ", "plot"]], "ner_tags": [["B-POS", "O"], ["B-NEG", "O", "O"]]},
     r"train split's row 1 has an empty word \(word 1\) in 'tokens'.*drop such words \(and their tags\)"),
])
def test_bad_token_rows_are_one_line_before_any_teacher(world, tmp_path, monkeypatch, capsys, rows, expected):
    datasets.DatasetDict(train=datasets.Dataset.from_dict(rows)).save_to_disk(tmp_path / "bad")
    _fail_if_a_teacher_loads(monkeypatch)
    assert _train(world, tmp_path / "out", data=tmp_path / "bad") == 2
    line = one_error_line(capsys)
    assert re.search(expected, line), line


@pytest.mark.parametrize("form", ["strings", "ids", "ClassLabel"])
def test_an_eval_class_the_training_split_lacks_is_one_line(world, tmp_path, monkeypatch, capsys, form):
    """B-NEG is in no training row: refused as single-label refuses an unseen class, whatever the tags are written
    as. A Sequence(ClassLabel) naming B-NEG (a dataset's whole tag set) trained and scored it as a class of its
    own."""
    train = {"tokens": [["good", "movie"], ["bad"]], "ner_tags": [["B-POS", "O"], ["O"]]}
    test = {"tokens": [["awful", "plot"]], "ner_tags": [["B-NEG", "O"]]}
    features = None
    if form != "strings":
        for rows in (train, test):
            rows["ner_tags"] = [[TAGS.index(tag) for tag in tags] for tags in rows["ner_tags"]]
        tag = datasets.ClassLabel(names=TAGS) if form == "ClassLabel" else datasets.Value("int64")
        features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                      "ner_tags": datasets.Sequence(tag)})
    datasets.DatasetDict(train=datasets.Dataset.from_dict(train, features=features),
                         test=datasets.Dataset.from_dict(test, features=features)).save_to_disk(tmp_path / "bad")
    _fail_if_a_teacher_loads(monkeypatch)
    assert _train(world, tmp_path / "out", data=tmp_path / "bad") == 2
    unseen, seen = ("'3'", "'0', '1'") if form == "ids" else ("'B-NEG'", "'O', 'B-POS'" if form == "ClassLabel"
                                                               else "'B-POS', 'O'")
    one_error_line(capsys, f"the eval split 'test' has labels [{unseen}] that the training split lacks (it has "
                           f"[{seen}]): the student cannot predict them; drop those rows or choose another "
                           "--eval_split.")


def test_a_tag_name_no_training_row_has_is_said_and_scored_by_no_metric(tmp_path, caplog):
    data = tmp_path / "data"
    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=TAGS + ["B-MISC"]))})
    rows = {"tokens": [["good", "movie"], ["bad"]], "ner_tags": [[1, 0], [3]]}
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict(train=split, test=split).save_to_disk(data)
    labels = load_labelled_splits(str(data), input_column="tokens", label_column="ner_tags").labels
    assert labels.names == TAGS + ["B-MISC"] and labels.trained == {0, 1, 3}  # the ids stay the data's
    assert "no training row has the class(es) ['I-POS', 'B-MISC'] of the label column 'ner_tags'" in caplog.text
    assert labels.encode(split)["labels"] == [[1, 0], [3]]


def test_options_not_yet_for_token_classification_are_refused(world, tmp_path, monkeypatch, capsys):
    _fail_if_a_teacher_loads(monkeypatch)
    assert _train(world, tmp_path / "out3", "--group_column", "tokens") == 2
    assert "--group_column" in one_error_line(capsys, "token_classification")


def test_rank_teachers_scores_per_word_features_in_entity_f1(world, tmp_path, capsys):
    output = tmp_path / "ranking.json"
    assert main(["rank-teachers", "--teachers", str(world["teacher"]), str(world["char_teacher"]),
                 "--model_name_or_path", str(world["student"]), "--dataset_name", str(world["data"]),
                 "--label_column", "ner_tags", "--output_file", str(output), "--folds", "3"]) == 0
    ranking = json.loads(output.read_text())
    assert ranking["problem_type"] == TOKEN and len(ranking["rows"]) == 3
    assert all(r["probe_metric"] == "f1" and 0 <= r["probe_score"] <= 1 and np.isfinite(r["logme"])
               for r in ranking["rows"])
    assert {r["width"] for r in ranking["rows"] if r["role"] == "teacher"} == {10, 12}  # the two teachers' widths
    assert "probe entity F1 ± sd (3 folds)" in capsys.readouterr().out
    assert main(["rank-teachers", "--teachers", str(world["teacher"]), "--dataset_name", str(world["data"]),
                 "--label_column", "ner_tags", "--output_file", str(tmp_path / "r2.json"), "--folds", "99"]) == 2
    assert "at least 99 sentences" in one_error_line(capsys)


def test_a_slow_student_tokenizer_is_refused_before_any_teacher(world, tmp_path, monkeypatch, capsys):
    """transformers 5 loads nearly every tokenizer as a fast one; a Python-only one (is_fast False) has no
    word_ids()."""
    import types

    import transformers

    class Slow(types.SimpleNamespace):
        is_fast = False

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", classmethod(lambda cls, *a, **k: Slow()))
    _fail_if_a_teacher_loads(monkeypatch)
    assert _train(world, tmp_path / "out") == 2
    assert "the student" in one_error_line(capsys, "is not a fast tokenizer", "word_ids()")


@pytest.fixture(scope="module")
def trained(world):
    out = world["root"] / "trained"
    assert _train(world, out, "--beta", "1") == 0
    return out


def test_train_cli_end_to_end_and_the_pipeline_reads_the_student(trained):
    out = trained
    results = json.loads((out / "eval_results.json").read_text())
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy"} <= set(results)
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert [t["pooling"] for t in summary["teachers"]] == ["word-mean", "word-mean"]
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    model = AutoModelForTokenClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == dict(enumerate(TAGS))
    tagger = pipeline("token-classification", model=str(out), device="cpu")
    text = "good movie the bad plot"
    found = tagger(text, ignore_labels=[])  # every token, "O" included: nothing is compared vacuously
    with torch.no_grad():
        encoded = tokenizer(text, return_tensors="pt")
        ids = model(**encoded).logits[0].argmax(-1).tolist()
    expected = [(model.config.id2label[i], t) for i, t in zip(ids, tokenizer.convert_ids_to_tokens(
        encoded["input_ids"][0]), strict=True) if t not in ("[CLS]", "[SEP]")]
    assert [(f["entity"], f["word"]) for f in found] == expected and len(expected) == 5
    cost = json.loads((out / "cost_report.json").read_text())
    assert cost["metric"] == "f1" and all(0 <= t["probe_score"] <= 1 for t in cost["teachers"])
    assert "f1" in (out / "README.md").read_text()


def test_eval_words_past_max_length_are_said_not_to_be_scored(world, tmp_path, caplog):
    """A cut word has no token, so no prediction: the entity scores covered the words read, silently (a recall nearly
    doubled where a third of the sentences ran past --max_length)."""
    assert _train(world, tmp_path / "cut", "--transfer", "none", "--max_steps", "1", "--skip_cost_report", "true",
                  "--max_length", "6", teachers=False) == 0
    assert "words of" in caplog.text and "lie past the student's --max_length: they are not scored" in caplog.text
    caplog.clear()
    assert _train(world, tmp_path / "whole", "--transfer", "none", "--max_steps", "1", "--skip_cost_report",
                  "true", teachers=False) == 0
    assert "lie past the student's --max_length" not in caplog.text


def test_kd_and_rkd_run_on_words(world, tmp_path):
    for transfer in ("kd", "rkd"):
        assert _train(world, tmp_path / transfer, "--transfer", transfer, "--max_steps", "3", "--skip_cost_report",
                      "true") == 0
        assert json.loads((tmp_path / transfer / "transfer_summary.json").read_text())["transfer"] == transfer
        logged = json.loads((tmp_path / transfer / "trainer_state.json").read_text())["log_history"]
        assert all(np.isfinite(h["transfer_loss"]) and h["transfer_loss"] > 0 for h in logged if "transfer_loss" in h)
        assert any("transfer_loss" in h for h in logged)


def test_label_lists_of_strings_train_like_class_labels():
    rows = tagged_rows(6, 2)
    data = datasets.Dataset.from_dict(rows)
    labels = TokenLabels.from_dataset(data, "ner_tags", "tokens")
    assert set(labels.names) <= set(TAGS) and labels.problem_type == TOKEN
    encoded = labels.encode(data)
    assert [len(x) for x in encoded["labels"]] == [len(x) for x in rows["tokens"]]


def test_load_labelled_splits_finds_the_tokens_column(world):
    splits = load_labelled_splits(str(world["data"]), label_column="ner_tags")
    assert splits.labels.problem_type == TOKEN and splits.labels.words_column == "tokens"


def test_export_checks_per_token_logits_and_check_updates_compares_per_word(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from hf_aft.export import export_student
    from hf_aft.updates import compare_students

    report = export_student(str(trained), str(tmp_path / "export"))
    assert report["task"] == "token-classification"
    onnx = next(r for r in report["rows"] if r["model"] == "onnx")
    assert onnx["agreement"] == 1.0 and onnx["max_logit_difference"] < 1e-4
    import onnxruntime
    from transformers import AutoTokenizer

    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "export")
    inputs = tokenizer([["good", "movie"], ["the", "bad", "plot", "is", "dull"]], is_split_into_words=True,
                       padding=True, return_tensors="np")
    logits = session.run(["logits"], {i.name: inputs[i.name] for i in session.get_inputs()})[0]
    assert logits.shape == (2, 7, len(TAGS))  # one row of logits per token
    assert report["problem_type"] == TOKEN and report["metric"] == "f1" and "f1" in onnx
    comparison = compare_students(str(trained), str(trained))
    assert comparison["agreement"] == 1.0 and comparison["old"] == comparison["new"]
    # The task's own metrics (entity F1, as training reports it), not single-label accuracy over the words
    assert comparison["problem_type"] == TOKEN and comparison["metrics"] == ["f1", "precision", "recall", "accuracy"]
    trained_f1 = json.loads((trained / "eval_results.json").read_text())["eval_f1"]
    assert comparison["new"]["f1"] == pytest.approx(trained_f1) and comparison["agreement_of"] == "words"
    assert main(["audit", str(trained)]) == 0
    assert "f1" in capsys.readouterr().out


def test_sentence_entity_f1_and_the_constant_tagger():
    from hf_aft.beta_choice import constant_scores, example_scores

    labels = torch.tensor([[IGNORED, 1, 2, IGNORED, 0, IGNORED],   # one POS entity over two words
                           [IGNORED, 0, 3, IGNORED, IGNORED, IGNORED],   # one NEG entity
                           [IGNORED, 0, 0, IGNORED, IGNORED, IGNORED]])  # none
    logits = torch.zeros(3, 6, len(TAGS))
    guesses = [[0, 1, 0, 0, 0, 0], [0, 0, 3, 0, 0, 0], [0, 0, 3, 0, 0, 0]]  # POS cut short, NEG right, a spurious NEG
    logits.scatter_(2, torch.tensor(guesses).unsqueeze(-1), 1.0)
    assert example_scores(logits, labels, TOKEN, names=TAGS).tolist() == [0.0, 1.0, 0.0]
    assert constant_scores(labels, TOKEN, names=TAGS).tolist() == [0.0, 0.0, 1.0]  # all "O": right where none is


def test_beta_auto_chooses_by_sentence_entity_f1(world, tmp_path, capsys):
    datasets.DatasetDict(train=class_label_split(160, 4), test=class_label_split(16, 1)).save_to_disk(tmp_path / "d")
    assert _train(world, tmp_path / "out", "--beta", "auto", "--skip_cost_report", "true", data=tmp_path / "d") == 0
    search = json.loads((tmp_path / "out" / "beta_search.json").read_text())
    scored = [c for c in search["candidates"] if c.get("score") is not None]
    assert scored and all(0 <= c["score"] <= 1 for c in scored)
    assert "sentence entity F1" in capsys.readouterr().out
    assert "ForTokenClassification" in json.loads((tmp_path / "out" / "config.json").read_text())["architectures"][0]


def test_word_labels_are_read_at_each_words_first_piece():
    from hf_aft.word_distillation import word_labels
    from hf_aft.words import WORD_POSITIONS

    rows = datasets.Dataset.from_dict({  # row 0: word 1 splits in two pieces; row 1: its third word was cut
        "labels": [[-100, 2, 1, -100, 3, -100], [-100, 0, 1, -100]],
        WORD_POSITIONS: [[-1, 0, 1, -1, 2, -1], [-1, 0, 1, -1]]})
    assert word_labels(rows, np.array([3, 3])).tolist() == [2, 1, 3, 0, 1, IGNORED]


def test_distillation_compares_each_words_first_piece_with_its_target():
    from hf_aft.training_rows import distill_term

    logits = torch.randn(1, 4, 3)  # [CLS] w0 w0-piece w1
    positions = torch.tensor([[-1, 0, -1, 1]])
    targets = torch.tensor([[[0.0, 1.0, 2.0], [float("nan")] * 3]])  # w1 has no target (cut, or unseen)
    expected = torch.nn.functional.kl_div(torch.log_softmax(logits[0, 1:2], 1), torch.log_softmax(targets[0, :1], 1),
                                          reduction="batchmean", log_target=True)
    assert distill_term(logits, targets, positions, 1.0, TOKEN).item() == pytest.approx(expected.item(), rel=1e-5)


def test_probe_distillation_trains_a_token_classifier_word_by_word(world, tmp_path):
    out = tmp_path / "distilled"
    assert _train(world, out, "--distill", "probe", "--max_steps", "6", "--skip_cost_report", "true") == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["distill"] == "probe" and 0 <= summary["probe_accuracy"] <= 1
    logged = json.loads((out / "trainer_state.json").read_text())["log_history"]
    distill = [h["distill_loss"] for h in logged if "distill_loss" in h]
    assert distill and all(np.isfinite(d) and d > 0 for d in distill)
    assert "the probe's cross-validated accuracy on the training labels" in (out / "README.md").read_text()


def _pool(path, rows: int, seed: int, extra=None):
    sentences = [words + [f"pool{i}"] for i, words in enumerate(tagged_rows(rows, seed)["tokens"])]  # unseen ones
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"tokens": (extra or []) + sentences})).save_to_disk(path)
    return str(path)


def test_unlabelled_sentences_train_a_token_classifier(world, tmp_path):
    out = tmp_path / "pool-run"
    assert _train(world, out, "--unlabeled_dataset", _pool(tmp_path / "pool", 24, 7), "--max_steps", "6",
                  "--skip_cost_report", "true") == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["distill"] == "probe" and summary["unlabeled_rows"] == 24 and summary["labeled_rows"] == 48
    logged = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert all(np.isfinite(h["distill_loss"]) and np.isfinite(h["task_loss"]) for h in logged if "distill_loss" in h)


def test_a_pool_of_another_kind_or_sharing_an_eval_sentence_is_one_line(world, tmp_path, monkeypatch, capsys):
    _fail_if_a_teacher_loads(monkeypatch)
    text = tmp_path / "text-pool"
    datasets.DatasetDict(train=datasets.Dataset.from_dict({"tokens": ["a whole sentence"]})).save_to_disk(text)
    assert _train(world, tmp_path / "out1", "--unlabeled_dataset", str(text)) == 2
    assert "holds text but the labelled data's holds words" in one_error_line(capsys)
    evaluated = datasets.load_from_disk(str(world["data"]))["test"]["tokens"][3]
    assert _train(world, tmp_path / "out2", "--unlabeled_dataset", _pool(tmp_path / "leak", 4, 8, [evaluated])) == 2
    line = one_error_line(capsys)
    assert "1 row of the unlabelled" in line and "(first at row 0)" in line and "leakage" in line


def test_a_pool_sentence_with_an_empty_word_is_refused():
    from hf_aft.unlabeled_data import check_unlabeled

    pool = datasets.Dataset.from_dict({"tokens": [["good", "movie"], ["bad", "", "plot"]]})
    with pytest.raises(AFTError, match=r"the pool split's row 1 has an empty word \(word 1\) in 'tokens'"):
        check_unlabeled(pool, "tokens", "pool")
    check_unlabeled(pool.select([0]), "tokens", "pool")  # words all there: accepted

"""Degenerate batches of text teachers (issue 23): a length sort gathers empty texts, single tokens or texts cut at
the maximum length into batches of their own. Each must give every text the features it has alone: finite, of the
teacher's width, whatever batch it lands in, for each family (BERT, RoBERTa with its position offset, GPT-2 and
LLaMA decoders whose tokenizers add no token, so that "" is zero tokens)."""

import functools
import json

import datasets
import numpy as np
import pytest
import tiny
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    AutoModel,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    RobertaConfig,
    RobertaTokenizerFast,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode

from hf_aft import AFTError, tokenize_beside_features
from hf_aft.commands import main
from hf_aft.teachers import TextTeacher
from hf_aft.tokens import encode, encode_padded, pad_rows

LIMIT, HIDDEN = 16, 16  # every tiny model takes 16 tokens (RoBERTa's table holds 18: its offset of 2)
FAMILIES = ("bert", "roberta", "gpt2", "llama")


def words(n: int) -> str:
    return " ".join((tiny.WORDS * (n // len(tiny.WORDS) + 1))[:n])


def roberta_tokenizer():
    """Byte-level BPE with no merges, `<s> ... </s>` around each text, and no model_max_length (as is common)."""
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", *bytes_to_unicode().values()]
    return RobertaTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, merges=[])


def family(kind: str, folder):
    """A tiny random model of `kind` (1 layer, width 16) and its tokenizer."""
    common = {"num_attention_heads": 2, "intermediate_size": 32, "num_hidden_layers": 1, "hidden_size": HIDDEN}
    if kind == "bert":
        return BertConfig(vocab_size=len(tiny.WORDS) + 5, max_position_embeddings=LIMIT, **common), \
            tiny.make_tokenizer(folder)
    if kind == "roberta":
        return RobertaConfig(vocab_size=261, max_position_embeddings=LIMIT + 2, pad_token_id=1, **common), \
            roberta_tokenizer()
    if kind == "gpt2":
        return GPT2Config(vocab_size=len(tiny.WORDS) + 2, n_embd=HIDDEN, n_layer=1, n_head=2, n_positions=LIMIT,
                          bos_token_id=1, eos_token_id=1), tiny.word_tokenizer()
    return LlamaConfig(vocab_size=len(tiny.WORDS) + 2, num_key_value_heads=1, max_position_embeddings=LIMIT,
                       bos_token_id=1, eos_token_id=1, **common), tiny.word_tokenizer()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    out = {}
    for kind in FAMILIES:
        config, tokenizer = family(kind, root / kind)
        torch.manual_seed(0)
        AutoModel.from_config(config).save_pretrained(root / kind)
        tokenizer.save_pretrained(root / kind)
        out[kind] = root / kind
    return out


def batches() -> dict[str, list[str]]:
    """What a length sort can make: all empty ("" and whitespace are zero tokens for word tokenizers), single
    tokens, all cut to the maximum length (at it and beyond it, special tokens included), and a mix."""
    return {"empty": ["", " ", "", "  "], "single": ["a", "good", "film"],
            "max": [words(LIMIT - 2), words(LIMIT), words(LIMIT + 1), words(5 * LIMIT)],
            "mixed": ["", "a", words(5 * LIMIT), " ", "good film", "a"]}


@pytest.mark.parametrize("pooling", ["mean", "last"])
@pytest.mark.parametrize("kind", FAMILIES)
def test_each_text_gets_its_own_features_whatever_batch_it_lands_in(folders, kind, pooling):
    teacher = TextTeacher(kind, str(folders[kind]), "local", pooling, 256, 1, torch.device("cpu"))
    alone = {text: teacher([text])[0] for texts in batches().values() for text in texts}
    assert teacher.max_length == LIMIT  # 256 cut to what the position table takes (RoBERTa: 18 - 2)
    for name, texts in batches().items():
        for batch_size in (2, 8):  # batches of one kind, then all together
            teacher.batch_size = batch_size
            got = teacher(texts)
            assert got.shape == (len(texts), HIDDEN) and np.isfinite(got).all(), (name, batch_size)
            np.testing.assert_allclose(got, np.stack([alone[t] for t in texts]), atol=1e-5, err_msg=name)


@functools.cache
def teacher_tokenizer(kind: str, folder: str):
    """The tokenizer as a teacher sets it up (a pad token for decoders)."""
    teacher = TextTeacher(kind, folder, "local", "mean", 256, 1, torch.device("cpu"))
    teacher.load()
    return teacher.tokenizer


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(0, 3 * LIMIT), min_size=1, max_size=9), side=st.sampled_from(["right", "left"]))
def test_the_teachers_padding_is_exactly_the_tokenizers(folders, lengths, side):
    """A teacher pads its length-sorted batches itself (numpy, `pad_rows`): the tensors `tokenizer.pad` makes."""
    for kind in FAMILIES:
        tokenizer = teacher_tokenizer(kind, str(folders[kind]))
        tokenizer.padding_side = side
        encoded = encode(tokenizer, [words(n) for n in lengths], LIMIT)
        ours = pad_rows(tokenizer, encoded["input_ids"], encoded["attention_mask"])
        theirs = tokenizer.pad({k: encoded[k] for k in ("input_ids", "attention_mask")}, return_tensors="pt")
        for key in ("input_ids", "attention_mask"):
            assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), (kind, side, key)


def test_an_empty_text_is_its_tokenizers_eos_token(folders):
    """GPT-2's empty document is `<|endoftext|>`: "" gets the features of the eos token as a text (equal up to float
    rounding: a batch of two and a batch of one may sum in another order)."""
    teacher = TextTeacher("gpt2", str(folders["gpt2"]), "local", "last", 256, 4, torch.device("cpu"))
    np.testing.assert_allclose(teacher(["", "<eos>"])[0], teacher(["<eos>"])[0], rtol=1e-5, atol=1e-6)


def test_a_max_length_with_no_room_for_text_is_refused(folders):
    """BERT adds [CLS] and [SEP]: at 2 every text would be only those, below 2 its tokenizer would not cut at all."""
    for max_length in (1, 2):
        teacher = TextTeacher("bert", str(folders["bert"]), "local", "mean", max_length, 4, torch.device("cpu"))
        with pytest.raises(AFTError, match="--teacher_max_length must be at least 3"):
            teacher(["good film"])
    teacher = TextTeacher("bert", str(folders["bert"]), "local", "mean", 3, 4, torch.device("cpu"))
    assert teacher(["", words(40)]).shape == (2, HIDDEN)


def test_a_decoder_student_takes_a_batch_of_empty_texts(folders):
    """The student's inputs (training, evaluation, export, cost) get the same one token: a GPT-2 classifier does
    not crash on them."""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(folders["gpt2"], num_labels=2).eval()
    tokenizer = tiny.word_tokenizer()
    tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    with torch.inference_mode():
        empties = model(**encode_padded(tokenizer, ["", " "], 8)).logits
        mixed = model(**encode_padded(tokenizer, ["good film", ""], 8)).logits
    assert torch.isfinite(empties).all()
    torch.testing.assert_close(empties[0], mixed[1])
    rows = tokenize_beside_features(datasets.Dataset.from_dict({"text": ["", " ", "good"]}), tokenizer)
    assert rows["input_ids"] == [[tokenizer.eos_token_id]] * 2 + [tokenizer(["good"])["input_ids"][0]]
    with pytest.raises(AFTError, match="--max_length must be at least 3"):
        tokenize_beside_features(datasets.Dataset.from_dict({"text": ["good"]}), tiny.make_tokenizer(folders["bert"]),
                                 max_length=2)


def test_features_and_ranking_of_data_with_empty_texts_with_a_gpt2_teacher(folders, tmp_path):
    texts = ["", "good film", "", "bad movie", " ", "great fun", "", "awful plot"] * 2
    data = tmp_path / "data"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": texts, "label": [i % 2 for i in range(len(texts))]})}).save_to_disk(data)
    gpt2 = str(folders["gpt2"])
    assert main(["features", "--teachers", gpt2, "--dataset_name", str(data), "--output_dir", str(tmp_path / "f"),
                 "--teacher_batch_size", "2"]) == 0
    features = np.asarray(datasets.load_from_disk(str(tmp_path / "f"))["train"]["teacher_features"])
    assert features.shape == (len(texts), HIDDEN) and np.isfinite(features).all()
    empty = [i for i, text in enumerate(texts) if not text.strip()]
    np.testing.assert_allclose(features[empty], np.repeat(features[empty[:1]], len(empty), 0), atol=1e-6)
    assert main(["rank-teachers", "--teachers", gpt2, "--model_name_or_path", gpt2, "--dataset_name", str(data),
                 "--folds", "2", "--output_dir", str(tmp_path / "rank")]) == 0  # the student extracted likewise
    rows = json.loads((tmp_path / "rank" / "teacher_ranking.json").read_text())["rows"]
    assert sorted(row["role"] for row in rows) == ["student", "teacher"]
    assert all(np.isfinite([row["logme"], row["probe_accuracy"]]).all() for row in rows)

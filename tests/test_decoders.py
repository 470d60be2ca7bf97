"""Decoder LLM teachers (GPT-2, LLaMA, GGUF files): last-token and mean pooling over real tokens only, whichever
padding side their tokenizer was saved with; GGUF specs and their file-hash revision; dtype / device-map options."""

import shutil
from unittest import mock

import numpy as np
import pytest
import tiny
import torch
from transformers import AutoModel, AutoTokenizer

from hf_aft import AFTConfig, AFTError, extract_teacher_features, read_teacher_infos
from hf_aft.teachers import TextTeacher as _Teacher
from hf_aft.teachers import load_options


def one_by_one(folder, texts, pooling, **kwargs):
    """Each text alone (no padding at all): what batched extraction must reproduce."""
    model = AutoModel.from_pretrained(folder, **kwargs).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    with torch.inference_mode():
        states = [model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0] for text in texts]
    return np.stack([(s[-1] if pooling == "last" else s.mean(0)).numpy() for s in states])


def features_of(dataset):
    return np.asarray(dataset["teacher_features"], dtype=np.float32)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_decoder_features_ignore_padding_on_either_side(kind, tmp_path):
    data = tiny.sentiment_dataset(10)  # texts of 3 to 6 words: batches of 4 are padded
    left = str(tiny.save_decoder_teacher(tmp_path / "left", kind, padding_side="left"))
    right = str(tiny.save_decoder_teacher(tmp_path / "right", kind, padding_side="right"))
    for pooling in ("auto", "mean"):
        got = {side: features_of(extract_teacher_features(data, [folder], pooling=pooling, batch_size=4,
                                                          cache_dir=tmp_path / "cache"))
               for side, folder in (("left", left), ("right", right))}
        expected = one_by_one(left, data["text"], "last" if pooling == "auto" else "mean")
        np.testing.assert_allclose(got["left"], expected, atol=1e-5)
        np.testing.assert_allclose(got["right"], expected, atol=1e-5)
    out = extract_teacher_features(data, [left], batch_size=4, cache_dir=tmp_path / "cache")
    assert read_teacher_infos(out)[0].pooling == "last"  # a decoder's default: the only token that saw the whole text


def test_gguf_teacher_as_a_file_path_or_folder_and_file(tmp_path):
    data = tiny.sentiment_dataset(8)
    path = tiny.save_gguf_teacher(tmp_path / "gguf" / "tiny.gguf")
    by_path = extract_teacher_features(data, [str(path)], batch_size=4, cache_dir=tmp_path / "cache")
    expected = one_by_one(path.parent, data["text"], "last", gguf_file=path.name)
    np.testing.assert_allclose(features_of(by_path), expected, atol=1e-5)
    info = read_teacher_infos(by_path)[0]
    assert (info.name, info.pooling, info.dim) == (str(path), "last", 8) and info.revision.startswith("gguf-")
    # The other spelling names the same file, so the cache serves it without loading the model.
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("teacher loaded")):
        by_folder = extract_teacher_features(data, [f"{path.parent}::{path.name}"], cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(features_of(by_folder), features_of(by_path))
    # Another file (a new quantisation, new weights) in the same folder: a new revision, new features.
    shutil.move(path, tmp_path / "old.gguf")
    tiny.save_gguf_teacher(path, seed=1)
    changed = extract_teacher_features(data, [str(path)], cache_dir=tmp_path / "cache")
    assert read_teacher_infos(changed)[0].revision != info.revision
    assert not np.allclose(features_of(changed), features_of(by_path))


def test_gguf_spec_errors_are_named(tmp_path):
    data = tiny.sentiment_dataset(2)
    path = tiny.save_gguf_teacher(tmp_path / "tiny.gguf")
    with pytest.raises(AFTError, match=r"teacher '.*missing\.gguf': no such GGUF file"):
        extract_teacher_features(data, [str(tmp_path / "missing.gguf")], cache_dir=tmp_path)
    with pytest.raises(AFTError, match=r"GGUF file 'other\.gguf' not found in"):
        extract_teacher_features(data, [f"{tmp_path}::other.gguf"], cache_dir=tmp_path)
    with pytest.raises(AFTError, match=r"write a GGUF teacher as SOURCE::FILE\.gguf"):
        extract_teacher_features(data, [f"{tmp_path}::tiny.bin"], cache_dir=tmp_path)
    with pytest.raises(AFTError, match="is a local GGUF file: it cannot be pinned with @v1"):
        extract_teacher_features(data, [f"{tmp_path}@v1::{path.name}"], cache_dir=tmp_path)


def test_dtype_and_device_map_apply_on_accelerators_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert load_options(cpu, "float16", "auto") == {"dtype": torch.float32}
    assert load_options(cuda, "bfloat16", "auto") == {"dtype": torch.bfloat16, "device_map": "auto"}
    assert load_options(cuda, "float32", None, gguf_file="m.gguf") == {"dtype": torch.float32, "gguf_file": "m.gguf"}
    with pytest.raises(AFTError, match="unknown teacher_dtype 'int8'"):
        AFTConfig(output_dir="unused", teacher_dtype="int8")


def test_half_precision_asked_on_cpu_keeps_float32_features_and_their_cache(tmp_path):
    data = tiny.sentiment_dataset(6)
    folder = str(tiny.save_decoder_teacher(tmp_path / "t", "gpt2"))
    full = extract_teacher_features(data, [folder], cache_dir=tmp_path / "cache")
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("teacher loaded")):
        half = extract_teacher_features(data, [folder], dtype="float16", device_map="auto",
                                        cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(features_of(full), features_of(half))


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_a_decoder_task_teacher_without_pad_token_id_gives_each_texts_own_logits(kind, tmp_path):
    """--distill logits with a GPT-2 / LLaMA classifier whose config has no pad_token_id (as they come) ended in
    transformers' "Cannot handle batch sizes > 1 if no padding token is defined": it pads with eos, as a decoder
    feature teacher does, and each row's logits are those of its text alone."""
    import transformers as hf

    from hf_aft import TeacherArguments
    from hf_aft.distillation import task_teacher_targets

    labels = {"id2label": {0: "0", 1: "1"}, "label2id": {"0": 0, "1": 1}}
    torch.manual_seed(0)
    if kind == "gpt2":
        model = hf.GPT2ForSequenceClassification(hf.GPT2Config(vocab_size=len(tiny.WORDS) + 2, n_embd=12, n_layer=1,
                                                               n_head=2, n_positions=64, bos_token_id=1,
                                                               eos_token_id=1, **labels))
    else:
        model = hf.LlamaForSequenceClassification(hf.LlamaConfig(
            vocab_size=len(tiny.WORDS) + 2, hidden_size=12, intermediate_size=24, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64, bos_token_id=1, eos_token_id=1,
            **labels))
    assert model.config.pad_token_id is None
    from tokenizers import processors

    data = tiny.sentiment_dataset(10)  # texts of 3 to 6 words: batches of 4 are padded
    options = TeacherArguments(teacher_batch_size=4)
    for ends_with_eos in (False, True):  # a tokenizer that ends each text with eos: that eos is no padding
        folder = tmp_path / f"task-teacher-{ends_with_eos}"
        model.save_pretrained(folder)
        tokenizer = tiny.word_tokenizer()
        if ends_with_eos:
            tokenizer._tokenizer.post_processor = processors.TemplateProcessing(single="$A <eos>",
                                                                                special_tokens=[("<eos>", 1)])
        tokenizer.save_pretrained(folder)
        got = task_teacher_targets(data, str(folder), ["0", "1"], options)
        alone = hf.AutoModelForSequenceClassification.from_pretrained(folder).eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        assert (tokenizer(data["text"][0])["input_ids"][-1] == 1) == ends_with_eos  # 1: eos, as the config says
        with torch.inference_mode():
            expected = torch.cat([torch.log_softmax(alone(**tokenizer(text, return_tensors="pt")).logits, 1)
                                  for text in data["text"]]).numpy()
        np.testing.assert_allclose(got, expected, atol=1e-5)

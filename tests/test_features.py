"""Teacher features: pooling, order, provenance and the cache that makes a second call run no teacher."""

from unittest import mock

import numpy as np
import pytest
import tiny
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from hf_aft import AFTError, TeacherArguments, extract_teacher_features, read_teacher_infos
from hf_aft.teachers import TextTeacher as _Teacher
from hf_aft.teachers import pool


def features_of(dataset):
    return np.asarray(dataset["teacher_features"], dtype=np.float32)


def one_by_one_mean(folder, texts):
    """Each text alone (no padding at all), mean-pooled: what batched extraction must reproduce."""
    model, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    with torch.inference_mode():
        states = [model(**tokenizer(text, return_tensors="pt")).last_hidden_state[0] for text in texts]
    return np.stack([s.mean(0).numpy() for s in states])


def test_features_are_pooled_per_teacher_and_concatenated_in_order(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(20)
    both = extract_teacher_features(data, [str(d) for d in teacher_dirs], batch_size=4, cache_dir=tmp_path)
    assert both.features["teacher_features"].length == 12 + 8
    assert both.features["teacher_features"].feature.dtype == "float32"
    assert both["text"] == data["text"] and both["label"] == data["label"]  # dataset order and columns kept
    got = features_of(both)
    # Batched, length-sorted and padded extraction equals running each text alone, in dataset order.
    np.testing.assert_allclose(got[:, :12], one_by_one_mean(teacher_dirs[0], data["text"]), atol=1e-5)
    np.testing.assert_allclose(got[:, 12:], one_by_one_mean(teacher_dirs[1], data["text"]), atol=1e-5)

    infos = read_teacher_infos(both)
    assert [(i.name, i.dim, i.pooling) for i in infos] == [(str(teacher_dirs[0]), 12, "mean"),
                                                          (str(teacher_dirs[1]), 8, "mean")]
    assert all(i.revision.startswith("local-v2-") for i in infos)


def test_second_call_runs_no_teacher_and_a_changed_teacher_recomputes(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(12)
    first = extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path)
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("teacher loaded")):
        again = extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path)
    np.testing.assert_array_equal(features_of(first), features_of(again))

    # Same folder, new weights: a new revision hash, so the features are computed again.
    changed = tmp_path / "changed"
    tiny.save_teacher(changed, hidden=12, seed=0)
    before = extract_teacher_features(data, [str(changed)], cache_dir=tmp_path)
    weights = load_file(changed / "model.safetensors")
    save_file({k: v + 0.1 for k, v in weights.items()}, changed / "model.safetensors", metadata={"format": "pt"})
    with mock.patch.object(_Teacher, "load", autospec=True, side_effect=_Teacher.load) as load:
        after = extract_teacher_features(data, [str(changed)], cache_dir=tmp_path)
    assert load.call_count == 1
    assert read_teacher_infos(after)[0].revision != read_teacher_infos(before)[0].revision
    assert not np.allclose(features_of(before), features_of(after))

    # Same weights, another tokenizer setting (here: no lower-casing): the inputs change, so do the features.
    config = (changed / "tokenizer_config.json").read_text()
    (changed / "tokenizer_config.json").write_text(config.replace('"do_lower_case": true', '"do_lower_case": false'))
    assert config != (changed / "tokenizer_config.json").read_text()
    cased = extract_teacher_features(data, [str(changed)], cache_dir=tmp_path)
    assert read_teacher_infos(cased)[0].revision != read_teacher_infos(after)[0].revision

    # A file no list of names held (custom code run with trust_remote_code): the cache is not reused for it.
    (changed / "modeling_custom.py").write_text("SCALE = 2\n")
    with mock.patch.object(_Teacher, "load", autospec=True, side_effect=_Teacher.load) as load:
        coded = extract_teacher_features(data, [str(changed)], cache_dir=tmp_path)
    assert load.call_count == 1 and read_teacher_infos(coded)[0].revision != read_teacher_infos(cased)[0].revision


def test_last_token_pooling_ignores_padding_on_either_side():
    states = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    outputs = mock.Mock(last_hidden_state=states)
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert pool(outputs, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(outputs, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(outputs, right, "mean").flatten().tolist() == [0.5, 5.5]
    assert pool(outputs, right, "cls").flatten().tolist() == [0.0, 4.0]


def test_bad_input_is_named(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(4)
    with pytest.raises(AFTError, match=r"column 'sentence' not found; the dataset has columns \['text', 'label'\]"):
        extract_teacher_features(data, [str(teacher_dirs[0])], text_column="sentence", cache_dir=tmp_path)
    with pytest.raises(AFTError, match="the dataset is empty"):
        extract_teacher_features(data.select([]), [str(teacher_dirs[0])], cache_dir=tmp_path)
    with pytest.raises(AFTError, match="could not resolve teacher 'no-such-org/no-such-model'"):
        extract_teacher_features(data, ["no-such-org/no-such-model"], cache_dir=tmp_path)
    (tmp_path / "empty-teacher").mkdir()
    (tmp_path / "empty-teacher" / "config.json").write_text("{}")  # a config alone is not a teacher
    with pytest.raises(AFTError, match="holds no weight files"):
        extract_teacher_features(data, [str(tmp_path / "empty-teacher")], cache_dir=tmp_path)
    with pytest.raises(AFTError, match="unknown teacher pooling 'max'"):
        extract_teacher_features(data, [str(teacher_dirs[0])], pooling="max", cache_dir=tmp_path)


def test_a_teacher_cached_alone_is_reused_in_any_place_among_several(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(12)
    alone = extract_teacher_features(data, [str(teacher_dirs[1])], cache_dir=tmp_path)
    with mock.patch.object(_Teacher, "load", autospec=True, side_effect=_Teacher.load) as load:
        both = extract_teacher_features(data, [str(teacher_dirs[0]), str(teacher_dirs[1])], cache_dir=tmp_path)
    assert load.call_count == 1  # only teacher a runs; b comes from its cache, now in second place
    assert [info.dim for info in read_teacher_infos(both)] == [12, 8]
    np.testing.assert_array_equal(features_of(both)[:, 12:], features_of(alone))


def test_of_several_teachers_only_the_changed_one_recomputes(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(12)
    changed = tiny.save_teacher(tmp_path / "changing", hidden=12, seed=3)
    teachers = [str(changed), str(teacher_dirs[1])]
    before = extract_teacher_features(data, teachers, cache_dir=tmp_path / "cache")
    weights = load_file(changed / "model.safetensors")
    save_file({k: v * 1.5 for k, v in weights.items()}, changed / "model.safetensors", metadata={"format": "pt"})
    with mock.patch.object(_Teacher, "load", autospec=True, side_effect=_Teacher.load) as load:
        after = extract_teacher_features(data, teachers, cache_dir=tmp_path / "cache")
    assert [call.args[0].name for call in load.call_args_list] == [str(changed)]
    np.testing.assert_array_equal(features_of(after)[:, 12:], features_of(before)[:, 12:])
    assert not np.allclose(features_of(after)[:, :12], features_of(before)[:, :12])


def test_a_teacher_cached_alone_is_reused_at_another_position(teacher_dirs, tmp_path):
    """Ranking extracts each teacher alone; training then asks for [A, B]: B's cached file (written at position 0)
    must be reused at position 1, without loading any teacher."""
    data = tiny.sentiment_dataset(12)
    alone = [extract_teacher_features(data, [str(d)], cache_dir=tmp_path) for d in teacher_dirs]
    with mock.patch.object(_Teacher, "load", side_effect=AssertionError("teacher loaded")):
        both = extract_teacher_features(data, [str(d) for d in reversed(teacher_dirs)], cache_dir=tmp_path)
    np.testing.assert_array_equal(features_of(both), np.concatenate([features_of(alone[1]), features_of(alone[0])], 1))


def test_length_grouping_changes_the_batches_not_the_features(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(24)
    grouped = extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path / "a", batch_size=4)
    plain = extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path / "b", batch_size=4,
                                     group_by_length=False)
    np.testing.assert_allclose(features_of(grouped), features_of(plain), atol=1e-5)


def test_a_large_teacher_batch_is_still_cut_from_length_sorted_texts(teacher_dirs, tmp_path):
    """Texts are sorted by length within a `Dataset.map` batch, so by default one holds at least 8 teacher batches:
    with 1,024 rows and a teacher batch of 300, the last batch of each map batch would mix short and long texts."""
    import datasets

    from hf_aft.teachers import text as text_teacher

    texts = [" ".join(["word"] * (1 + (i * 37) % 50)) for i in range(1200)]
    widths = []
    pad_rows = text_teacher.pad_rows
    with mock.patch.object(text_teacher, "pad_rows",
                           side_effect=lambda *a: widths.append(len(a[1][-1])) or pad_rows(*a)):
        extract_teacher_features(datasets.Dataset.from_dict({"text": texts}), [str(teacher_dirs[0])], batch_size=300,
                                 cache_dir=tmp_path)
    assert len(widths) == 4 and widths == sorted(widths)  # one map batch of 1,200 rows: 4 batches, shortest first
    assert _Teacher("t", "t", "", "mean", 64, 300, "cpu").map_batch_size == 2400
    assert _Teacher("t", "t", "", "mean", 64, 32, "cpu").map_batch_size == 1024  # the CPU default: as before


def test_a_teacher_given_twice_is_refused_and_a_copy_of_one_is_named(teacher_dirs, tmp_path, caplog):
    """The same teacher twice (or a copy in another folder) trained on its features twice, silently."""
    import shutil

    from hf_aft import AFTConfig

    teacher = str(teacher_dirs[0])
    (tmp_path / "link").symlink_to(teacher)
    for twice in ([teacher, teacher], [teacher, str(tmp_path / "link")]):
        with pytest.raises(AFTError, match=f"teacher '{twice[1]}' is given twice \\(also as '{teacher}'\\)"):
            AFTConfig(output_dir=str(tmp_path / "out"), teachers=twice)
    with pytest.raises(AFTError, match="is given twice"):  # the Python API too: its features were 24 wide
        extract_teacher_features(tiny.sentiment_dataset(4), [teacher, teacher + "/"], cache_dir=tmp_path / "cache")
    copy = shutil.copytree(teacher, tmp_path / "copy")
    extract_teacher_features(tiny.sentiment_dataset(4), [teacher, str(copy), str(teacher_dirs[1])],
                             cache_dir=tmp_path / "cache")
    assert f"teacher '{copy}' is the same model as '{teacher}'" in caplog.text
    assert str(teacher_dirs[1]) + "' is the same" not in caplog.text
    caplog.clear()
    from hf_aft.ranking import rank_teachers

    data = tiny.sentiment_dataset(20)
    rank_teachers(data, np.asarray(data["label"]), [teacher, str(copy)], TeacherArguments(), folds=2,
                  cache_dir=str(tmp_path / "cache"))
    assert f"teacher '{copy}' is the same model as '{teacher}'" in caplog.text

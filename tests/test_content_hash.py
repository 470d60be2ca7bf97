"""A local model's revision covers every file that can change what it computes (custom code, any tokenizer or
processor file, sentence-transformers modules), not a list of names; and records of an earlier hf-aft, which hashed
only the weights and a fixed list of configs, are compared by that hash: an unchanged model stays unchanged."""

import json
import logging
import shutil
from dataclasses import asdict

import datasets
import pytest
import tiny

from hf_aft.commands import main
from hf_aft.errors import AFTError
from hf_aft.feature_dataset import check_same_teachers
from hf_aft.features import TeacherInfo
from hf_aft.teachers import content_hash
from hf_aft.teachers.content_hash import legacy_revision
from hf_aft.teachers.spec import gguf_file_revision, resolve_revision, revision_in_scheme_of


@pytest.fixture
def teacher(teacher_dirs, tmp_path):
    folder = tmp_path / "teacher"
    shutil.copytree(teacher_dirs[0], folder)
    return folder


def edited(folder, name: str) -> bool:
    """Whether writing `name` in `folder`, then editing it, gives a new revision at each step."""
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    before = resolve_revision(str(folder), None)
    (folder / name).write_text("one\n")
    written = resolve_revision(str(folder), None)
    (folder / name).write_text("two\n")
    return before != written != resolve_revision(str(folder), None)


@pytest.mark.parametrize("name", ["modeling_custom.py", "configuration_custom.py", "tokenization_custom.py",
                                  "spm.model", "tokenizer.jinja", "chat_template.jinja", "processor_config.json",
                                  "image_processor_config.json", "preprocessor_config.json", "1_Pooling/config.json",
                                  "2_Dense/model.safetensors", "params.yaml", "recipe.yaml"])
def test_an_edit_to_any_file_that_can_shape_the_features_is_a_new_revision(teacher, name):
    assert edited(teacher, name)  # recipe.yaml: not a run folder, so not hf-aft's own record


@pytest.mark.parametrize("name", ["README.md", "LICENSE", "LICENSE.txt", ".gitattributes", ".git/HEAD",
                                  ".cache/huggingface/download/model.safetensors.metadata", "__pycache__/m.pyc",
                                  "scales.png"])
def test_files_no_model_reads_leave_the_revision(teacher, name):
    (teacher / name).parent.mkdir(parents=True, exist_ok=True)
    before = resolve_revision(str(teacher), None)
    (teacher / name).write_text("edited\n")
    assert resolve_revision(str(teacher), None) == before
    assert before.startswith("local-v2-")


def test_a_run_folder_keeps_its_revision_when_hf_aft_rewrites_its_records(teacher):
    """A run's student used as a model: its records and checkpoints are not what loads from the folder."""
    (teacher / "audit.json").write_text("{}")
    before = resolve_revision(str(teacher), None)
    for name in ("update_report.json", "recipe.yaml", "audit.json", "checkpoint-2/optimizer.pt"):
        (teacher / name).parent.mkdir(parents=True, exist_ok=True)
        (teacher / name).write_text("rewritten\n")
    assert resolve_revision(str(teacher), None) == before
    assert edited(teacher, "modeling_custom.py")


def test_the_run_records_named_are_the_ones_hf_aft_writes():
    from hf_aft.audit import AUDIT_NAME
    from hf_aft.beta_search import BETA_SEARCH_NAME
    from hf_aft.card import CARD_INPUTS_NAME
    from hf_aft.cost import COST_REPORT_NAME
    from hf_aft.finished_marker import COMPLETE_NAME, UPDATE_REPORT_NAME
    from hf_aft.group_report import EVAL_PREDICTIONS_NAME, GROUP_REPORT_NAME
    from hf_aft.outputs import TRANSFER_STATE_NAME, TRANSFER_SUMMARY_NAME
    from hf_aft.recipe import RECIPE_NAME

    assert {AUDIT_NAME, COMPLETE_NAME} == set(content_hash.RUN_MARKERS)
    assert content_hash.RUN_RECORDS == {AUDIT_NAME, BETA_SEARCH_NAME, CARD_INPUTS_NAME, COST_REPORT_NAME,
                                        COMPLETE_NAME, UPDATE_REPORT_NAME, EVAL_PREDICTIONS_NAME, GROUP_REPORT_NAME,
                                        TRANSFER_STATE_NAME, TRANSFER_SUMMARY_NAME, RECIPE_NAME}


def test_a_gguf_file_is_hashed_with_the_files_beside_it_but_not_other_weights(tmp_path):
    """transformers reads a tokenizer config or custom code beside a GGUF file; another quantisation never."""
    for name in ("model-q4.gguf", "model-q8.gguf", "tokenizer_config.json"):
        (tmp_path / name).write_text(name)
    revision = gguf_file_revision(str(tmp_path), "model-q4.gguf")
    assert revision.startswith("gguf-v2-")
    (tmp_path / "model-q8.gguf").write_text("requantised")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tokenizer_config.json").write_text("another model's")
    assert gguf_file_revision(str(tmp_path), "model-q4.gguf") == revision
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "Other"}')
    assert gguf_file_revision(str(tmp_path), "model-q4.gguf") != revision


def test_a_record_of_an_earlier_hf_aft_is_compared_by_its_hash(teacher, tmp_path, caplog):
    old = legacy_revision(teacher)
    assert old.startswith("local-") and not old.startswith("local-v2-")
    now = resolve_revision(str(teacher), None)
    with caplog.at_level(logging.WARNING):
        assert revision_in_scheme_of(old, now, str(teacher)) == old
    assert "recorded by an earlier hf-aft" in caplog.text and "cannot be told" in caplog.text
    assert revision_in_scheme_of(now, now, str(teacher)) == now  # a record of this version: as it is
    assert revision_in_scheme_of("abc123", "def456", "org/name") == "def456"  # Hub commits: as they are
    assert revision_in_scheme_of(old, "local-0123456789abcdef", str(teacher)) == "local-0123456789abcdef"  # stored
    gguf = tmp_path / "m.gguf"
    gguf.write_text("weights")
    old_gguf = "gguf-" + content_hash.file_sha256(gguf)[:16]  # what an earlier hf-aft recorded: the file alone
    assert revision_in_scheme_of(old_gguf, gguf_file_revision(str(tmp_path), "m.gguf"), str(gguf)) == old_gguf
    tiny.save_teacher(teacher, hidden=12, seed=7)  # new weights: the earlier hash sees them
    assert revision_in_scheme_of(old, resolve_revision(str(teacher), None), str(teacher)) != old


def write_run(folder, teacher, revision: str, student=None) -> None:
    folder.mkdir()
    record = {"teachers": [{"name": str(teacher), "spec": str(teacher), "path": str(teacher),
                            "requested_revision": None, "resolved_revision": revision}]}
    if student is not None:  # followed by its content hash too
        record["student"] = {"init": str(student), "path": str(student), "revision": legacy_revision(student)}
    (folder / "audit.json").write_text(json.dumps(record))


def test_check_updates_sees_an_edit_to_custom_code(teacher, tmp_path, capsys):
    write_run(tmp_path / "run", teacher, resolve_revision(str(teacher), None))
    assert main(["check-updates", str(tmp_path / "run")]) == 0
    assert "(unchanged)" in capsys.readouterr().out
    (teacher / "modeling_custom.py").write_text("def forward(): return 1\n")
    assert main(["check-updates", str(tmp_path / "run")]) == 1
    assert "(changed)" in capsys.readouterr().out


def test_check_updates_on_a_run_of_an_earlier_hf_aft(teacher, student_dir, tmp_path, capsys):
    """Its audit.json holds the earlier hash: an unchanged teacher or student is unchanged (said how it was compared),
    a teacher whose weights changed is changed."""
    student = tmp_path / "student"
    shutil.copytree(student_dir, student)
    write_run(tmp_path / "run", teacher, legacy_revision(teacher), student)
    assert main(["check-updates", str(tmp_path / "run")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "nothing changed" and len(lines) == 3
    assert all(line.endswith("(unchanged, by the earlier hf-aft's hash)") for line in lines[:2]), lines
    tiny.save_teacher(teacher, hidden=12, seed=7)
    assert main(["check-updates", str(tmp_path / "run")]) == 1
    assert "(changed, by the earlier hf-aft's hash)" in capsys.readouterr().out


def with_infos(infos: list[TeacherInfo]) -> datasets.Dataset:
    info = datasets.DatasetInfo(description=json.dumps({"hf_aft_teachers": [asdict(i) for i in infos]}))
    return datasets.Dataset.from_dict({"teacher_features": [[0.0] * infos[0].dim]}, info=info)


def test_features_saved_by_an_earlier_hf_aft_beside_features_made_here(teacher):
    """A features folder of an earlier hf-aft holds its hash of the teacher; the pool's features made here now, with
    the same teacher unchanged, are of the same space; with the teacher's weights changed they are not."""
    stored = with_infos([TeacherInfo(str(teacher), legacy_revision(teacher), "mean", 12, 64)])
    made = with_infos([TeacherInfo(str(teacher), resolve_revision(str(teacher), None), "mean", 12, 64)])
    check_same_teachers(stored, made, "the unlabelled data's", made_here="other")
    with pytest.raises(AFTError, match="not made as"):
        check_same_teachers(stored, made, "the unlabelled data's")  # neither made here: no path to read
    tiny.save_teacher(teacher, hidden=12, seed=7)
    made = with_infos([TeacherInfo(str(teacher), resolve_revision(str(teacher), None), "mean", 12, 64)])
    with pytest.raises(AFTError, match="not made as"):
        check_same_teachers(stored, made, "the unlabelled data's", made_here="other")


def test_a_folder_without_weights_is_still_refused(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "modeling_custom.py").write_text("")
    with pytest.raises(AFTError, match="holds no weight files"):
        resolve_revision(str(tmp_path), None)


def test_a_rerun_of_a_recipe_of_an_earlier_hf_aft_is_not_told_its_unchanged_teacher_moved(teacher):
    from hf_aft.reruns import moved_since

    source = {"role": "teacher", "spec": str(teacher), "path": str(teacher), "revision": legacy_revision(teacher)}
    assert moved_since([source]) == []
    tiny.save_teacher(teacher, hidden=12, seed=7)
    (line,) = moved_since([source])
    assert "changed since the recipe's run" in line and f"(revision {source['revision']} -> local-v2-" in line

"""A resume trains as its checkpoint's run began (hf_aft_options.json), and options that change nothing are refused."""

import json
import os
import shutil

import pytest
import tiny
from tiny import error_line

from hf_aft.commands import main
from hf_aft.commands.train import parse_train_args
from hf_aft.errors import AFTError
from hf_aft.recipe import build_recipe
from hf_aft.resume_check import OPTIONS_NAME
from hf_aft.teachers.content_hash import legacy_revision


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Labelled train/test splits, and two unlabelled pools of 16 and 24 rows."""
    folder = tmp_path_factory.mktemp("data")
    for split, n, seed in (("train", 32, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(folder / "labelled" / f"{split}.csv")
    for name, n, seed in (("pool.csv", 16, 2), ("other.csv", 24, 3)):
        tiny.sentiment_dataset(n, seed=seed).remove_columns("label").to_csv(folder / name)
    return folder


def train_args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data / "labelled"),
            *(["--teachers", *map(str, teacher_dirs)] if teacher_dirs else []), "--output_dir", str(out),
            "--per_device_train_batch_size", "8",
            "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", *extra]


@pytest.fixture(scope="module")
def first_run(student_dir, teacher_dirs, data, tmp_path_factory):
    """Four steps with the 16-row pool, a checkpoint every two."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert main(train_args(student_dir, teacher_dirs, data, out, "--unlabeled_dataset", str(data / "pool.csv"),
                           "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2")) == 0
    return out


def resume(student_dir, teacher_dirs, data, first_run, tmp_path, *extra, pool="pool.csv"):
    """Resume a copy of the first run's checkpoint-2 to step 4 (`pool` None: without unlabelled data)."""
    out = tmp_path / "out"
    if not out.exists():
        shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    unlabeled = ["--unlabeled_dataset", str(data / pool)] if pool else []
    return main(train_args(student_dir, teacher_dirs, data, out, "--max_steps", "4", "--resume_from_checkpoint",
                           str(out / "checkpoint-2"), *unlabeled, *extra))


def test_each_checkpoint_records_the_options_that_shape_the_run(first_run, data):
    record = json.loads((first_run / "checkpoint-2" / OPTIONS_NAME).read_text())
    assert record["transfer"] == "aft" and record["beta"] == 0.1 and record["distill"] == "probe"
    assert record["unlabeled_dataset"] == str(data / "pool.csv") and record["unlabeled_rows"] == 16
    assert record["labeled_fraction"] == 0.5 and record["seed"] == 42
    assert (first_run / "checkpoint-4" / OPTIONS_NAME).exists()


@pytest.mark.parametrize("extra, pool, named", [
    ((), None, "--unlabeled_dataset " + "{pool}"),
    ((), "other.csv", "--unlabeled_dataset " + "{pool}"),
    (("--labeled_fraction", "0.25"), "pool.csv", "--labeled_fraction 0.5"),
    (("--transfer", "kd"), "pool.csv", "--transfer aft"),
    (("--distill", "none", "--seed", "3"), "pool.csv", "--distill probe, --seed 42"),
    # the checkpoint's optimizer state would keep its own rates; another batch shape or text length is another run
    (("--learning_rate", "0.001", "--learn_scales", "false"), "pool.csv",
     "--learning_rate 5e-05, --learn_scales true"),
    (("--scales_learning_rate", "0.5"), "pool.csv", "--scales_learning_rate 0.01"),
    (("--per_device_train_batch_size", "4", "--gradient_accumulation_steps", "2"), "pool.csv",
     "--per_device_train_batch_size 8, --gradient_accumulation_steps 1"),
    (("--max_length", "16"), "pool.csv", "--max_length 128"),
])
def test_a_resume_with_other_options_is_refused_naming_the_checkpoints(student_dir, teacher_dirs, data, first_run,
                                                                       tmp_path, capsys, extra, pool, named):
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path, *extra, pool=pool) == 2
    line = error_line(capsys)
    assert named.format(pool=data / "pool.csv") in line and "it was saved by a run with" in line
    assert "resume with the checkpoint's values, or start again without --resume_from_checkpoint" in line


def test_a_resume_with_the_same_options_goes_on(student_dir, teacher_dirs, data, first_run, tmp_path, capsys):
    """...and says so: a resumed run printed nothing of it, only transformers' warning that the default
    `logging_steps` ratio (0.1) is not the count the checkpoint stored, on every resume."""
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path) == 0
    assert f"resuming from {tmp_path / 'out' / 'checkpoint-2'}: step 2 of 4" in capsys.readouterr().out
    import logging

    from transformers import TrainerState
    from transformers.trainer_utils import compare_trainer_and_checkpoint_args

    from hf_aft import AFTConfig

    warned = []
    handler = logging.Handler()
    handler.emit = lambda record: warned.append(record.getMessage())
    logger = logging.getLogger("transformers.trainer_utils")  # transformers' loggers do not propagate
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.WARNING)  # as `hf-aft train` shows them
    try:
        for steps, batch in ((300, 8), (300, 4)):  # a 3,000-step run stored 0.1 of it as 300; another batch size
            state = TrainerState(logging_steps=steps, eval_steps=500, save_steps=500, train_batch_size=batch)
            args = AFTConfig(output_dir=str(tmp_path / "x"), per_device_train_batch_size=8, use_cpu=True,
                             eval_steps=500, save_steps=500)
            compare_trainer_and_checkpoint_args(args, state)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert len(warned) == 1 and "per_device_train_batch_size: 8 (from args) != 4" in warned[0]  # that one is news
    summary = json.loads((tmp_path / "out" / "transfer_summary.json").read_text())
    assert summary["unlabeled_rows"] == 16 and json.loads((tmp_path / "out" / "trainer_state.json").read_text())[
        "global_step"] == 4
    assert "planned for" not in (tmp_path / "out" / "recipe.yaml").read_text()  # the same plan: a rerun is this run
    checkpoint = str(tmp_path / "out" / "checkpoint-2")  # the lineage says the run was interrupted and resumed
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["resumed_from"] == {"checkpoint": checkpoint,
                                                                                       "step": 2}
    assert f"this run resumed {checkpoint} (step 2)" in (tmp_path / "out" / "recipe.yaml").read_text()
    assert "resumed from a checkpoint at step 2 of an interrupted run" in (tmp_path / "out" / "README.md").read_text()
    assert main(["audit", str(tmp_path / "out")]) == 0
    assert f"from {checkpoint} at step 2" in capsys.readouterr().out


def test_a_resume_with_another_student_is_refused_naming_the_checkpoints(student_dir, teacher_dirs, data, first_run,
                                                                         tmp_path, capsys):
    """The checkpoint's weights would load into the other student's config (its dropout, ...): a hybrid run."""
    other = shutil.copytree(student_dir, tmp_path / "other-student")
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path, "--model_name_or_path", str(other)) == 2
    assert f"--model_name_or_path {os.path.abspath(student_dir)}" in error_line(capsys)


def test_a_resume_to_a_max_steps_the_checkpoint_reached_is_refused(student_dir, teacher_dirs, data, first_run,
                                                                    tmp_path, capsys):
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path, "--max_steps", "2") == 2
    assert "it is at step 2 already: give a --max_steps above 2" in error_line(capsys)
    assert not (tmp_path / "out" / "recipe.yaml").exists()


def test_a_resume_with_another_max_steps_says_the_recipe_cannot_rerun_it(student_dir, teacher_dirs, data, first_run,
                                                                        tmp_path, capsys):
    """transformers rebuilds the learning-rate schedule from the new --max_steps at the resume: the rate jumps, and
    the recipe (one max_steps) would train another student; the printed summary and the recipe say so."""
    out = tmp_path / "out"
    shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    assert main(train_args(student_dir, teacher_dirs, data, out, "--max_steps", "6", "--resume_from_checkpoint",
                           str(out / "checkpoint-2"), "--unlabeled_dataset", str(data / "pool.csv"))) == 0
    said = f"resumed at step 2 from {out / 'checkpoint-2'}, saved by a run planned for 4 steps"
    assert said in capsys.readouterr().out
    recipe = (out / "recipe.yaml").read_text()
    assert said in recipe and "a rerun of this recipe (max_steps 6 throughout) trains another student" in recipe


def test_a_pool_of_another_size_under_the_same_name_is_refused(student_dir, teacher_dirs, data, first_run, tmp_path,
                                                               capsys):
    out = tmp_path / "out"
    shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    pool = tmp_path / "pool.csv"
    shutil.copy(data / "other.csv", pool)  # 24 rows where the checkpoint's run read 16
    record = json.loads((out / "checkpoint-2" / OPTIONS_NAME).read_text())
    (out / "checkpoint-2" / OPTIONS_NAME).write_text(json.dumps({**record, "unlabeled_dataset": str(pool)}))
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path, pool=pool) == 2
    line = error_line(capsys)
    assert "it was saved by a run with 16 unlabelled rows of sha256 " in line
    assert "and this command has 24 unlabelled rows of sha256 " in line


def test_a_pool_file_edited_in_place_is_refused_and_the_run_left(student_dir, teacher_dirs, data, tmp_path, capsys):
    pool = tmp_path / "pool.csv"
    shutil.copy(data / "pool.csv", pool)
    out = tmp_path / "out"
    assert main(train_args(student_dir, teacher_dirs, data, out, "--unlabeled_dataset", str(pool), "--max_steps", "2",
                           "--save_strategy", "steps", "--save_steps", "2")) == 0
    assert json.loads((out / "checkpoint-2" / OPTIONS_NAME).read_text())["unlabeled_pool"][0] == 16
    rows = pool.read_text().splitlines()
    pool.write_text("\n".join([rows[0], rows[1] + " edited", *rows[2:]]) + "\n")  # 16 rows still
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(train_args(student_dir, teacher_dirs, data, out, "--unlabeled_dataset", str(pool), "--max_steps", "4",
                           "--resume_from_checkpoint", str(out / "checkpoint-2"))) == 2
    line = error_line(capsys)
    assert "saved by a run with 16 unlabelled rows of sha256 " in line and "this command has 16 unlabelled" in line
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_a_resume_with_a_teacher_of_another_width_names_the_teachers(student_dir, teacher_dirs, data, first_run,
                                                                      tmp_path, capsys):
    """One teacher (12-d) where the checkpoint's run had two (12 + 8): refused as a change of teachers before the
    transfer state loads (it failed there with a state_dict message)."""
    assert resume(student_dir, teacher_dirs[:1], data, first_run, tmp_path) == 2
    line = error_line(capsys)
    assert "it was saved by a run with teacher features of mean pooling, 12-d" in line and "8-d" in line
    assert "state_dict" not in line
    finished = tmp_path / "finished"  # a refused resume into the finished run itself leaves every file as it was
    shutil.copytree(first_run, finished)
    before = {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()}
    assert main(train_args(student_dir, teacher_dirs[:1], data, finished, "--max_steps", "4", "--unlabeled_dataset",
                           str(data / "pool.csv"), "--resume_from_checkpoint", str(finished / "checkpoint-2"))) == 2
    assert {p: p.read_bytes() for p in finished.rglob("*") if p.is_file()} == before  # hf_aft_complete.json too


def test_an_overwriting_run_removes_the_earlier_runs_checkpoints(student_dir, teacher_dirs, data, tmp_path, capsys,
                                                                  caplog):
    """--overwrite_output_dir into a run dir: the earlier run's checkpoint-6 stayed beside this run's 2 and 4, and
    --resume_from_checkpoint OUTPUT_DIR named it as this run's last. Nor may its other files pass for this run's: an
    AFT run's transfer state stayed beside a plain fine-tuning run's weights (its card drew their scales), an update
    report named the earlier run's history, and the audit recorded a marker gone by the end (it failed at once)."""
    out = tmp_path / "out"
    every_two = ("--save_strategy", "steps", "--save_steps", "2")
    assert main(train_args(student_dir, teacher_dirs, data, out, "--max_steps", "6", *every_two)) == 0
    assert (out / "transfer_state.safetensors").exists()
    (out / "update_report.json").write_text("{}")  # as check-updates --retrain leaves in a run
    refused = train_args(student_dir, (), data, out, "--max_steps", "4", "--transfer", "none", *every_two)
    overwrite = ("--overwrite_output_dir", "true")
    assert main(refused + [*overwrite, "--unlabeled_dataset", str(data / "labelled" / "test.csv")]) == 2
    assert "test" in error_line(capsys) and (out / "checkpoint-6").is_dir()  # a refused run removes nothing
    assert main(refused + [*overwrite]) == 0
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert "removed the earlier run's checkpoint-2, checkpoint-4, checkpoint-6" in caplog.text
    assert not any((out / name).exists() for name in ("transfer_state.safetensors", "transfer_summary.json",
                                                      "update_report.json"))
    assert main(["audit", str(out)]) == 0, capsys.readouterr().out[-2000:]
    assert main(train_args(student_dir, (), data, out, "--max_steps", "4", "--transfer", "none",
                           "--resume_from_checkpoint", str(out))) == 2
    assert f"its last is '{out / 'checkpoint-4'}'" in error_line(capsys)


def test_an_overwriting_run_keeps_the_users_own_files_and_refuses_an_input_inside_it(student_dir, teacher_dirs, data,
                                                                                      tmp_path, capsys):
    """A user's file in the output dir before a run was listed in its hf_aft_complete.json as the run's, and the next
    --overwrite_output_dir run deleted it, even the pool file that run was reading (and exited 0)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = train_args(student_dir, teacher_dirs, data, out, "--max_steps", "2", "--overwrite_output_dir", "true")
    assert main(args) == 0
    assert "notes.txt" not in json.loads((out / "hf_aft_complete.json").read_text())["files"]
    assert "config.json" in json.loads((out / "hf_aft_complete.json").read_text())["files"]
    stl = train_args(student_dir, (), data, out, "--max_steps", "2", "--overwrite_output_dir", "true")
    assert main(stl + ["--transfer", "none"]) == 0  # the earlier run's transfer state goes, the notes stay
    assert (out / "notes.txt").read_text() == "mine" and not (out / "transfer_state.safetensors").exists()
    # a marker of an earlier hf-aft listed every file the folder held: only those changed since its run started go
    assert main(args) == 0
    marker = json.loads((out / "hf_aft_complete.json").read_text())
    (out / "hf_aft_complete.json").write_text(json.dumps({"complete": True, "files": [*marker["files"], "notes.txt"]}))
    os.utime(out / "notes.txt", (0, 0))  # written long before that run
    assert main(stl + ["--transfer", "none"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and not (out / "transfer_state.safetensors").exists()
    shutil.copy(data / "pool.csv", out / "pool.csv")
    for flag, value in (("--unlabeled_dataset", out / "pool.csv"), ("--model_name_or_path", out / "checkpoint-2")):
        (out / "checkpoint-2").mkdir(exist_ok=True)
        assert main(args + [flag, str(value)]) == 2
        assert error_line(capsys).startswith(f"hf-aft: error: {flag} '{value}' is inside --output_dir")
    assert (out / "pool.csv").exists() and (out / "notes.txt").exists()


def test_an_overwrite_of_a_run_killed_before_its_marker_removes_its_files_too(student_dir, teacher_dirs, data,
                                                                              tmp_path, capsys):
    """A run killed after saving, before hf_aft_complete.json (no list of its files): its transfer state stayed beside
    the overwriting --transfer none run's weights, the card drew its scales, and the new run's audit failed."""
    out = tmp_path / "out"
    assert main(train_args(student_dir, teacher_dirs, data, out, "--max_steps", "2")) == 0
    (out / "hf_aft_complete.json").unlink()  # as if killed before the marker
    assert main(train_args(student_dir, (), data, out, "--max_steps", "2", "--transfer", "none",
                           "--overwrite_output_dir", "true")) == 0
    assert not any((out / name).exists() for name in ("transfer_state.safetensors", "transfer_summary.json",
                                                      "scales.png"))
    assert main(["audit", str(out)]) == 0, capsys.readouterr().out[-2000:]


def test_a_task_teacher_retrained_in_place_is_refused_on_resume(student_dir, teacher_dirs, data, tmp_path, capsys):
    """`--distill_teacher` names a folder whose weights changed since the checkpoint: the same name is another
    teacher, and half a run distilled from each would be described as one."""
    classifier = tiny.save_student(tmp_path / "task-teacher", hidden=12, seed=3)
    out = tmp_path / "out"
    args = train_args(student_dir, teacher_dirs, data, out, "--unlabeled_dataset", str(data / "pool.csv"),
                      "--distill_teacher", str(classifier), "--save_strategy", "steps", "--save_steps", "2")
    assert main(args + ["--max_steps", "2"]) == 0
    record = json.loads((out / "checkpoint-2" / OPTIONS_NAME).read_text())
    saved = record["distill_teacher_revision"]
    assert saved.startswith("local-v2-")
    # as an earlier hf-aft wrote it (its content hash): the unchanged teacher resumes
    record["distill_teacher_revision"] = legacy_revision(classifier)
    (out / "checkpoint-2" / OPTIONS_NAME).write_text(json.dumps(record))
    assert main(args + ["--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2")]) == 0  # unchanged
    tiny.save_student(classifier, hidden=12, seed=4)  # retrained in place
    assert main(args + ["--max_steps", "6", "--resume_from_checkpoint", str(out / "checkpoint-4")]) == 2
    line = error_line(capsys)
    assert f"it was saved by a run with the task teacher (--distill_teacher) at revision {saved}" in line
    assert "this command has the task teacher (--distill_teacher) at revision local-" in line


def test_a_checkpoint_of_an_earlier_hf_aft_resumes_with_its_unchanged_teachers(student_dir, teacher_dirs, data,
                                                                               first_run, tmp_path, capsys):
    """Its options hold the earlier content hash of each local teacher: computed again here, the same teachers resume;
    a teacher whose weights differ from what that hash recorded is refused."""
    out = tmp_path / "out"
    shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    path = out / "checkpoint-2" / OPTIONS_NAME
    record = json.loads(path.read_text())
    assert [t[0][:9] for t in record["teacher_features"]] == ["local-v2-"] * 2
    kept = record["teacher_features"]
    record["teacher_features"] = [[legacy_revision(d), *t[1:]] for d, t in zip(teacher_dirs, kept, strict=True)]
    path.write_text(json.dumps(record))
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path) == 0
    shutil.rmtree(out)
    shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    record["teacher_features"][1][0] = "local-0123456789abcdef"  # another teacher, as the earlier hf-aft hashed it
    path.write_text(json.dumps(record))
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path) == 2
    assert "local-0123456789abc" in error_line(capsys)  # the saved teacher named


def test_an_older_checkpoint_resumed_with_another_transfer_names_the_saved_one(student_dir, teacher_dirs, data,
                                                                              first_run, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    (out / "checkpoint-2" / OPTIONS_NAME).unlink()  # written before hf-aft recorded the options
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path, "--transfer", "kd") == 2
    line = error_line(capsys)
    assert "it was saved by a --transfer aft run: resume with --transfer aft, or start again without" in line
    assert "state_dict" not in line


BASE = ["--model_name_or_path", "s", "--dataset_name", "d", "--output_dir", "o"]


@pytest.mark.parametrize("extra, message", [
    (["--unlabeled_dataset", ""], "--unlabeled_dataset is empty (an unset shell variable in quotes?)"),
    (["--unlabeled_dataset", "  "], "--unlabeled_dataset is empty (an unset shell variable in quotes?)"),
    (["--teachers", ""], "--teachers is empty"),
    (["--unlabeled_split", "pool"], "--unlabeled_split pool is the split of --unlabeled_dataset, which this run"),
    (["--labeled_fraction", "0.2"], "--labeled_fraction 0.2 is the labelled share of batches that mix in"),
    (["--transfer", "none", "--distill", "none", "--distill_weight", "5"],
     "--distill_weight is used by the distillation term only, and this run has none (--distill none)"),
    (["--distill", "none", "--distill_temperature", "3"], "--distill_temperature is used by the distillation term"),
    (["--transfer", "none", "--distill_weight", "5"], "(--distill auto is none for --transfer none without"),
    # a transfer term's own options under another term: accepted, and recorded in the recipe as if they applied
    (["--transfer", "kd", "--kernel", "rbf"], "--kernel shapes the AFT transfer term only, and this run has "
     "--transfer kd: drop --kernel, or pass --transfer aft"),
    (["--transfer", "kd", "--no_learn_scales"], "--no_learn_scales shapes the AFT transfer term only"),
    (["--transfer", "kd", "--kernel_scope", "local"], "--kernel_scope shapes the AFT and RKD transfer term only"),
    (["--transfer", "none", "--balance_teachers"], "--balance_teachers shapes the AFT, KD and RKD transfer"),
    (["--transfer", "none", "--beta", "5"], "--beta shapes the AFT, KD and RKD transfer term only"),
    # the teachers were never run nor in audit.json, yet the recipe listed them
    (["--teachers", "t", "--transfer", "none"], "--teachers are read by a transfer term or --distill probe only, and "
     "this run has neither (--transfer none, --distill auto is none for --transfer none without unlabelled rows): "
     "drop --teachers, or pass --transfer aft (kd, rkd) or --distill probe."),
    (["--teachers", "t", "--transfer", "none", "--distill", "none"], "(--transfer none, --distill none): drop"),
    (["--teachers", "t", "--transfer", "none", "--distill", "logits", "--distill_teacher", "c"],
     "(--transfer none, --distill logits): drop --teachers, or pass --transfer aft (kd, rkd)."),
])
def test_options_that_would_change_nothing_are_refused(extra, message):
    with pytest.raises(AFTError) as error:
        parse_train_args(BASE + extra)
    assert message in str(error.value)


@pytest.mark.parametrize("extra", [
    ["--unlabeled_split", "pool", "--unlabeled_dataset", "pool.csv"],
    ["--labeled_fraction", "0.2", "--unlabeled_dataset", "pool.csv"],
    ["--labeled_fraction", "0.2", "--augment_copies", "1"],
    ["--transfer", "none", "--distill_weight", "5", "--unlabeled_dataset", "pool.csv"],
    ["--distill_temperature", "3"],
    ["--unlabeled_split", "train", "--labeled_fraction", "0.5", "--distill", "none", "--distill_weight", "1"],
    ["--kernel", "rbf", "--no_learn_scales"], ["--transfer", "rkd", "--kernel_scope", "local"],
    ["--transfer", "kd", "--balance_teachers", "--scales_learning_rate", "0.01"],
    ["--teachers", "t", "--transfer", "none", "--distill", "probe"], ["--teachers", "t", "--beta", "auto"],
    ["--teachers", "t", "--transfer", "none", "--unlabeled_dataset", "pool.csv"],
    ["--teachers", "t", "--transfer", "none", "--augment_copies", "1"],
    ["--teachers", "t", "--distill", "logits", "--distill_teacher", "c"],
])
def test_options_that_take_effect_are_accepted(extra):
    parse_train_args(BASE + extra)


def test_a_recipe_of_an_earlier_hf_aft_that_lists_unread_teachers_replays_without_them(tmp_path, caplog):
    """Earlier hf-aft versions kept --teachers in the recipe of a --transfer none run that never read them: replaying
    it (--config, check-updates --retrain, which has no --teachers flag) was refused with advice it could not follow.
    A recipe of one's own that lists them is still refused, as the flag is."""
    header = "# hf-aft recipe of the run in /x (2026-12-01T00:00:00+00:00); rerun it with\n"
    body = "teachers:\n- t\ntransfer: none\ndistill: none\n"
    for name, text in (("recipe.yaml", header + body), ("mine.yaml", body)):
        (tmp_path / name).write_text(text)
    _, config, _ = parse_train_args([*BASE, "--config", str(tmp_path / "recipe.yaml")])
    assert config.teachers == [] and "lists teachers no term of its run read" in caplog.text
    with pytest.raises(AFTError, match="--teachers are read by a transfer term"):
        parse_train_args([*BASE, "--config", str(tmp_path / "mine.yaml")])
    with pytest.raises(AFTError, match="--teachers are read by a transfer term"):  # given on the command line
        parse_train_args([*BASE, "--config", str(tmp_path / "recipe.yaml"), "--teachers", "t"])


def test_the_cli_refuses_an_empty_value_in_one_line(capsys):
    assert main(["train", *BASE, "--unlabeled_dataset", ""]) == 2
    assert "--unlabeled_dataset is empty" in error_line(capsys)


def test_help_says_a_distill_teacher_makes_auto_logits(capsys):
    with pytest.raises(SystemExit):
        parse_train_args(["--help"])
    assert "logits when --distill_teacher is given" in " ".join(capsys.readouterr().out.split())


def test_a_recipe_leaves_out_the_distillation_options_of_a_run_without_distillation():
    script_args, config, _ = parse_train_args(BASE + ["--distill_weight", "2", "--distill_temperature", "3"])
    recipe = build_recipe(script_args, config, distill="none")
    assert "distill_weight" not in recipe and "distill_temperature" not in recipe and recipe["distill"] == "none"


@pytest.mark.parametrize("given", ["missing", "output_dir", "model_dir", "cut_off"])
def test_a_resume_from_no_checkpoint_is_refused_before_anything_loads(student_dir, teacher_dirs, data, first_run,
                                                                      tmp_path, capsys, monkeypatch, given):
    import hf_aft.pipeline

    monkeypatch.setattr(hf_aft.pipeline, "train_student", lambda *a, **k: pytest.fail("models loaded"))
    cut_off = tmp_path / "run" / "checkpoint-10"  # kill -9 while Trainer wrote it: no trainer_state.json yet
    shutil.copytree(student_dir, cut_off)
    checkpoint = {"missing": tmp_path / "nowhere", "output_dir": first_run, "model_dir": student_dir,
                  "cut_off": cut_off}[given]
    code = main(train_args(student_dir, teacher_dirs, data, tmp_path / "out", "--resume_from_checkpoint",
                           str(checkpoint)))
    line = error_line(capsys)
    assert code == 2 and repr(str(checkpoint)) in line
    if given == "missing":
        assert "does not exist: give a checkpoint-* folder" in line
    elif given in ("model_dir", "cut_off"):
        assert "is not a checkpoint (it has no trainer_state.json)" in line
        assert ("cut off while being written" in line) == (given == "cut_off")
    else:  # the run's dir, not its checkpoint: the way out names the dir's last checkpoint
        assert "is an output dir" in line and f"its last is {str(first_run / 'checkpoint-4')!r}" in line


def test_a_resume_into_another_runs_output_dir_is_refused_and_leaves_it(student_dir, teacher_dirs, data, first_run,
                                                                         tmp_path, capsys):
    other = tmp_path / "other-run"
    shutil.copytree(first_run, other)  # a finished run that is not the checkpoint's
    before = {p: p.read_bytes() for p in other.rglob("*") if p.is_file()}
    code = main(train_args(student_dir, teacher_dirs, data, other, "--max_steps", "4", "--resume_from_checkpoint",
                           str(first_run / "checkpoint-2"), "--unlabeled_dataset", str(data / "pool.csv")))
    line = error_line(capsys)
    assert code == 2 and "already holds files" in line and "is not one of its checkpoints" in line
    assert repr(str(first_run)) in line  # the checkpoint's own output dir, as the way out
    assert {p: p.read_bytes() for p in other.rglob("*") if p.is_file()} == before


def test_a_resume_on_other_labelled_rows_is_refused(student_dir, teacher_dirs, data, first_run, tmp_path, capsys):
    other = tmp_path / "named"  # the same texts, labels as names: class 0 would become another class mid-run
    for split in ("train", "test"):
        rows = tiny.sentiment_dataset(32 if split == "train" else 16, seed=0 if split == "train" else 1)
        rows.map(lambda row: {"label": ["neg", "pos"][row["label"]]}).to_csv(other / f"{split}.csv")
    out = tmp_path / "out"
    shutil.copytree(first_run / "checkpoint-2", out / "checkpoint-2")
    args = train_args(student_dir, teacher_dirs, data, out, "--max_steps", "4", "--resume_from_checkpoint",
                      str(out / "checkpoint-2"), "--unlabeled_dataset", str(data / "pool.csv"))
    args[args.index("--dataset_name") + 1] = str(other)
    assert main(args) == 2
    line = error_line(capsys)
    assert "saved by a run with 32 labelled training rows of sha256 " in line
    assert "this command has 32 labelled training rows of sha256 " in line
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2"]


@pytest.mark.parametrize("script, config, named", [
    ({}, {"labeled_fraction": 0.3}, "--labeled_fraction 0.3"),
    ({"unlabeled_split": "extra"}, {}, "--unlabeled_split extra"),
    # In-memory data where the run reads a name: a traceback deep in the pipeline before (AFTTrainer takes them).
    ({"unlabeled_dataset": ["a text", "another"]}, {}, "--unlabeled_dataset takes a Hub id or a path, not a list"),
    ({"unlabeled_dataset": {"text": ["a text"]}}, {}, "--unlabeled_dataset takes a Hub id or a path, not a dict"),
    ({"unlabeled_dataset": ""}, {}, "unlabeled_dataset is empty"),  # trained without the pool, silently
])
def test_train_student_refuses_what_the_command_refuses(student_dir, data, tmp_path, script, config, named):
    """A run the command line would refuse writes no recipe that the command line cannot rerun."""
    from hf_aft import AFTConfig
    from hf_aft.pipeline import ScriptArguments, train_student

    with pytest.raises(AFTError, match=named):
        train_student(ScriptArguments(model_name_or_path=str(student_dir), dataset_name=str(data / "labelled"),
                                      **script),
                      AFTConfig(output_dir=str(tmp_path / "out"), report_to="none", use_cpu=True, **config))
    assert not (tmp_path / "out").exists()


def test_a_resume_with_other_teacher_features_is_refused(student_dir, teacher_dirs, data, first_run, tmp_path,
                                                         capsys):
    assert resume(student_dir, teacher_dirs, data, first_run, tmp_path, "--teacher_pooling", "cls") == 2
    line = error_line(capsys)
    assert "it was saved by a run with teacher features of mean pooling" in line
    assert "this command has teacher features of cls pooling" in line


def test_an_interrupt_without_checkpoints_says_the_training_steps_are_not_kept(tmp_path):
    """The interrupt line said "Run the same command again to go on" after 45 steps with no checkpoint, and the rerun
    trained from step 0: it says those steps are not kept, and how to keep checkpoints; with one, it says nothing."""
    from types import SimpleNamespace

    from hf_aft import faults
    from hf_aft.resume_check import say_steps_lost

    trainer = SimpleNamespace(state=SimpleNamespace(global_step=45), args=SimpleNamespace(output_dir=str(tmp_path)))
    for saved in (False, True):
        if saved:
            (tmp_path / "checkpoint-40").mkdir()
            (tmp_path / "checkpoint-40" / "trainer_state.json").write_text("{}")
        with pytest.raises(KeyboardInterrupt), say_steps_lost(trainer):
            raise KeyboardInterrupt
        line = faults.interrupted_line(KeyboardInterrupt())
        faults.lost.clear()
        assert ("not kept: the 45 training steps done (no checkpoint was saved: a rerun trains from step 0; "
                "--save_strategy steps --save_steps N keeps checkpoints" in line) is not saved


def test_an_interrupted_resume_names_the_newest_checkpoint_not_a_removed_folder(tmp_path):
    """A resumed run (its output dir there before it) stopped by a signal said "kept no output (an output dir this
    command created was removed)" beside 86 checkpoints: it names the newest, and a folder with none as it was."""
    from hf_aft import faults
    from hf_aft.claims import Claim, release

    for step in (4100, 8600):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    release(Claim(tmp_path, tmp_path / ".claim", "run", "train", created=False), failed=True)
    line = faults.interrupted_line(KeyboardInterrupt())
    faults.kept.clear()
    assert f"checkpoints in {tmp_path} (resume with --resume_from_checkpoint {tmp_path / 'checkpoint-8600'})" \
        in line and "removed" not in line
    bare = tmp_path / "bare"
    bare.mkdir()
    release(Claim(bare, bare / ".claim", "run", "train", created=False), failed=True)
    line = faults.interrupted_line(KeyboardInterrupt())
    faults.kept.clear()
    assert f"{bare} as it was before this command" in line and bare.is_dir()


def test_the_python_api_refuses_a_resume_with_other_options_as_the_command_does(student_dir, teacher_dirs, tmp_path):
    """AFTTrainer.train(resume_from_checkpoint=...) resumed a beta-0.1 checkpoint at beta 5 without a word, and its
    summary then said beta 5 for a run half made at 0.1; only `hf-aft train` checked the recorded options."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_aft import AFTConfig, AFTTrainer, tokenize_beside_features

    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    rows = tokenize_beside_features(tiny.sentiment_dataset(16, seed=0), tokenizer, max_length=32)

    def trainer(beta: float) -> AFTTrainer:
        args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[str(teacher_dirs[0])], beta=beta, max_steps=4,
                         save_strategy="steps", save_steps=2, per_device_train_batch_size=8, report_to="none",
                         disable_tqdm=True, use_cpu=True)
        student = AutoModelForSequenceClassification.from_pretrained(student_dir)
        return AFTTrainer(model=student, args=args, train_dataset=rows, processing_class=tokenizer)

    trainer(0.1).train()
    with pytest.raises(AFTError, match="saved by a run with --beta 0.1, and this command has --beta 5.0"):
        trainer(5.0).train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    trainer(0.1).train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))

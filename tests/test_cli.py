"""`hf-aft train` end to end on tiny models, and its one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import tiny
import yaml
from transformers import AutoModelForSequenceClassification

from hf_aft import AFTError
from hf_aft.commands import main


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    """A folder with train.csv and test.csv whose labels are strings (the head is sized and named from them)."""
    folder = tmp_path_factory.mktemp("data")
    for split, n, seed in (("train", 32, 0), ("test", 16, 1)):
        data = tiny.sentiment_dataset(n, seed=seed).map(lambda row: {"label": ["neg", "pos"][row["label"]]})
        data.to_csv(folder / f"{split}.csv")
    return folder


def train_args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            *map(str, teacher_dirs), "--output_dir", str(out), "--per_device_train_batch_size", "8",
            "--max_steps", "4", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", *extra]


def test_train_writes_a_loadable_student_scales_and_results(student_dir, teacher_dirs, csv_data, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(train_args(student_dir, teacher_dirs, csv_data, out, "--beta", "0.5")) == 0
    assert "student saved to" in capsys.readouterr().out
    for name in ("model.safetensors", "config.json", "tokenizer.json", "transfer_state.safetensors",
                 "train_results.json", "eval_results.json"):
        assert (out / name).exists(), name
    tiny.assert_readable_like_config(out)  # model and transfer_state: another account can serve the student
    results = json.loads((out / "eval_results.json").read_text())
    assert 0 <= results["eval_accuracy"] <= 1 and 0 <= results["eval_macro_f1"] <= 1
    student = AutoModelForSequenceClassification.from_pretrained(out)
    assert student.config.id2label == {0: "neg", 1: "pos"}
    assert json.loads((out / "transfer_summary.json").read_text())["beta"] == 0.5
    card = (out / "README.md").read_text()
    assert "teacher-a" in card and "teacher-b" in card and "eval_accuracy" not in card and "| accuracy |" in card


def test_yaml_config_supplies_defaults_and_flags_override_it(student_dir, teacher_dirs, csv_data, tmp_path):
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump({"model_name_or_path": str(student_dir), "dataset_name": str(csv_data),
                                      "teachers": [str(teacher_dirs[0])], "beta": 5.0, "transfer": "kd",
                                      "max_steps": 2, "per_device_train_batch_size": 4, "report_to": "none",
                                      "use_cpu": True}))
    out = tmp_path / "out"
    assert main(["train", "--config", str(config), "--output_dir", str(out), "--beta", "0.25"]) == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert (summary["transfer"], summary["beta"]) == ("kd", 0.25)
    assert [t["dim"] for t in summary["teachers"]] == [12]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "hf_aft", *args], capture_output=True, text=True, timeout=300)


def assert_one_line_error(returncode, stderr, *fragments):
    assert returncode == 2, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("hf-aft: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_input_ends_with_one_line_and_writes_nothing(student_dir, teacher_dirs, csv_data, tmp_path, capsys):
    out = tmp_path / "out"
    args = train_args(student_dir, teacher_dirs, csv_data, out)

    def fails(arguments, *fragments):
        returncode = main(arguments)
        assert_one_line_error(returncode, capsys.readouterr().err, *fragments)

    fails(args + ["--label_column", "sentiment"], "column 'sentiment' not found", "['text', 'label']")
    fails(args[:2] + [str(tmp_path / "nope")] + args[3:], "could not load the student", "nope")
    fails(train_args(student_dir, [tmp_path / "missing-teacher"], csv_data, out), "missing-teacher")
    fails(args + ["--teachers", str(tmp_path / "another")], "--teachers is given twice")
    fails(args + ["--transfer", "distill"], "unknown transfer 'distill'")
    fails(args + ["--beta", "-1"], "--beta must be a number >= 0 or auto")
    fails(args + ["--distill_temperature", "-inf"], "write --distill_temperature=VALUE")  # argparse: "-inf" is a flag
    fails(args + ["--per_device_train_batch_size", "1"], "--per_device_train_batch_size 3 or more")
    for flag, value, says in [("--adam_epsilon", "-1", ">= 0"), ("--adam_beta1", "1.5", "in [0, 1)"),  # were torch's
                              ("--label_smoothing_factor", "1.5", "in [0, 1)"),  # tracebacks after the teachers ran
                              ("--dataloader_num_workers", "-1", ">= 0")]:
        fails(args + [flag, value], f"{flag} must be {says}")
    # The real entry point, in a fresh process: one line on stderr, exit status 2, no traceback.
    result = run_cli(*args[:2], str(tmp_path / "nope"), *args[3:])
    assert_one_line_error(result.returncode, result.stderr, "could not load the student")
    assert not out.exists()

    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    fails(args, "already holds files")
    assert (out / "keep.txt").read_text() == "earlier work"



def test_a_mistyped_student_is_refused_before_any_teacher_runs(student_dir, teacher_dirs, csv_data, tmp_path,
                                                              capsys, monkeypatch):
    """A student folder that is not there (`student-3` for `student-3l`) was found only after the teachers' pass over
    the data: minutes of a large teacher lost, for a line that spoke of the network. It is refused first, and the
    line says to check the path."""
    from unittest import mock

    monkeypatch.chdir(tmp_path)
    with mock.patch("hf_aft.teachers.TextTeacher.load", side_effect=AssertionError("a teacher was loaded")):
        args = train_args(student_dir, teacher_dirs, csv_data, tmp_path / "out")
        assert main([args[0], args[1], "student-3", *args[3:]]) == 2
    assert_one_line_error(2, capsys.readouterr().err, "could not load the student 'student-3': not a local folder "
                          "(check the path)")
    assert not (tmp_path / "out").exists()


def test_help_and_errors_name_the_options_as_the_docs_write_them(capsys):
    """`hf-aft audit OUT`, `hf-aft student --from`, `--beta auto` in any case: the usage, the missing-argument line
    and a mistyped --beta say what the docs say (they named `--run`, `--source` and "invalid float value")."""
    for command, usage, missing in (("audit", "usage: hf-aft audit [-h] RUN", "required: RUN (first, or --run RUN)"),
                                    ("export", "usage: hf-aft export [-h] RUN", "required: RUN (first, or --run RUN)"),
                                    ("student", "--from SOURCE", "required: --from")):
        assert main([command, "--help"]) == 0
        shown = capsys.readouterr().out
        assert usage in shown and "--source" not in shown
        assert command == "student" or "  RUN, --run RUN        The output dir" in shown  # aligned
        assert not any(line.endswith("(default: None)") and ("RUN" in line or "SOURCE" in line)
                       for line in shown.replace("\n     ", " ").splitlines())  # a required option has no default
        assert main([command] + (["--num_layers", "2", "--output_dir", "x"] if command == "student" else [])) == 2
        assert_one_line_error(2, capsys.readouterr().err, missing)
    assert main(["push"]) == 2  # its output dir's other spelling, --output-dir, is not glued to the argument's name
    assert_one_line_error(2, capsys.readouterr().err, "required: OUTPUT_DIR (first, or --output_dir OUTPUT_DIR), "
                          "--hub_model_id")
    assert main(["train", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "(required). (default: None)" not in shown
    assert "  --beta BETA|auto      Weight of the transfer loss" in shown  # aligned as every other option
    assert "Turn learn_scales off (sets --learn_scales false)." in shown
    assert "present). (default" not in shown  # one default, in words
    from hf_aft.commands.train import parse_train_args

    required = ["--model_name_or_path", "s", "--dataset_name", "d", "--output_dir", "o"]
    assert parse_train_args([*required, "--beta", "AUTO"])[0].beta_auto
    for typo in ("autoo", "0.1x", "-1", "inf"):
        with pytest.raises(AFTError, match=rf"--beta must be a number >= 0 or auto \(got '{typo}'\)"):
            parse_train_args([*required, "--beta", typo])


def test_help_and_console_entry_point():
    result = run_cli("train", "--help")
    assert result.returncode == 0 and "--beta" in result.stdout and "--teachers" in result.stdout
    assert run_cli().returncode == 2


@pytest.mark.parametrize("recipe", sorted((Path(__file__).parents[1] / "trainers").glob("*.yaml")), ids=str)
def test_every_recipe_is_a_valid_config(recipe):
    import yaml

    from hf_aft.commands.train import parse_train_args

    unread = yaml.safe_load(recipe.read_text()).get("transfer") == "none"  # the STL recipe: teachers are refused
    script_args, config, _ = parse_train_args(["--config", str(recipe), *([] if unread else ["--teachers", "t"])])
    assert script_args.model_name_or_path and script_args.dataset_name and config.output_dir


def test_an_error_after_a_progress_bar_starts_a_line_of_its_own(capsys, monkeypatch):
    # in a log file the bar's last line ends in \r: grep '^hf-aft: error:' missed a NaN refusal written after it
    import sys

    from tqdm import tqdm

    from hf_aft.commands import _refuse
    from hf_aft.errors import AFTError

    monkeypatch.delenv("HF_AFT_DEBUG", raising=False)
    bar = tqdm(total=10, file=sys.stderr)
    bar.update(3)
    assert _refuse(AFTError("the task loss became nan at step 3")) == 2
    assert "\nhf-aft: error: the task loss became nan at step 3" in capsys.readouterr().err

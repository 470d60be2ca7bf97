"""Operating students over time (issue 14): recipe.yaml reruns a run exactly, audit.json and `hf-aft audit`, the cost
report, `hf-aft check-updates` with a local teacher that changes, and `hf-aft export` to ONNX (text, int8, LoRA,
image). The Hub side of check-updates and audit is in test_ops_hub.py."""

import hashlib
import json
import shutil
from pathlib import Path
from unittest import mock

import datasets
import pytest
import tiny
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from hf_aft.commands import main
from hf_aft.errors import AFTError
from hf_aft.reruns import check_sources

TIMING_KEYS = ("runtime", "per_second")


def train(student, data, out, *extra):
    args = ["train", "--model_name_or_path", str(student), "--dataset_name", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--max_steps", "4", "--report_to", "none", "--disable_tqdm", "true",
            "--use_cpu", "true", *extra]
    assert main(args) == 0


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.file_digest(open(p, "rb"), "sha256").hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def untimed(path: Path) -> dict:
    return {k: v for k, v in json.loads(path.read_text()).items() if not any(t in k for t in TIMING_KEYS)}


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    for split, n, seed in (("train", 32, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(folder / f"{split}.csv")
    return folder


@pytest.fixture(scope="module")
def aft_run(tmp_path_factory, teacher_dirs, student_dir, csv_data):
    out = tmp_path_factory.mktemp("runs") / "aft"
    train(student_dir, csv_data, out, "--teachers", str(teacher_dirs[0]), "--hub_token", "hf_notARealToken12345",
          "--seed", "3", "--learning_rate", "1e-3")
    return out


def test_recipe_reruns_the_same_student_from_cached_features(aft_run, teacher_dirs, tmp_path):
    text = (aft_run / "recipe.yaml").read_text()
    recipe = yaml.safe_load(text)
    assert "token" not in text and "hf_notARealToken" not in text
    assert recipe["teachers"] == [str(teacher_dirs[0])] and recipe["seed"] == 3 and recipe["learning_rate"] == 1e-3
    assert "output_dir" not in recipe and "fingerprint" in text  # split fingerprints in the header comments
    assert recipe["distill"] == "probe"  # what --distill auto resolved to: a rerun does not depend on that default

    rerun = tmp_path / "rerun"
    with mock.patch("hf_aft.teachers.TextTeacher.load", side_effect=AssertionError("a teacher was loaded")):
        assert main(["train", "--config", str(aft_run / "recipe.yaml"), "--output_dir", str(rerun),
                     "--skip_cost_report", "true"]) == 0
    old, new = load_file(aft_run / "model.safetensors"), load_file(rerun / "model.safetensors")
    assert old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old)
    assert untimed(aft_run / "eval_results.json") == untimed(rerun / "eval_results.json")
    assert not (rerun / "cost_report.json").exists()


def test_recipe_rerun_warns_when_a_local_teacher_is_not_the_runs_any_more(student_dir, csv_data, tmp_path,
                                                                          monkeypatch, caplog):
    """A recipe pins a Hub teacher to its commit but a local one only by name: a rerun says when that name now holds
    other weights, or (relative) leads to another folder, instead of silently training another student."""
    monkeypatch.chdir(tmp_path)
    tiny.save_teacher(tmp_path / "teachers" / "t", hidden=8, seed=0)
    first = tmp_path / "first"
    train(student_dir, csv_data, first, "--teachers", "teachers/t", "--skip_cost_report", "true")

    def rerun(out):
        caplog.clear()
        assert main(["train", "--config", str(first / "recipe.yaml"), "--output_dir", str(out),
                     "--skip_cost_report", "true"]) == 0
        return [r.getMessage() for r in caplog.records if "recipe's run" in r.getMessage()]

    assert rerun(tmp_path / "same") == []
    shutil.copytree(tmp_path / "teachers", tmp_path / "copy" / "teachers")
    monkeypatch.chdir(tmp_path / "copy")
    assert rerun(tmp_path / "copied") == []  # an identical copy elsewhere reproduces the run
    tiny.save_teacher(tmp_path / "elsewhere" / "teachers" / "t", hidden=8, seed=1)
    monkeypatch.chdir(tmp_path / "elsewhere")
    (line,) = rerun(tmp_path / "moved")
    assert line.startswith("hf-aft: teacher 'teachers/t' is ") and "will not reproduce" in line
    here, used = tmp_path / "elsewhere" / "teachers" / "t", tmp_path / "teachers" / "t"
    assert f"is {here} here, not the recipe's run's {used}, and differs" in line
    monkeypatch.chdir(tmp_path)
    tiny.save_teacher(tmp_path / "teachers" / "t", hidden=8, seed=5)  # new weights under the same name
    (line,) = rerun(tmp_path / "changed")
    assert "teacher 'teachers/t' changed since the recipe's run" in line and "will not reproduce" in line


def test_recipe_rerun_refuses_relative_sources_it_cannot_find_and_retrain_finds_them(student_dir, csv_data, tmp_path,
                                                                                     monkeypatch, capsys, caplog):
    """A recipe names local data, student and teachers as given: run from another directory a relative name leads
    nowhere (a missing `data` would be looked up on the Hub, whose offline cache can hold a dataset of that name), so
    the rerun is refused in one line naming the run's paths; `check-updates --retrain` names them itself."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(csv_data, tmp_path / "data")
    shutil.copytree(student_dir, tmp_path / "student")
    tiny.save_teacher(tmp_path / "teachers" / "t", hidden=8, seed=0)
    first = tmp_path / "runs" / "first"
    train("student", "data", first, "--teachers", "teachers/t", "--skip_cost_report", "true")
    record = json.loads((first / "audit.json").read_text())
    assert record["dataset"]["path"] == str(tmp_path / "data")
    assert record["student"]["path"] == str(tmp_path / "student")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["train", "--config", str(first / "recipe.yaml"), "--output_dir", "rerun"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("hf-aft: error: the recipe's run read ")
    for source in ("teacher 'teachers/t'", "dataset 'data'", "student 'student'"):
        assert source in error
    assert f"run it from {tmp_path}, or name the paths" in error and f"--dataset_name {tmp_path / 'data'}" in error
    assert not (elsewhere / "rerun").exists()

    tiny.save_teacher(tmp_path / "teachers" / "t", hidden=8, seed=5)  # an update to retrain with, from elsewhere
    assert main(["check-updates", str(first), "--retrain", "new"]) == 1
    new = json.loads((elsewhere / "new" / "audit.json").read_text())
    assert new["dataset"]["path"] == str(tmp_path / "data") and new["student"]["path"] == str(tmp_path / "student")
    assert new["splits"]["train"]["fingerprint"] == record["splits"]["train"]["fingerprint"]
    shutil.copytree(csv_data, elsewhere / "data")  # a folder of the same name here: said, not silently read
    tiny.sentiment_dataset(20, seed=4).to_csv(elsewhere / "data" / "train.csv")  # other rows: said after training
    caplog.clear()
    assert main(["train", "--config", str(first / "recipe.yaml"), "--output_dir", "same-name", "--model_name_or_path",
                 str(tmp_path / "student"), "--teachers", str(tmp_path / "teachers" / "t")]) == 0
    assert any(f"dataset 'data' is {elsewhere / 'data'} here, not the recipe's run's {tmp_path / 'data'}" in m
               for m in caplog.messages)
    (line,) = [m for m in caplog.messages if "split has" in m]
    assert line.startswith("hf-aft: the train split has 20 rows (") and "the recipe's run's had 32 rows (" in line
    tiny.sentiment_dataset(32, seed=0).map(  # one text edited in place: as many rows and labels, other content
        lambda row, i: {"text": row["text"] + (" indeed" if i == 0 else "")}, with_indices=True
    ).to_csv(elsewhere / "data" / "train.csv")
    caplog.clear()
    assert main(["train", "--config", str(first / "recipe.yaml"), "--output_dir", "edited", "--model_name_or_path",
                 str(tmp_path / "student"), "--teachers", str(tmp_path / "teachers" / "t")]) == 0
    (line,) = [m for m in caplog.messages if "split has" in m]
    assert "the train split has as many rows and labels as the recipe's run's, but other content" in line
    shutil.rmtree(elsewhere / "data")

    (tmp_path / "data").rename(tmp_path / "moved")  # the data moved: the way out is where it is now
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--config", str(first / "recipe.yaml"), "--output_dir", "lost"]) == 2
    error = capsys.readouterr().err
    assert f"dataset 'data' from {tmp_path / 'data'} (gone from there too)" in error
    assert "name where it is now (--dataset_name PATH)" in error and "run it from" not in error
    monkeypatch.chdir(elsewhere)
    assert main(["check-updates", str(first), "--retrain", "lost"]) == 2
    assert f"dataset 'data' is gone from {tmp_path / 'data'}" in capsys.readouterr().err
    assert main(["check-updates", str(first), "--retrain", "found", "--dataset_name", str(tmp_path / "moved")]) == 1
    assert json.loads((elsewhere / "found" / "audit.json").read_text())["dataset"]["path"] == str(tmp_path / "moved")
    shutil.rmtree(tmp_path / "teachers")  # check-updates has no option for a model: the way out is to put it back
    assert main(["check-updates", str(first)]) == 2
    assert f"is gone from {tmp_path / 'teachers' / 't'}, where the run read it: put it back" in capsys.readouterr().err


def test_a_rerun_refusal_names_several_teachers_after_one_flag(tmp_path, monkeypatch):
    """The way out must be a command line hf-aft takes: `--teachers A B` (`--teachers A, --teachers B` is refused)."""
    monkeypatch.chdir(tmp_path)
    then = [tmp_path / "then" / "teachers" / name for name in ("a", "b")]
    for folder in then:
        folder.mkdir(parents=True)
    sources = [{"role": "teacher", "spec": f"teachers/{p.name}", "path": str(p)} for p in then]
    with pytest.raises(AFTError) as refused:
        check_sources(sources)
    way_out = f"run it from {tmp_path / 'then'}, or name the paths (--teachers {then[0]} {then[1]})."
    assert way_out in str(refused.value)


def test_beta_auto_recipe_names_the_chosen_beta(student_dir, teacher_dirs, csv_data, tmp_path):
    out = tmp_path / "auto"
    train(student_dir, csv_data, out, "--teachers", str(teacher_dirs[0]), "--beta", "auto",
          "--beta_validation_fraction", "0.65", "--skip_cost_report", "true")
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    chosen = json.loads((out / "beta_search.json").read_text())["chosen_beta"]
    assert recipe["beta"] == chosen and "beta_auto" not in recipe and "beta_validation_fraction" not in recipe
    assert f"# this run's beta = {chosen:g} (chosen by --beta auto" in (out / "recipe.yaml").read_text()
    # A rerun trains once with that beta: the recipe holds nothing that only --beta auto uses (which a fixed beta
    # refuses), even when the search ran on a named validation split.
    data = tmp_path / "data"
    data.mkdir()
    for split, n, seed in (("train", 32, 0), ("validation", 24, 2), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(data / f"{split}.csv")
    named = tmp_path / "named"
    train(student_dir, data, named, "--teachers", str(teacher_dirs[0]), "--beta", "auto",
          "--beta_validation_split", "validation", "--skip_cost_report", "true")
    assert "beta_validation_split" not in yaml.safe_load((named / "recipe.yaml").read_text())
    assert main(["train", "--config", str(named / "recipe.yaml"), "--output_dir", str(tmp_path / "rerun"),
                 "--skip_cost_report", "true"]) == 0


def test_audit_record_card_and_verification(aft_run, teacher_dirs, tmp_path, capsys):
    record = json.loads((aft_run / "audit.json").read_text())
    assert {"versions", "device", "started", "ended", "splits", "teachers", "feature_cache_fingerprint", "student",
            "metrics", "files"} <= set(record)
    assert record["splits"]["train"]["rows"] == 32 and record["splits"]["eval"]["labels"] == {"0": 8, "1": 8}
    teacher = record["teachers"][0]
    assert teacher["resolved_revision"].startswith("local-") and teacher["requested_revision"] is None
    assert teacher["weight_files"] == {"model.safetensors": digests(teacher_dirs[0])["model.safetensors"]}
    assert set(record["files"]) == set(digests(aft_run)) - {"audit.json", "hf_aft_complete.json"}
    # audit.json holds the hashes; hf_aft_complete.json is written after it (the run's last write)
    unsealed = ("audit.json", "hf_aft_complete.json")
    assert record["files"] == {k: v for k, v in digests(aft_run).items() if k not in unsealed}
    card = (aft_run / "README.md").read_text()
    for text in ("## Audit", "[audit.json](audit.json)", record["files"]["model.safetensors"], "## Cost and benefit"):
        assert text in card, text

    assert main(["audit", str(aft_run)]) == 0
    out = capsys.readouterr().out
    assert "unchanged" in out and "local-" in out and "split train" in out

    copy = tmp_path / "copy"
    shutil.copytree(aft_run, copy)
    weights = bytearray((copy / "model.safetensors").read_bytes())
    weights[-1] ^= 1
    (copy / "model.safetensors").write_bytes(bytes(weights))
    (copy / "tokenizer.json").unlink()
    (copy / "extra.bin").write_bytes(b"x")
    assert main(["audit", str(copy)]) == 1
    lines = capsys.readouterr().out.splitlines()
    for line in ("changed  model.safetensors", "missing  tokenizer.json", "added    extra.bin"):
        assert line in lines, lines
    assert main(["audit", str(tmp_path / "nowhere")]) == 2


def test_cost_report_measures_student_and_teachers(aft_run, capsys):
    report = json.loads((aft_run / "cost_report.json").read_text())
    student, (teacher,) = report["student"], report["teachers"]
    for row in (student, teacher):
        assert row["parameters"] > 0 and row["bytes"] > 0
        assert row["latency_ms_batch1"] > 0 and row["throughput_batch32"] > 0
    assert 0 <= teacher["probe_accuracy"] <= 1 and student["eval_accuracy"] is not None
    assert report["device"].startswith(("cpu", "cuda")) and report["training_seconds"] > 0
    assert report["timing_threads"] == 1 and student["timed_calls_batch1"] >= teacher["timed_calls_batch1"] >= 1
    assert len(report["summary"]) == 1 and "probe accuracy" in report["summary"][0]
    assert " at batch 1 " in report["summary"][0] and " at batch 32" in report["summary"][0]
    assert report["summary"][0] in (aft_run / "README.md").read_text()


def test_check_updates_with_a_local_teacher_that_changes(student_dir, teacher_dirs, csv_data, tmp_path, capsys):
    teacher, old, new = tmp_path / "teacher", tmp_path / "old", tmp_path / "new"
    shutil.copytree(teacher_dirs[0], teacher)
    train(student_dir, csv_data, old, "--teachers", str(teacher), "--skip_cost_report", "true")
    assert main(["check-updates", str(old)]) == 0
    assert "(unchanged)" in capsys.readouterr().out

    tiny.save_teacher(teacher, hidden=12, seed=7)  # new weights, same folder
    before = digests(old)
    assert main(["check-updates", str(old)]) == 1
    assert " -> local-" in capsys.readouterr().out
    assert main(["check-updates", str(old), "--retrain", str(new)]) == 1
    out = capsys.readouterr().out
    assert "agreement" in out and "retrained into" in out
    assert digests(old) == before  # the old run is never modified

    report = json.loads((new / "update_report.json").read_text())
    assert report["teachers"][0]["changed"] and 0 <= report["agreement"] <= 1
    assert set(report["per_class_recall"]) == {"0", "1"} and {"accuracy", "macro_f1"} <= set(report["new"])
    card = (new / "README.md").read_text()
    assert "## History" in card and str(old) in card
    assert main(["check-updates", str(new)]) == 0  # the new run has the new teacher
    assert main(["audit", str(new)]) == 0


def test_check_updates_follows_the_student_it_was_made_from_and_a_retrain_names_other_data(
        student_dir, teacher_dirs, csv_data, tmp_path, capsys):
    """A local student folder changed since the run: check-updates said "nothing changed"; labels edited in the data:
    a retrain trained on them, its card blaming the models alone."""
    student, data, old, new = tmp_path / "student", tmp_path / "data", tmp_path / "old", tmp_path / "new"
    shutil.copytree(student_dir, student)
    shutil.copytree(csv_data, data)
    train(student, data, old, "--teachers", str(teacher_dirs[0]), "--skip_cost_report", "true")
    tiny.save_student(student, seed=9)  # other weights, same folder
    assert main(["check-updates", str(old)]) == 1
    assert f"student {student}: local-" in capsys.readouterr().out
    flipped = datasets.load_dataset("csv", data_files=str(data / "train.csv"), split="train")
    flipped.map(lambda row: {"label": 1 - row["label"]}).to_csv(data / "train.csv")  # every label flipped
    assert main(["check-updates", str(old), "--retrain", str(new)]) == 1
    assert "as many rows and labels as the recipe's run's, but other content" in capsys.readouterr().out
    report = json.loads((new / "update_report.json").read_text())
    assert report["other_models"][0]["role"] == "student" and len(report["data_changes"]) == 1
    card = (new / "README.md").read_text()
    assert f"- student `{student}`" in card and "Its data was not the old run's either" in card
    assert main(["audit", str(new)]) == 0
    shutil.move(data, tmp_path / "moved")  # the run's data elsewhere now: still compared with the run's
    assert main(["check-updates", str(old), "--retrain", str(tmp_path / "new2"), "--dataset_name",
                 str(tmp_path / "moved")]) == 1
    assert "as many rows and labels as the recipe's run's, but other content" in capsys.readouterr().out


def test_check_updates_follows_a_local_model_by_the_path_and_spelling_it_trained_with(tmp_path, monkeypatch):
    """A GGUF file keeps the spelling it was given (a path, or FOLDER::FILE.gguf); a relative path is followed at the
    absolute path recorded when the run trained, wherever check-updates runs, and kept as given where it still leads
    there (so that a retrain reuses the unchanged teachers' features)."""
    from hf_aft.audit import model_record
    from hf_aft.provenance import current_revision
    from hf_aft.updates import tracked_spec

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "m.gguf").write_bytes(b"GGUF not really")
    elsewhere = tmp_path / "elsewhere" / "models"
    elsewhere.mkdir(parents=True)
    (elsewhere / "m.gguf").write_bytes(b"another model of the same name")
    monkeypatch.chdir(tmp_path)
    records = {spec: model_record(spec, current_revision(spec, "generator"), name=spec)
               for spec in ("models/m.gguf", "models::m.gguf", str(tmp_path / "models" / "m.gguf"))}
    assert {spec: tracked_spec(record) for spec, record in records.items()} == {spec: spec for spec in records}
    monkeypatch.chdir(tmp_path / "elsewhere")  # where a relative path leads to another model
    assert tracked_spec(records["models/m.gguf"]) == str(tmp_path / "models" / "m.gguf")
    assert tracked_spec(records["models::m.gguf"]) == f"{tmp_path / 'models'}::m.gguf"
    assert current_revision(tracked_spec(records["models/m.gguf"])) == records["models/m.gguf"]["resolved_revision"]


@pytest.fixture(scope="module")
def image_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images") / "data"
    datasets.DatasetDict({"train": tiny.image_dataset(16, 0), "test": tiny.image_dataset(8, 1)}).save_to_disk(folder)
    return folder


def test_export_text_student_to_onnx_with_int8(aft_run, tmp_path, capsys):
    target = tmp_path / "export"
    assert main(["export", str(aft_run), "--output_dir", str(target), "--quantize", "dynamic-int8"]) == 0
    assert "onnx dynamic-int8" in capsys.readouterr().out
    for name in ("model.onnx", "model_int8.onnx", "tokenizer.json", "config.json", "README.md", "export_report.json"):
        assert (target / name).exists(), name
    report = json.loads((target / "export_report.json").read_text())
    pytorch, onnx, int8 = report["rows"]
    assert report["exporter"] in ("dynamo", "torchscript") and report["eval_rows"] == 16
    assert onnx["agreement"] == 1.0 and onnx["max_logit_difference"] < 1e-4
    assert int8["agreement"] >= 0.9 and onnx["accuracy"] == pytorch["accuracy"]
    assert "onnxruntime.InferenceSession" in (target / "README.md").read_text()
    assert f"truncation=True, max_length={report['max_length']}" in (target / "README.md").read_text()  # as trained
    longer = tmp_path / "longer"  # a run asked --max_length past its student's position table: cut there, as trained
    shutil.copytree(aft_run, longer)
    recipe = (longer / "recipe.yaml").read_text()
    assert "max_length: 128\n" in recipe
    (longer / "recipe.yaml").write_text(recipe.replace("max_length: 128\n", "max_length: 4096\n"))
    assert main(["export", str(longer), "--output_dir", str(tmp_path / "export-longer")]) == 0
    positions = json.loads((aft_run / "config.json").read_text())["max_position_embeddings"]
    assert json.loads((tmp_path / "export-longer" / "export_report.json").read_text())["max_length"] == positions
    assert main(["export", str(aft_run), "--output_dir", str(aft_run / "onnx")]) == 2  # audit, push would take it
    assert "is inside the run" in capsys.readouterr().err and not (aft_run / "onnx").exists()
    (tmp_path / "link").symlink_to(aft_run)  # the run by another name
    assert main(["export", str(aft_run), "--output_dir", str(tmp_path / "link" / "onnx")]) == 2
    assert "is inside the run" in capsys.readouterr().err and not (aft_run / "onnx").exists()

    with mock.patch("torch.onnx.export", side_effect=RuntimeError("unsupported op")):
        assert main(["export", str(aft_run), "--output_dir", str(tmp_path / "fails")]) == 2
    err = capsys.readouterr().err
    assert err.count("hf-aft: error:") == 1 and "cannot export this bert student to ONNX" in err
    assert main(["export", str(aft_run), "--output_dir", str(tmp_path / "q"), "--quantize", "int4"]) == 2


def test_export_lora_and_image_students(student_dir, csv_data, image_data, tmp_path, monkeypatch, capsys):
    lora = tmp_path / "lora"
    train(student_dir, csv_data, lora, "--transfer", "none", "--use_peft", "--lora_r", "2", "--lora_alpha", "4",
          "--skip_cost_report", "true")
    assert main(["export", str(lora), "--output_dir", str(tmp_path / "lora-onnx")]) == 0
    report = json.loads((tmp_path / "lora-onnx" / "export_report.json").read_text())
    assert report["rows"][1]["agreement"] == 1.0  # the merged adapter, as the PyTorch student with its adapter
    names = json.loads((lora / "model_card.json").read_text())["labels"]  # the adapter's files hold no names
    exported = json.loads((tmp_path / "lora-onnx" / "config.json").read_text())["id2label"]
    assert [exported[str(i)] for i in range(len(names))] == names and not names[0].startswith("LABEL_")

    vit = tiny.save_image_student(tmp_path / "vit-init", "vit")
    image = tmp_path / "vit"
    train(vit, image_data, image, "--image_column", "image", "--transfer", "none")
    assert json.loads((image / "cost_report.json").read_text())["student"]["latency_ms_batch1"] > 0
    assert main(["export", str(image), "--output_dir", str(tmp_path / "vit-onnx")]) == 0
    target = tmp_path / "vit-onnx"
    assert (target / "preprocessor_config.json").exists()
    assert json.loads((target / "export_report.json").read_text())["rows"][1]["max_logit_difference"] < 1e-4
    # the README's example, on the kinds of file the student trained on (it failed on grayscale and RGBA: "mean must
    # have 1 elements")
    snippet = (target / "README.md").read_text().split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(target)
    for mode in ("L", "RGBA", "RGB", "I;16"):
        Image.new(mode, (20, 24), 40000 if mode == "I;16" else None).save(target / "cat.png")
        exec(snippet, namespace := {})
        if mode == "I;16":  # 40000 of 65535: mid-grey as training reads it (PIL's own convert gave white)
            assert namespace["image"].getpixel((0, 0)) == (40000 >> 8,) * 3
    assert capsys.readouterr().out.count("['") >= 4  # a class name printed per file


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-aft: error:"), err
    return err[0]


def test_export_refuses_a_run_that_did_not_finish(aft_run, tmp_path, capsys):
    """A run folder without hf_aft_complete.json (stopped or interrupted) was exported (exit 0); `hf-aft push`
    refuses it, and so does export now, before anything is written."""
    run = tmp_path / "stopped"
    shutil.copytree(aft_run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    (run / "hf_aft_complete.json").unlink()
    before = digests(run)
    assert main(["export", str(run), "--output_dir", str(tmp_path / "onnx")]) == 2
    line = one_error(capsys)
    assert "is not a finished hf-aft train run (no hf_aft_complete.json" in line and "--resume_from_checkpoint" in line
    assert not (tmp_path / "onnx").exists() and digests(run) == before


def test_a_run_and_features_never_share_a_folder_and_push_refuses_one_that_does(aft_run, teacher_dirs, student_dir,
                                                                              csv_data, tmp_path, capsys):
    """`hf-aft features --overwrite_output_dir` into a finished run's folder left dataset_dict.json beside the model,
    and `hf-aft push` then uploaded all of it, the model too, to a dataset repo."""
    run, features = tmp_path / "run", tmp_path / "features"
    shutil.copytree(aft_run, run, ignore=shutil.ignore_patterns("checkpoint-*"))
    before = digests(run)
    argv = ["features", "--teachers", str(teacher_dirs[0]), "--dataset_name", str(csv_data), "--output_dir"]
    for extra in ([], ["--overwrite_output_dir", "true"]):  # without the flag too: not "pass --overwrite_output_dir"
        assert main([*argv, str(run), *extra]) == 2
        line = one_error(capsys)
        assert f"--output_dir {str(run)!r} holds a training run or model (hf_aft_complete.json)" in line
        assert "give the features their own --output_dir" in line and digests(run) == before

    assert main([*argv, str(features)]) == 0
    capsys.readouterr()
    saved = digests(features)
    for command in (["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(csv_data)],
                    ["student", "--from", str(student_dir), "--num_layers", "1"]):
        assert main([*command, "--output_dir", str(features), "--overwrite_output_dir", "true"]) == 2
        line = one_error(capsys)
        assert "holds a saved dataset (dataset_dict.json" in line and "give the student its own --output_dir" in line
        assert digests(features) == saved
    one_split = tmp_path / "one-split"  # a single Dataset's save_to_disk (state.json, dataset_info.json): likewise
    tiny.sentiment_dataset(8).save_to_disk(str(one_split))
    kept, _ = digests(one_split), capsys.readouterr()
    assert main(["student", "--from", str(student_dir), "--num_layers", "1", "--output_dir", str(one_split),
                 "--overwrite_output_dir", "true"]) == 2
    assert "holds a saved dataset (state.json" in one_error(capsys) and digests(one_split) == kept

    mixed = tmp_path / "mixed"  # as earlier versions left it
    shutil.copytree(run, mixed)
    shutil.copytree(features, mixed, dirs_exist_ok=True)
    with mock.patch("hf_aft.hub.push_folder", side_effect=AssertionError("pushed")), \
            mock.patch("hf_aft.hub.push_run", side_effect=AssertionError("pushed")):
        assert main(["push", str(mixed), "--hub_model_id", "org/name"]) == 2
    line = one_error(capsys)
    assert "holds both a training run (hf_aft_complete.json) and features" in line and "push cannot tell" in line


def test_a_student_no_better_than_the_majority_class_is_said_not_to_have_learned(caplog):
    """A student predicting one class everywhere scored 0.29 where always answering the majority class scores 0.71,
    and the card and summary read it as a result."""
    from hf_aft.metrics import say_below_majority

    train, evaluation = [1] * 56 + [0] * 64, [0] * 57 + [1] * 23
    say_below_majority(0.2875, train, evaluation, ["neg", "pos"])
    assert "eval accuracy 0.2875 is no better than always answering the training split's most frequent class " \
           "'neg' (0.7125)" in caplog.text
    caplog.clear()
    say_below_majority(0.80, train, evaluation, ["neg", "pos"])
    assert not caplog.text


@pytest.mark.parametrize("lacks", ["label column", "split"])
def test_commands_that_read_a_runs_recipe_name_a_way_out_they_accept(lacks, aft_run, tmp_path, capsys):
    """`hf-aft export RUN --dataset_name DATA` with data lacking the run's label column ended "Pass --label_column
    naming it", a flag export does not have; so did check-updates and audit --group_column, which read the recipe the
    same way. Their one way out is --dataset_name."""
    data = tmp_path / "other"
    data.mkdir()
    rows = tiny.sentiment_dataset(16, seed=1)
    if lacks == "label column":
        rows.rename_column("label", "score").to_csv(data / "test.csv")
        rows.rename_column("label", "score").to_csv(data / "train.csv")
    else:  # the recipe names no eval split; its train split is missing
        rows.to_csv(data / "test.csv")
        rows.to_csv(data / "validation.csv")
    commands = [["export", str(aft_run), "--output_dir", str(tmp_path / "onnx")],
                ["audit", str(aft_run), "--group_column", "text"],
                ["check-updates", str(aft_run), "--retrain", str(tmp_path / "new")]]
    for argv in commands:
        with mock.patch("hf_aft.commands.train.train", side_effect=AssertionError("retrained")):
            assert main([*argv, "--dataset_name", str(data)]) == 2, argv
        error = tiny.error_line(capsys)
        assert "--label_column" not in error and "--train_split" not in error and "--eval_split" not in error, error
        assert error.lower().endswith("the run was trained with it (recipe.yaml): give --dataset_name data that has "
                                      "it."), error
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())


def test_export_and_push_name_a_model_folder_no_run_wrote(student_dir, tmp_path, capsys):
    """`hf-aft export` of a plain model folder said it "is not a finished hf-aft train run (... the run stopped or
    failed before the end): finish it with --resume_from_checkpoint": it never was a run."""
    for argv in (["export", str(student_dir), "--output_dir", str(tmp_path / "onnx")],
                 ["push", str(student_dir), "--hub_model_id", "me/student"]):
        assert main(argv) == 2
        line = one_error(capsys)
        assert f"'{student_dir}' is not an hf-aft run folder" in line and "--resume_from_checkpoint" not in line
        assert line.endswith("give the output dir of `hf-aft train`."), line
    assert not (tmp_path / "onnx").exists()


def test_a_retrain_on_data_without_the_recipes_group_column_names_the_recipe_and_the_data(tmp_path):
    """check-updates --retrain on data lacking the recipe's --group_column said "name one of those"; following it
    (--group_column g2) was refused again about the recipe's column, which the retrain replays."""
    import datasets

    from hf_aft.updates import group_options

    (tmp_path / "recipe.yaml").write_text("group_column: [grp]\neval_split: test\n")
    split = datasets.Dataset.from_dict({"text": ["a", "b"] * 4, "g2": ["x", "y"] * 4, "label": [0, 1] * 4})
    for given in (None, ["g2"]):
        with pytest.raises(AFTError) as refused:
            group_options(str(tmp_path), given, 2, split=split)
        message = str(refused.value)
        assert "the run's recipe names --group_column 'grp'" in message and "give --dataset_name data" in message
        assert "name one of those" not in message and "only the comparison's groups" in message

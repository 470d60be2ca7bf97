"""The Hub round trip with the real `huggingface_hub` client over HTTP, against the loopback emulation of the Hub API
in tests/hub_server.py: teachers pulled at a tag and at a sha, students pushed (train --push_to_hub, hf-aft push) and
loaded back with `from_pretrained`, their card, failed pushes and the retry, and that no token is ever pushed.

What this covers: the Hub API contract as the installed client uses it (model_info, resolve, tree, create repo,
branch, validate-yaml, preupload, NDJSON commit). What it cannot cover: huggingface.co itself (its permissions,
limits, server-side validation) and file transfer through Xet or LFS (the emulation answers every preupload with
`regular`, and the tests run with HF_HUB_DISABLE_XET=1, so file contents travel base64 in the commit).
"""

import json
from pathlib import Path
from unittest import mock

import huggingface_hub
import numpy as np
import pytest
import tiny
from hub_server import FakeHub
from safetensors.numpy import load_file
from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

from hf_aft import AFTConfig, AFTError, AFTTrainer, extract_teacher_features, read_teacher_infos
from hf_aft.commands import main
from hf_aft.hub_reach import unreachable_because

TOKEN = "hf_emulatedSecretToken0123456789"


@pytest.fixture
def hub(monkeypatch):
    """The emulation at HF_ENDPOINT (set in conftest before huggingface_hub was imported), online, with a token."""
    port = int(huggingface_hub.constants.ENDPOINT.rsplit(":", 1)[1])
    unreachable_because.cache_clear()  # another test may have found the emulation stopped
    with FakeHub(port) as server:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server
    assert not server.unhandled, f"the client called endpoints the emulation lacks: {server.unhandled}"


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def publish_teachers(hub, teacher_dirs) -> tuple[str, str]:
    """org/teacher: tag v1.0 holds teacher-a (width 12), main then moves on to teacher-b (width 8)."""
    hub.create_repo("org/teacher")
    first = hub.commit("org/teacher", folder_files(teacher_dirs[0]), "teacher a")
    hub.tag("org/teacher", "v1.0")
    second = hub.commit("org/teacher", folder_files(teacher_dirs[1]), "teacher b")
    return first, second


@pytest.fixture(scope="module")
def csv_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    for split, n, seed in (("train", 32, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(folder / f"{split}.csv")
    return folder


def train(student_dir, data, out, *extra):
    args = ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--max_steps", "4", "--report_to", "none", "--disable_tqdm", "true",
            "--use_cpu", "true", *extra]
    assert main(args) == 0


def one_error_line(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_teachers_pulled_at_a_tag_and_at_a_sha_record_and_load_that_commit(hub, teacher_dirs, tmp_path):
    tagged, latest = publish_teachers(hub, teacher_dirs)
    data = tiny.sentiment_dataset(8)
    local = [np.asarray(extract_teacher_features(data, [str(d)], cache_dir=tmp_path)["teacher_features"])
             for d in teacher_dirs]

    for spec, sha, expected in (("org/teacher@v1.0", tagged, local[0]), (f"org/teacher@{latest}", latest, local[1]),
                                ("org/teacher", latest, local[1])):
        pulled = extract_teacher_features(data, [spec], cache_dir=tmp_path)
        info = read_teacher_infos(pulled)[0]
        assert (info.name, info.revision, info.dim) == ("org/teacher", sha, expected.shape[1]), spec
        np.testing.assert_allclose(np.asarray(pulled["teacher_features"]), expected, atol=1e-6)
    # Files were fetched at the resolved sha, never by the tag or branch name.
    fetched = {path.split("/")[4] for method, path in hub.requests if "/org/teacher/resolve/" in path}
    assert fetched == {tagged, latest}

    with pytest.raises(AFTError, match="teacher 'org/teacher' has no revision 'v9.9' on the Hub"):
        extract_teacher_features(data, ["org/teacher@v9.9"], cache_dir=tmp_path)


def test_teacher_remote_code_runs_only_when_asked(teacher_dirs, tmp_path):
    data = tiny.sentiment_dataset(4)
    for trust in (False, True):
        with mock.patch.object(AutoModel, "from_pretrained", wraps=AutoModel.from_pretrained) as load:
            extract_teacher_features(data, [str(teacher_dirs[0])], cache_dir=tmp_path / str(trust),
                                     trust_remote_code=trust)
        assert load.call_args.kwargs["trust_remote_code"] is trust


def test_train_push_to_hub_publishes_a_reloadable_student_with_its_card_and_no_token(
        hub, teacher_dirs, student_dir, csv_data, tmp_path, capsys):
    tagged, _ = publish_teachers(hub, teacher_dirs)
    stl, out = tmp_path / "stl", tmp_path / "aft"
    train(student_dir, csv_data, stl, "--transfer", "none")
    train(student_dir, csv_data, out, "--teachers", "org/teacher@v1.0", "--beta", "0.5", "--baseline_dir", str(stl),
          "--save_strategy", "steps", "--save_steps", "2", "--push_to_hub", "true", "--hub_model_id", "org/student",
          "--hub_token", TOKEN, "--hub_private_repo", "true")
    assert "pushed to the Hub: " in capsys.readouterr().out

    pushed = hub.files("org/student")
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md",
                 "transfer_state.safetensors", "transfer_summary.json", "model_card.json", "scales.png",
                 "eval_results.json"):
        assert name in pushed, name
    assert hub.repos["org/student"].private
    # Checkpoints and the pickled training arguments stay home: the latter really holds the token.
    assert (out / "checkpoint-2").is_dir() and TOKEN.encode() in (out / "training_args.bin").read_bytes()
    assert not any(p.startswith("checkpoint-") or p == "training_args.bin" for p in pushed)
    assert not [p for p, content in pushed.items() if TOKEN.encode() in content]

    card = pushed["README.md"].decode()
    for text in ("`org/teacher`", f"`{tagged}`", "| 12 |", "beta = 0.5", "![Distribution of the learned scales per "
                 "teacher](scales.png)", 'from_pretrained("org/student")', "STL baseline", "2406.07337"):
        assert text in card, text
    assert pushed["scales.png"].startswith(b"\x89PNG")
    meta = huggingface_hub.ModelCard(card).data.to_dict()
    assert "adaptive-feature-transfer" in meta["tags"] and meta["model_name"] == "org/student"
    # The data was a local folder: no Hub dataset id to point at, so no datasets / model-index entry (issue 11).
    assert "datasets" not in meta and "model-index" not in meta

    reloaded = AutoModelForSequenceClassification.from_pretrained("org/student")
    saved = load_file(out / "model.safetensors")
    for key, value in reloaded.state_dict().items():
        if key in saved:
            np.testing.assert_array_equal(value.numpy(), saved[key])
    assert AutoTokenizer.from_pretrained("org/student")("good movie")["input_ids"]


def test_failed_push_says_one_line_keeps_the_output_dir_and_hf_aft_push_then_succeeds(
        hub, teacher_dirs, student_dir, csv_data, tmp_path, capsys):
    out = tmp_path / "out"
    train(student_dir, csv_data, out, "--teachers", str(teacher_dirs[0]))
    capsys.readouterr()
    before = folder_files(out)
    push = ["push", str(out), "--hub_model_id", "org/s2"]

    hub.fail_once("POST", "/commit/", 500)  # the server fails the commit
    assert main(push) == 2
    one_error_line(capsys, "push to 'org/s2' failed", "500", f"hf-aft push {out} --hub_model_id org/s2")
    hub.stop()  # the network is cut
    assert main(push) == 2
    one_error_line(capsys, "push to 'org/s2' failed", "the Hub is unreachable", "Connect",
                   "where the Hub can be reached")
    after = folder_files(out)
    assert set(before) <= set(after)
    for name in ("model.safetensors", "config.json", "transfer_state.safetensors", "eval_results.json"):
        assert after[name] == before[name]

    hub.start()
    (out / "notes.txt").write_text(f"token={TOKEN}")  # a file that would leak the token is refused, nothing is sent
    commits = sum(1 for _, path in hub.requests if "/commit/" in path)
    assert main(push) == 2
    one_error_line(capsys, "'notes.txt'", "contains your Hub token")
    assert sum(1 for _, path in hub.requests if "/commit/" in path) == commits
    (out / "notes.txt").unlink()

    assert main(push) == 0
    assert "pushed" in capsys.readouterr().out
    pushed = hub.files("org/s2")
    assert {"model.safetensors", "README.md", "scales.png", "transfer_state.safetensors"} <= set(pushed)
    assert 'from_pretrained("org/s2")' in pushed["README.md"].decode()  # the card was rendered for this repo
    assert json.loads(pushed["model_card.json"])["repo_id"] == "org/s2"

    assert main(push + ["--revision", "dev", "--commit_message", "second try"]) == 0
    assert hub.files("org/s2", "dev")["model.safetensors"] == pushed["model.safetensors"]


def test_push_publishes_a_run_only_as_it_was_written_and_a_hand_edited_card_with_keep_card(
        hub, teacher_dirs, student_dir, csv_data, tmp_path, capsys, monkeypatch):
    """A card edited by hand was rendered again and the edits lost; changed weights went up beside a card stating
    the old sha256; a read-only run was refused as a full disk."""
    out = tmp_path / "out"
    train(student_dir, csv_data, out, "--teachers", str(teacher_dirs[0]), "--skip_cost_report", "true")
    capsys.readouterr()
    push = ["push", str(out), "--hub_model_id", "org/edited"]
    weights = (out / "model.safetensors").read_bytes()
    (out / "model.safetensors").write_bytes(weights[:-1] + bytes([weights[-1] ^ 1]))
    (out / "notes.md").write_text("mine")
    assert main(push) == 2
    one_error_line(capsys, "is not as its run wrote it (changed model.safetensors; added notes.md)", "false sha256")
    (out / "model.safetensors").write_bytes(weights)
    (out / "notes.md").unlink()
    (out / "README.md").write_text((out / "README.md").read_text() + "\n## Intended use\n\nOur tickets only.\n")
    assert main(push) == 2
    one_error_line(capsys, "was edited since the run", "--keep_card")
    with mock.patch("os.access", return_value=False):
        assert main(push + ["--keep_card"]) == 2
    one_error_line(capsys, "is read-only", "cp -r")
    assert not hub.requests or not any("/commit/" in path for _, path in hub.requests)  # nothing was sent
    assert main(push + ["--keep_card"]) == 0
    assert "Our tickets only." in hub.files("org/edited")["README.md"].decode()
    assert main(["audit", "org/edited"]) == 0 and main(["audit", str(out)]) == 0


def test_push_refuses_what_is_not_a_student(hub, tmp_path, capsys):
    assert main(["push", str(tmp_path / "missing"), "--hub_model_id", "org/x"]) == 2
    one_error_line(capsys, "does not exist")
    (tmp_path / "empty").mkdir()
    assert main(["push", str(tmp_path / "empty"), "--hub_model_id", "org/x"]) == 2
    one_error_line(capsys, "holds no saved student")
    assert main(["push", str(tmp_path / "empty"), "--hub_model_id", "not a repo id"]) == 2
    one_error_line(capsys, "is not a valid repo id")
    assert not hub.requests


def test_trainer_push_to_hub_pushes_the_finished_student_only(hub, teacher_dirs, student_dir, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = tiny.sentiment_dataset(16).map(lambda batch: tokenizer(batch["text"]), batched=True)
    args = AFTConfig(output_dir=str(tmp_path / "out"), teachers=[str(teacher_dirs[0])], per_device_train_batch_size=8,
                     max_steps=2, save_strategy="steps", save_steps=1, report_to="none", use_cpu=True,
                     disable_tqdm=True, push_to_hub=True, hub_model_id="org/py-student", hub_token=TOKEN)
    trainer = AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir), args=args,
                         train_dataset=data, processing_class=tokenizer)
    trainer.train()
    assert "org/py-student" not in hub.repos  # no repo, no checkpoint pushes while training

    url = trainer.push_to_hub(dataset_name="tiny-sentiment")
    pushed = hub.files("org/py-student")
    assert url.endswith(hub.repos["org/py-student"].branches["main"])
    assert {"model.safetensors", "transfer_state.safetensors", "scales.png", "README.md"} <= set(pushed)
    assert not any(p.startswith("checkpoint-") or p == "training_args.bin" for p in pushed)
    assert not [p for p, content in pushed.items() if TOKEN.encode() in content]
    assert "`tiny-sentiment`" in pushed["README.md"].decode()


def test_features_pushed_to_a_dataset_repo_train_elsewhere_with_their_provenance(hub, teacher_dirs, student_dir,
                                                                                 csv_data, tmp_path, capsys):
    features = tmp_path / "features"
    hub.fail_once("POST", "/api/datasets/org/rt-features/commit")
    assert main(["features", "--teachers", *map(str, teacher_dirs), "--dataset_name", str(csv_data),
                 "--output_dir", str(features), "--push_to_hub", "--hub_model_id", "org/rt-features"]) == 2
    one_error_line(capsys, "push to 'org/rt-features' failed", f"hf-aft push {features} --hub_model_id")
    assert main(["push", str(features), "--hub_model_id", "org/rt-features"]) == 0  # the retry the error names
    assert "teachers.json" in hub.files("datasets/org/rt-features")

    out = tmp_path / "student"
    with mock.patch("hf_aft.teachers.TextTeacher.load", side_effect=AssertionError("a teacher was loaded")):
        train(student_dir, "org/rt-features", out)
    summary = json.loads((out / "transfer_summary.json").read_text())
    stored = json.loads((features / "teachers.json").read_text())["teachers"]
    assert [(t["revision"], t["dim"]) for t in summary["teachers"]] == [(t["revision"], t["dim"]) for t in stored]

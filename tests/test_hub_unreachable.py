"""A machine that cannot reach the Hub (air-gapped, on-prem) and was never told so (no HF_HUB_OFFLINE): Hub ids come
from the local cache at once, or are refused at once in one line naming the unreachable Hub, never after
huggingface_hub's 30-50 s of retries. The Hub is the loopback emulation (tests/hub_server.py), then stopped: its
port refuses connections as an unreachable Hub does."""

import datasets
import huggingface_hub
import pytest
import tiny
from hub_server import FakeHub

from hf_aft.commands import main
from hf_aft.hub_reach import unreachable_because

PORT = int(huggingface_hub.constants.ENDPOINT.rsplit(":", 1)[1])


@pytest.fixture
def online(monkeypatch):
    """Offline mode off as on a user's machine (conftest turns it on), restored after the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)
    unreachable_because.cache_clear()
    yield
    unreachable_because.cache_clear()


def train_args(student: str, data: str, out, *extra: str) -> list[str]:
    return ["train", "--model_name_or_path", student, "--dataset_name", data, "--output_dir", str(out),
            "--per_device_train_batch_size", "8", "--max_steps", "2", "--report_to", "none", "--disable_tqdm", "true",
            "--use_cpu", "true", *(extra or ("--transfer", "none"))]


def test_a_cached_hub_student_trains_at_once_and_says_where_it_came_from(online, student_dir, tmp_path, capsys,
                                                                          caplog):
    data = tmp_path / "data"
    datasets.DatasetDict(train=tiny.sentiment_dataset(16), test=tiny.sentiment_dataset(8, seed=1)).save_to_disk(data)
    with FakeHub(PORT) as hub:
        hub.create_repo("org/student")
        hub.commit("org/student", {p.name: p.read_bytes() for p in student_dir.iterdir() if p.is_file()}, "student")
        assert main(train_args("org/student", str(data), tmp_path / "first")) == 0  # online: cached on the way
    unreachable_because.cache_clear()
    capsys.readouterr()
    assert main(train_args("org/student", str(data), tmp_path / "second")) == 0
    said = capsys.readouterr().err + caplog.text
    assert "Retrying" not in said and "thrown while requesting" not in said, said
    assert f"hf-aft: student org/student read from the local cache: the Hub is unreachable (127.0.0.1:{PORT}:" in said
    assert "teacher org/student" not in said  # the student's commit is resolved as the student's
    assert (tmp_path / "second" / "config.json").exists()


@pytest.mark.parametrize("option, name, says", [
    ("--dataset_name", "org/absent-data", "could not load dataset 'org/absent-data': the Hub is unreachable"),
    ("--dataset_name", "absent", "could not load dataset 'absent': the Hub is unreachable"),
    ("--model_name_or_path", "org/absent-student", "could not load the student 'org/absent-student': not a local "
     "folder (check the path), and from the Hub: the Hub is unreachable"),
    ("--teachers", "org/absent-teacher", "could not resolve teacher 'org/absent-teacher': not a local folder, and "
     "the Hub is unreachable"),
])
def test_a_hub_id_not_in_the_cache_is_one_line_naming_the_unreachable_hub(online, option, name, says, student_dir,
                                                                          tmp_path, capsys, caplog):
    data = tmp_path / "data"
    datasets.DatasetDict(train=tiny.sentiment_dataset(16), test=tiny.sentiment_dataset(8, seed=1)).save_to_disk(data)
    sources = {"--model_name_or_path": str(student_dir), "--dataset_name": str(data), option: name}
    teachers = ("--teachers", sources["--teachers"]) if option == "--teachers" else ()
    argv = train_args(sources["--model_name_or_path"], sources["--dataset_name"], tmp_path / "out", *teachers)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Retrying" not in err + caplog.text and "thrown while requesting" not in err + caplog.text, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("hf-aft: error:")]
    assert len(errors) == 1 and says in errors[0] and f"127.0.0.1:{PORT}" in errors[0], err
    assert not (tmp_path / "out").exists()


def test_check_updates_refuses_to_answer_from_the_cache(online, student_dir, teacher_dirs, tmp_path, capsys,
                                                       monkeypatch):
    """The cache knows only the commit downloaded here: "unchanged" from it would hide a teacher that moved."""
    data = tmp_path / "data"
    datasets.DatasetDict(train=tiny.sentiment_dataset(16), test=tiny.sentiment_dataset(8, seed=1)).save_to_disk(data)
    out = tmp_path / "run"
    with FakeHub(PORT) as hub:
        hub.create_repo("org/teacher")
        hub.commit("org/teacher", {p.name: p.read_bytes() for p in teacher_dirs[0].iterdir() if p.is_file()}, "a")
        assert main(train_args(str(student_dir), str(data), out, "--teachers", "org/teacher")) == 0
    unreachable_because.cache_clear()
    capsys.readouterr()
    assert main(["check-updates", str(out)]) == 2
    err = capsys.readouterr().err
    refusal = ("hf-aft: error: cannot check teacher 'org/teacher' for updates: the Hub is unreachable "
               f"(127.0.0.1:{PORT}:")
    assert refusal in err and "nothing changed" not in err, err
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # told to work offline
    unreachable_because.cache_clear()
    assert main(["check-updates", str(out)]) == 2
    assert "offline mode is on (HF_HUB_OFFLINE)" in capsys.readouterr().err


@pytest.mark.parametrize("offline", [False, True], ids=["unreachable", "offline-mode"])
def test_push_to_hub_that_cannot_be_reached_is_refused_before_any_work(online, offline, student_dir, teacher_dirs,
                                                                       tmp_path, capsys, monkeypatch):
    """Training (or extraction) would run to the end and only then find that nothing can be published."""
    if offline:
        monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    data = tmp_path / "data"
    datasets.DatasetDict(train=tiny.sentiment_dataset(16), test=tiny.sentiment_dataset(8, seed=1)).save_to_disk(data)
    why = "offline mode is on (HF_HUB_OFFLINE)" if offline else f"the Hub is unreachable (127.0.0.1:{PORT}:"
    commands = {"train": train_args(str(student_dir), str(data), tmp_path / "run", "--push_to_hub", "true",
                                    "--hub_model_id", "org/s"),
                "features": ["features", "--dataset_name", str(data), "--teachers", str(teacher_dirs[0]),
                             "--output_dir", str(tmp_path / "feats"), "--push_to_hub", "--hub_model_id", "org/f"]}
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("hf-aft: error:")]
        assert len(errors) == 1 and "--push_to_hub cannot push to 'org/" in errors[0] and why in errors[0], err
        assert "hf-aft push" in errors[0], errors[0]
    assert not (tmp_path / "run").exists() and not (tmp_path / "feats").exists()  # nothing trained or extracted


def test_python_trainer_with_push_to_hub_is_refused_at_once_when_the_hub_cannot_be_reached(online, student_dir,
                                                                                          tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_aft import AFTConfig, AFTError, AFTTrainer

    args = AFTConfig(output_dir=str(tmp_path / "out"), transfer="none", use_cpu=True, report_to="none",
                     push_to_hub=True, hub_model_id="org/s")
    with pytest.raises(AFTError, match="the Hub is unreachable .*push_run"):
        AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir), args=args,
                   train_dataset=tiny.sentiment_dataset(8).map(AutoTokenizer.from_pretrained(student_dir),
                                                               input_columns="text"))


def test_hf_aft_push_to_a_hub_that_cannot_be_reached_says_so(online, student_dir, tmp_path, capsys):
    data = tmp_path / "data"
    datasets.DatasetDict(train=tiny.sentiment_dataset(16), test=tiny.sentiment_dataset(8, seed=1)).save_to_disk(data)
    assert main(train_args(str(student_dir), str(data), tmp_path / "run")) == 0
    capsys.readouterr()
    assert main(["push", str(tmp_path / "run"), "--hub_model_id", "org/s"]) == 2
    err = capsys.readouterr().err
    assert (f"push to 'org/s' failed: the Hub is unreachable (127.0.0.1:{PORT}:" in err
            and f"run `hf-aft push {tmp_path / 'run'} --hub_model_id org/s` where the Hub can be reached" in err), err

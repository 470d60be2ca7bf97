"""check-updates and audit against the loopback Hub emulation (tests/hub_server.py): a teacher followed at `main`
gets a new commit; the pushed run carries recipe.yaml and audit.json and is audited and checked by its Hub id. This
checks the Hub API contract as the installed client uses it, not huggingface.co itself."""

import hashlib
import json
from pathlib import Path

import tiny
from test_hub import TOKEN, folder_files, hub  # noqa: F401  (the Hub emulation fixture)

from hf_aft.commands import main


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.file_digest(open(p, "rb"), "sha256").hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_check_updates_follows_a_hub_branch_and_retrains(hub, teacher_dirs, student_dir, tmp_path, capsys):  # noqa: F811
    data = tmp_path / "data"
    for split, n, seed in (("train", 32, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(data / f"{split}.csv") if data.mkdir(exist_ok=True) is None else 0
    hub.create_repo("org/teacher")
    first = hub.commit("org/teacher", folder_files(teacher_dirs[0]), "teacher a")
    old, new = tmp_path / "old", tmp_path / "new"
    assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--output_dir",
                 str(old), "--teachers", "org/teacher", "--per_device_train_batch_size", "8", "--max_steps", "2",
                 "--report_to", "none", "--use_cpu", "true", "--skip_cost_report", "true", "--push_to_hub", "true",
                 "--hub_model_id", "org/student", "--hub_token", TOKEN]) == 0
    assert f"org/teacher@{first}" in (old / "recipe.yaml").read_text()
    record = json.loads((old / "audit.json").read_text())
    assert record["teachers"][0]["weight_files"]["model.safetensors"] == digests(teacher_dirs[0])["model.safetensors"]
    pushed = hub.files("org/student")
    assert {"recipe.yaml", "audit.json"} <= set(pushed) and TOKEN.encode() not in pushed["recipe.yaml"]
    capsys.readouterr()

    assert main(["audit", "org/student"]) == 0  # the pushed files match the record
    assert main(["check-updates", "org/student"]) == 0
    assert "(unchanged)" in capsys.readouterr().out

    second = hub.commit("org/teacher", folder_files(teacher_dirs[1]), "teacher b")  # main moves on
    before = digests(old)
    assert main(["check-updates", str(old), "--retrain", str(new)]) == 1
    assert f"{first} -> {second}" in capsys.readouterr().out
    assert digests(old) == before
    assert f"org/teacher@{second}" in (new / "recipe.yaml").read_text()
    report = json.loads((new / "update_report.json").read_text())
    assert report["teachers"][0]["new"] == second and 0 <= report["agreement"] <= 1
    assert "## History" in (new / "README.md").read_text()
    assert json.loads((new / "audit.json").read_text())["teachers"][0]["requested_revision"] is None
    assert main(["check-updates", str(new)]) == 0  # still following main, now at the new commit
    assert main(["audit", str(new)]) == 0

    assert main(["push", str(old), "--hub_model_id", "org/other"]) == 0  # the card is rendered for another repo
    assert main(["audit", str(old)]) == 0 and main(["audit", "org/other"]) == 0

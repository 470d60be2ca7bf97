"""Every subcommand parses the same way: HfArgumentParser dataclasses, `--config FILE.yaml` with flags overriding
it, choices from `Literal` types, one-line errors (with the closest flag for a typo), and the chain of causes kept
for `HF_AFT_DEBUG=1`."""

import json
import os
import subprocess
import sys

import pytest
import tiny
import yaml

from hf_aft.commands import main


@pytest.fixture(scope="module")
def saved_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "ds"
    tiny.sentiment_dataset(24).train_test_split(test_size=8, seed=0).save_to_disk(folder)
    return folder


def test_yaml_config_works_for_features_and_rank_teachers(saved_data, teacher_dirs, tmp_path, capsys):
    config = tmp_path / "features.yaml"
    config.write_text(yaml.safe_dump({"teachers": [str(teacher_dirs[0])], "dataset_name": str(saved_data),
                                      "teacher_pooling": "cls", "splits": ["train", "test"]}))
    assert main(["features", "--config", str(config), "--output_dir", str(tmp_path / "f")]) == 0
    stored = json.loads((tmp_path / "f" / "teachers.json").read_text())
    assert stored["teachers"][0]["pooling"] == "cls" and stored["splits"] == ["train", "test"]
    assert main(["features", "--config", str(config), "--output_dir", str(tmp_path / "g")]) == 0
    assert "(cache)" in capsys.readouterr().out  # the second run computed nothing

    ranking = tmp_path / "rank.yaml"
    ranking.write_text(yaml.safe_dump({"teachers": [str(t) for t in teacher_dirs], "dataset_name": str(saved_data),
                                       "folds": 2, "output_file": str(tmp_path / "r.json")}))
    assert main(["rank-teachers", "--config", str(ranking), "--folds", "3"]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["folds"] == 3  # the flag overrides the file


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--lerning_rate", "1"], "did you mean --learning_rate?"),
    (["features", "--teacher_poolin", "cls"], "did you mean --teacher_pooling?"),
    (["rank-teachers", "--teachers", "x", "--dataset_name", "d", "--teacher_pooling", "max"],
     "unknown teacher_pooling 'max': choose one of auto, mean, cls, pooler, last"),
    (["push", "out", "--hub_model_id"], "--hub_model_id"),
])
def test_every_subcommand_gives_one_line(argv, fragment, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-aft: error:") and fragment in err[0], err


def test_debug_shows_the_chain_of_causes(tmp_path):
    env = {**os.environ, "HF_AFT_DEBUG": "1"}
    bad = tmp_path / "data.jsonl"
    bad.write_text('{"text": "good", "label": 1}\n{not json\n')  # datasets' own error, wrapped in an AFTError
    result = subprocess.run([sys.executable, "-m", "hf_aft", "train", "--model_name_or_path", str(tmp_path),
                             "--dataset_name", str(bad), "--output_dir", str(tmp_path / "o")], capture_output=True,
                            text=True, env=env, timeout=120)
    assert "Traceback" in result.stderr and "AFTError" in result.stderr
    assert "direct cause of the following exception" in result.stderr

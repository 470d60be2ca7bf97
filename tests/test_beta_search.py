"""--beta auto: candidates on a held-out validation split (beta 0 = STL among them), the choice in the output dir and
the card, and the one-line errors."""

import json
from unittest import mock

import pytest
import tiny
import torch
import yaml

from hf_aft import AFTTrainer
from hf_aft.beta_search import DEFAULT_GRID, split_validation
from hf_aft.commands import main
from hf_aft.commands.train import parse_train_args


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    tiny.sentiment_dataset(48).to_csv(path)
    return path


def args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            str(teacher_dirs[0]), "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps", "1",
            "--learning_rate", "1e-2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", *extra]


def test_beta_auto_trains_every_candidate_then_the_chosen_beta(teacher_dirs, train_csv, tmp_path, capsys):
    # A checkpoint with 3 labels for a 2-label task: the head is new, randomly initialised for each run.
    student_dir = tiny.save_student(tmp_path / "student", num_labels=3)
    heads, init = [], AFTTrainer.__init__

    def recording_init(self, model=None, **kwargs):
        heads.append(model.classifier.weight.detach().clone())
        init(self, model=model, **kwargs)

    out = tmp_path / "out"
    with mock.patch.object(AFTTrainer, "__init__", recording_init):
        assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction",
                         "0.5", "--save_strategy", "no")) == 0
    assert len(heads) == len(DEFAULT_GRID) + 1  # the final run starts from the candidates' initial student
    assert all(torch.equal(head, heads[0]) for head in heads)
    assert "--beta auto: chose beta" in capsys.readouterr().out
    search = json.loads((out / "beta_search.json").read_text())
    assert [c["beta"] for c in search["candidates"]] == list(DEFAULT_GRID) and search["grid"][0] == 0.0
    assert (search["n_train"], search["n_validation"]) == (24, 24)
    best = max(c["score"] for c in search["candidates"])
    assert search["chosen_beta"] == min(c["beta"] for c in search["candidates"] if c["score"] == best)
    assert json.loads((out / "transfer_summary.json").read_text())["beta"] == search["chosen_beta"]
    card = (out / "README.md").read_text()
    assert "Choosing beta" in card and f"| {search['chosen_beta']} (chosen) |" in card
    assert not [p for p in out.iterdir() if p.is_dir()]  # the candidates leave nothing behind


def test_validation_split_is_stratified_disjoint_and_refused_when_too_small():
    data = tiny.sentiment_dataset(48).rename_column("label", "labels")
    train, validation = split_validation(data, 0.5, seed=0)
    assert len(train) + len(validation) == 48 and not set(train["text"]) & set(validation["text"])
    assert sorted(validation["labels"]).count(0) == sorted(validation["labels"]).count(1) == 12
    with pytest.raises(ValueError, match=r"would hold 8 examples .* at least 20 .* fixed --beta"):
        split_validation(data, 0.15, seed=0)


def test_beta_auto_bad_input_is_one_line(student_dir, teacher_dirs, train_csv, tmp_path, capsys):
    def fails(argv, fragment):
        assert main(argv) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
        assert len(errors) == 1 and fragment in errors[0], errors

    fails(args(student_dir, teacher_dirs, train_csv, tmp_path / "a", "--beta", "auto"), "validation split")
    fails(args(student_dir, teacher_dirs, train_csv, tmp_path / "b", "--beta=auto", "--transfer", "none"),
          "use --transfer aft")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_beta_auto_in_a_yaml_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model_name_or_path": "s", "dataset_name": "d", "output_dir": "o",
                                      "beta": "auto"}))
    script_args, config, _ = parse_train_args(["--config", str(recipe)])
    assert script_args.beta_auto and config.beta == 0.1
    script_args, config, _ = parse_train_args(["--config", str(recipe), "--beta", "0.5"])
    assert script_args.beta_auto  # the recipe's auto stays; a fixed --beta on the command line does not undo it

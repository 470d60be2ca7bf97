"""--beta auto: candidates on a held-out validation split (beta 0 = STL among them, winning ties and noise), pruned by
successive halving within 1x the final run's steps, stalled candidates pruned, the choice printed, in the output dir
and the card, and the one-line errors."""

import json
from unittest import mock

import datasets
import numpy as np
import pytest
import tiny
import torch
import yaml

from hf_aft import AFTTrainer, beta_search
from hf_aft.beta_search import SEARCH_ORDER, choose_beta, split_validation
from hf_aft.callbacks import StallDetector
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


def test_beta_auto_prunes_within_one_run_then_trains_the_chosen_beta(teacher_dirs, train_csv, tmp_path, capsys,
                                                                      monkeypatch):
    monkeypatch.setattr(beta_search, "_on_plateau", lambda records: False)  # the tiny student often stays there
    # A checkpoint with 3 labels for a 2-label task: the head is new, randomly initialised for each run.
    student_dir = tiny.save_student(tmp_path / "student", num_labels=3)
    heads, init = [], AFTTrainer.__init__

    def recording_init(self, model=None, **kwargs):
        heads.append(model.classifier.weight.detach().clone())
        init(self, model=model, **kwargs)

    out = tmp_path / "out"
    with mock.patch.object(AFTTrainer, "__init__", recording_init):
        assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction",
                         "0.5", "--max_steps", "24")) == 0
    search = json.loads((out / "beta_search.json").read_text())
    run = [c for c in search["candidates"] if not c["status"].startswith("not run")]
    assert len(heads) == len(run) + 1  # the final run starts from the candidates' initial student
    assert all(torch.equal(head, heads[0]) for head in heads)
    assert [c["beta"] for c in search["candidates"]][: len(run)] == list(SEARCH_ORDER)[: len(run)]
    assert [(c["beta"], c["status"]) for c in run[:2]] == [(0.1, "finished"), (0.0, "finished")]
    assert 10.0 in search["grid"] and search["default_beta"] == 0.1
    assert (search["n_train"], search["n_validation"]) == (24, 24)
    budget = search["budget"]
    assert budget["final_run_steps"] == 24 and budget["trial_max_steps"] == 6 and budget["rung_step"] == 2
    assert budget["candidate_steps"] == sum(c["steps"] for c in search["candidates"]) and budget["ratio"] <= 1.0
    line = f"beta = {search['chosen_beta']:g} (chosen by --beta auto: "
    assert line in capsys.readouterr().out
    assert json.loads((out / "transfer_summary.json").read_text())["beta"] == search["chosen_beta"]
    card = (out / "README.md").read_text()
    assert line in card and "Choosing beta" in card and f"| {search['chosen_beta']} (chosen) |" in card
    assert not [p for p in out.iterdir() if p.is_dir()]  # the candidates leave nothing behind


def test_never_more_than_one_run_even_when_nothing_is_pruned(teacher_dirs, student_dir, train_csv, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(beta_search, "_on_plateau", lambda records: False)
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)  # nothing stops early but the budget
    with mock.patch("optuna.trial.Trial.should_prune", return_value=False):
        assert main(args(student_dir, teacher_dirs, train_csv, tmp_path / "out", "--beta", "auto",
                         "--beta_validation_fraction", "0.5", "--max_steps", "24")) == 0
    search = json.loads((tmp_path / "out" / "beta_search.json").read_text())
    assert search["budget"]["candidate_steps"] <= 24 and search["candidates"][0]["status"] == "finished"
    assert {c["status"] for c in search["candidates"]} & {"stopped: budget spent", "not run: budget spent"}


def test_a_search_on_the_plateau_stops_after_the_default_and_plain_fine_tuning(teacher_dirs, student_dir,
                                                                              train_csv, tmp_path, capsys):
    out = tmp_path / "out"
    with mock.patch.object(beta_search, "_predictions", lambda trainer, validation: (np.ones(24, bool), np.zeros(24),
                                                                                     0.69)):
        assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction",
                         "0.5", "--max_steps", "24")) == 0
    search = json.loads((out / "beta_search.json").read_text())
    assert [c["status"] for c in search["candidates"]] == ["finished"] * 2 + ["not run: on plateau"] * 4
    assert search["chosen_beta"] == 0.1 and search["budget"]["ratio"] == 0.5
    assert "beta = 0.1 (chosen by --beta auto: the default; the candidates' short runs ended on the student's " \
        "initial plateau" in capsys.readouterr().out


def record(beta, correct):
    correct = np.asarray(correct, dtype=bool)
    return {"beta": beta, "score": float(correct.mean()), "correct": correct}


def test_the_default_wins_ties_and_noise_and_loses_only_to_a_clear_gain():
    default = [1] * 60 + [0] * 40
    tie = record(0.3, [0] * 5 + [1] * 55 + [1] * 5 + [0] * 35)  # 5 wins, 5 losses: same accuracy
    noise = record(1.0, [1] * 58 + [0] * 2 + [1] * 4 + [0] * 36)  # 4 wins, 2 losses: 2 < sqrt(6)
    assert choose_beta([record(0.1, default), tie, noise])[0] == 0.1
    assert noise["wins_vs_default"] == 4 and noise["losses_vs_default"] == 2 and not noise["beats_default"]
    clear = record(3.0, [1] * 60 + [1] * 8 + [0] * 32)  # 8 wins, 0 losses: 8 > sqrt(8)
    beta, why = choose_beta([record(0.1, default), tie, noise, clear])
    assert beta == 3.0 and "0.68 vs 0.60 for the default 0.1" in why
    pruned = {"beta": 10.0, "score": None}
    assert choose_beta([record(0.1, default), pruned])[0] == 0.1


def test_an_accuracy_tie_goes_to_the_lower_validation_loss():
    default = [1] * 60 + [0] * 40
    better = [1] * 70 + [0] * 30  # 10 wins, 0 losses against the default
    tied = [record(0.3, better) | {"loss": 0.9}, record(1.0, better) | {"loss": 0.7}]
    assert choose_beta([record(0.1, default), *tied])[0] == 1.0
    tied[1]["loss"] = 1.1
    assert choose_beta([record(0.1, default), *tied])[0] == 0.3


def test_plain_fine_tuning_wins_when_the_default_clearly_hurts():
    default = [1] * 50 + [0] * 50
    stl = record(0.0, [1] * 50 + [1] * 10 + [0] * 40)  # 10 wins, 0 losses against the default
    beta, why = choose_beta([record(0.1, default), stl, record(1.0, default)])
    assert beta == 0.0 and "0.60 vs 0.50 for the default 0.1" in why


def test_the_incumbent_is_the_configs_default():
    from hf_aft import AFTConfig

    assert SEARCH_ORDER[:2] == (AFTConfig(output_dir="o").beta, 0.0) == (beta_search.DEFAULT_BETA, 0.0)


def test_a_stalled_candidate_is_pruned_and_warned_about(teacher_dirs, student_dir, tmp_path, caplog, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_aft import AFTConfig, search_beta

    monkeypatch.setattr(beta_search, "SEARCH_ORDER", (0.1, 1e4))
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = tiny.sentiment_dataset(48).rename_column("label", "labels")
    data = data.map(lambda b: tokenizer(b["text"]), batched=True)
    config = AFTConfig(output_dir=str(tmp_path / "o"), teachers=[str(teacher_dirs[0])], max_steps=40,
                       per_device_train_batch_size=8, learning_rate=1e-3, report_to="none", disable_tqdm=True,
                       use_cpu=True)
    with caplog.at_level("WARNING"):
        result = search_beta(lambda: AutoModelForSequenceClassification.from_pretrained(student_dir), config, data,
                             0.5, processing_class=tokenizer)
    stalled = result["candidates"][1]
    assert stalled["status"] == "stalled" and stalled["steps"] == 3 and result["chosen_beta"] == 0.1
    assert not [r for r in caplog.records if "at half of training" in r.getMessage()]  # candidates: early check only
    warnings = [r.getMessage() for r in caplog.records if "stalled at step 3:" in r.getMessage()]
    assert len(warnings) == 1 and "try a smaller --beta" in warnings[0]


def test_validation_split_is_stratified_disjoint_and_refused_when_too_small():
    data = tiny.sentiment_dataset(48).rename_column("label", "labels")
    train, validation = split_validation(data, 0.5, seed=0)
    assert len(train) + len(validation) == 48 and not set(train["text"]) & set(validation["text"])
    assert sorted(validation["labels"]).count(0) == sorted(validation["labels"]).count(1) == 12
    with pytest.raises(ValueError, match=r"would hold 8 examples .* at least 20 .* fixed --beta"):
        split_validation(data, 0.15, seed=0)
    rare = datasets.Dataset.from_dict({"labels": [0] * 90 + [1] * 5 + [2] * 3})  # 20% of 5 and of 3 rounds to 1
    train, validation = split_validation(rare, 0.2, seed=0)
    assert sorted(validation["labels"]).count(1) == 2 and sorted(validation["labels"]).count(2) == 2
    assert sorted(train["labels"]).count(2) == 1  # every class keeps a training example


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
    assert not script_args.beta_auto and config.beta == 0.5  # the command line's fixed --beta wins over the recipe
    script_args, config, _ = parse_train_args(["--config", str(recipe), "--beta=0.3"])
    assert not script_args.beta_auto and config.beta == 0.3


def test_the_beta_a_fixed_run_used_is_said_in_one_line():
    from hf_aft import AFTConfig
    from hf_aft.card import beta_note

    assert beta_note(AFTConfig(output_dir="o")) == "beta = 0.1 (the default; --beta auto chooses it on held-out data)"
    assert beta_note(AFTConfig(output_dir="o", beta=1)).startswith("beta = 1 (set with --beta;")
    assert beta_note(AFTConfig(output_dir="o", transfer="none")).startswith("beta: not used")


def test_a_search_whose_short_runs_stay_on_the_plateau_stops_and_keeps_the_default():
    majority = [1] * 57 + [0] * 43
    ends = [dict(record(0.1, majority), predicted_classes=1), dict(record(0.0, majority), predicted_classes=1)]
    assert beta_search._on_plateau(ends)
    beta, why = choose_beta(ends)
    assert beta == 0.1 and "initial plateau" in why and "2 of 6 candidates trained to the end" in why
    ends[1]["predicted_classes"] = 2  # plain fine-tuning left the plateau: the search goes on
    assert not beta_search._on_plateau(ends)


def test_the_stall_detector_warns_late_when_the_task_loss_never_leaves_the_prior(caplog):
    def detector(task_losses, beta, transfer=0.1, late_window=0.5):
        trainer = mock.Mock(train_dataset=None)
        found = StallDetector(trainer, late_window=late_window)
        found.prior_entropy = 0.683  # 57% / 43% labels
        state, args = mock.Mock(max_steps=100), mock.Mock(beta=beta)
        for step, task in enumerate(task_losses, start=1):
            trainer.latest_loss_terms.return_value = (task, transfer)
            state.global_step = step
            found.on_step_end(args, state, None)
        return found

    with caplog.at_level("WARNING"):
        # beta = 1 on a pretrained text student: small weighted transfer, the task loss at the prior all along.
        assert detector([0.69] * 60, beta=1.0).stalled_at == 50
        # Plain fine-tuning and beta = 0.1 sit on the same plateau for 40% of the steps, then leave it.
        assert detector([0.69] * 40 + [0.55] * 20, beta=0.1).stalled_at is None
        assert detector([0.69] * 60, beta=0.0).stalled_at is None  # no transfer term: nothing to blame
        assert detector([0.69] * 60, beta=0.1).stalled_at is None  # 0.01 against 0.69: too small to hold it
        # --beta auto's candidates run the early check only (a short run need not have left the prior by half-way).
        assert detector([0.69] * 60, beta=1.0, late_window=None).stalled_at is None
    warnings = [r.getMessage() for r in caplog.records if "stalled at step 50:" in r.getMessage()]
    assert len(warnings) == 1 and "at half of training" in warnings[0] and "e.g. 0.1" in warnings[0]

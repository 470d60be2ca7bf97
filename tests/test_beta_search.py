"""--beta auto: candidates on a held-out validation split (beta 0 = STL among them), halved at 1/8 and 1/2 of the final
run's schedule, the largest beta within one standard error of the best chosen and continued as the final run (1x on
top of it), the plateau and stalled candidates, the choice printed, in the output dir and the card, the errors."""

import json
import re
from unittest import mock

import datasets
import numpy as np
import pytest
import tiny
import torch
import yaml

from hf_aft import AFTTrainer, beta_choice, beta_search
from hf_aft.beta_choice import choose_beta
from hf_aft.beta_search import SEARCH_ORDER, split_validation
from hf_aft.callbacks import StallDetector
from hf_aft.commands import main
from hf_aft.commands.train import parse_train_args

TEACHER_RUNS = "hf_aft.training_rows.with_word_or_teacher_features"  # the path hf-aft train's teachers run by


@pytest.fixture(scope="module")
def train_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    tiny.sentiment_dataset(48).to_csv(path)
    return path


def args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            str(teacher_dirs[0]), "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps", "1",
            "--learning_rate", "1e-2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", *extra]


def test_beta_auto_halves_the_candidates_and_continues_the_chosen_one(teacher_dirs, train_csv, tmp_path, capsys,
                                                                     monkeypatch):
    # The tiny student often stays on its plateau: every candidate scores the same, off it (two classes predicted).
    monkeypatch.setattr(beta_search, "score_candidate", _scores_by_rung(majority_until=0))
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)  # every candidate reaches rung 1
    # A checkpoint with 3 labels for a 2-label task: the head is new, randomly initialised for each run.
    student_dir = tiny.save_student(tmp_path / "student", num_labels=3)
    heads, resumed, init, train = [], [], AFTTrainer.__init__, AFTTrainer.train

    def recording_init(self, model=None, **kwargs):
        heads.append(model.classifier.weight.detach().clone())
        init(self, model=model, **kwargs)

    def recording_train(self, resume_from_checkpoint=None, **kwargs):
        resumed.append(resume_from_checkpoint)
        return train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    out = tmp_path / "out"
    with mock.patch.object(AFTTrainer, "__init__", recording_init), \
            mock.patch.object(AFTTrainer, "train", recording_train):
        assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction",
                         "0.5", "--max_steps", "24")) == 0
    search = json.loads((out / "beta_search.json").read_text())
    assert all(torch.equal(head, heads[0]) for head in heads)  # every run starts from the same student
    assert [c["beta"] for c in search["candidates"]] == list(SEARCH_ORDER) and 10.0 in search["grid"]
    statuses = [c["status"] for c in search["candidates"]]
    assert sorted(statuses) == ["at rung 2"] * 2 + ["stopped at rung 1"] * 4 and not search["plateau"]
    assert all(c["rung_score"] is not None for c in search["candidates"])
    # All tied at rung 1: the leader (ties: the smaller beta, 0) and the next stronger transfer (0.1) go on; tied
    # again at rung 2: the larger is chosen.
    assert [c["beta"] for c in search["candidates"] if c["status"] == "at rung 2"] == [0.1, 0.0]
    assert search["chosen_beta"] == 0.1
    assert (search["n_train"], search["n_validation"]) == (24, 24)
    budget = search["budget"]
    assert budget["rung_steps"] == [3, 12] and budget["final_run_steps"] == 24
    assert budget["candidate_steps"] == sum(c["steps"] for c in search["candidates"]) == 6 * 3 + 2 * 9
    assert budget["continued_steps"] == 12 and budget["extra"] == 1.0  # one run's steps on top of the final run
    # 6 candidates to rung 1, the 2 promoted resumed to rung 2, then the final run resumes the chosen one.
    chosen = search["chosen_beta"]
    assert resumed[:6] == [None] * 6 and all(path.endswith("checkpoint-3") for path in resumed[6:8])
    assert len(resumed) == 9 and resumed[-1].endswith(f"beta-{chosen:g}/checkpoint-12")
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 24
    line = f"beta = {chosen:g} (chosen by --beta auto: "
    assert line in capsys.readouterr().out
    assert json.loads((out / "transfer_summary.json").read_text())["beta"] == chosen
    card = (out / "README.md").read_text()
    assert line in card and "Choosing beta" in card and f"| {chosen:g} (chosen) |" in card
    assert f"beta = {chosen:g} was chosen on" in card
    assert not [p for p in out.iterdir() if p.is_dir()]  # the candidates' checkpoints are gone


def _scores_by_rung(majority_until: int):
    """A `score_candidate` stand-in: one class for every validation example up to step `majority_until`, then two."""
    def score(trainer, validation):
        classes = 1 if trainer.state.global_step <= majority_until else 2
        return {"score": 0.5, "example_scores": np.r_[np.ones(12, bool), np.zeros(12, bool)],
                "predicted_classes": classes, "above_majority": classes > 1, "loss": 0.69}
    return score


def test_from_the_plateau_at_rung_1_the_default_plain_fine_tuning_and_the_next_beta_go_to_half_of_training(
        teacher_dirs, student_dir, train_csv, tmp_path, monkeypatch):
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)
    monkeypatch.setattr(beta_search, "score_candidate", _scores_by_rung(majority_until=3))
    compared = []  # what transformers compares on every resume, warning when they differ

    def compare(args, state):
        compared.append((args.logging_steps, state.logging_steps))

    out = tmp_path / "out"
    with mock.patch("transformers.trainer.compare_trainer_and_checkpoint_args", side_effect=compare):
        assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction",
                         "0.5", "--max_steps", "24", "--logging_steps", "0.25")) == 0
    # The default and plain fine-tuning resumed at rung 1 and the final run at rung 2, each with the logging steps the
    # checkpoint stores (6 of 24), not 0.25: transformers would warn of a mismatch that is not one.
    assert compared == [(6, 6)] * 3
    search = json.loads((out / "beta_search.json").read_text())
    assert [(c["beta"], c["status"], c["steps"]) for c in search["candidates"][:3]] == \
        [(0.1, "at rung 2", 12), (0.0, "at rung 2", 12), (0.3, "at rung 2", 12)]
    assert [c["status"] for c in search["candidates"][3:]] == ["not run: on plateau at rung 1"] * 3
    # All tied: the largest beta within one standard error of the best, continued as the final run.
    assert search["plateau"] == "rung 1" and search["chosen_beta"] == 0.3
    assert search["budget"]["continued_steps"] == 12 and search["budget"]["extra"] == 1.0
    # Its first 12 steps trained without the held-out rows: the recipe says a rerun of it trains another student.
    assert ("# this run's final run continued the chosen --beta auto candidate from step 12"
            in (out / "recipe.yaml").read_text())


def test_still_on_the_plateau_at_half_of_training_the_default_is_trained_from_the_start(
        teacher_dirs, student_dir, train_csv, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)
    monkeypatch.setattr(beta_search, "score_candidate", _scores_by_rung(majority_until=24))
    resumed, train = [], AFTTrainer.train

    def recording_train(self, resume_from_checkpoint=None, **kwargs):
        resumed.append(resume_from_checkpoint)
        return train(self, resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    out = tmp_path / "out"
    with mock.patch.object(AFTTrainer, "train", recording_train):
        assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction",
                         "0.5", "--max_steps", "24")) == 0
    search = json.loads((out / "beta_search.json").read_text())
    assert [(c["status"], c["steps"]) for c in search["candidates"][:2]] == [("at rung 2", 12)] * 2
    assert [c["status"] for c in search["candidates"][2:]] == ["not run: on plateau at half of training"] * 4
    assert search["plateau"] == "rung 2" and search["chosen_beta"] == 0.1 and search["budget"]["extra"] == 1.0
    assert search["budget"]["continued_steps"] == 0 and resumed[-1] is None  # the final run starts from step 0
    assert "final run continued" not in (out / "recipe.yaml").read_text()  # its recipe reruns it
    printed = capsys.readouterr().out
    assert "beta = 0.1 (chosen by --beta auto: the default, kept; at half of training no candidate was better " \
        "than always predicting the most frequent class" in printed
    assert "--beta auto: the final run, beta 0.1, on all 48 training examples, starts from step 0" in printed
    card = (out / "README.md").read_text()  # the card says the default was kept, not chosen among candidates
    assert "| 0.1 (kept: the default) | at rung 2 |" in card and "No candidate could be compared" in card
    assert "beta = 0.1 was kept, the default, after a search on" in card and "| 0 | at rung 2 |" in card
    assert search["kept_default"]


def record(beta, correct, loss=0.5):
    correct = np.asarray(correct, dtype=bool)
    return {"beta": beta, "status": "at rung 2", "score": float(correct.mean()), "example_scores": correct,
            "loss": loss, "predicted_classes": 2, "above_majority": True}


def test_the_largest_beta_within_one_standard_error_of_the_best_is_chosen():
    best = [1] * 60 + [0] * 40
    tie = record(0.3, [0] * 5 + [1] * 55 + [1] * 5 + [0] * 35)  # 5 wins, 5 losses against the best
    noise = record(1.0, [1] * 56 + [0] * 4 + [1] * 2 + [0] * 38)  # 2 wins, 4 losses: 2 <= sqrt(6)
    beta, why, _ = choose_beta([record(0.1, best), tie, noise])
    assert beta == 1.0 and noise["within_one_se"] and (noise["wins_vs_best"], noise["losses_vs_best"]) == (2, 4)
    assert "validation accuracy 0.58 at half of training, within one standard error of the best, 0.60" in why
    worse = record(3.0, [1] * 52 + [0] * 8 + [0] * 40)  # 0 wins, 8 losses: 8 > sqrt(8)
    assert choose_beta([record(0.1, best), tie, noise, worse])[0] == 1.0 and not worse["within_one_se"]
    stopped = {"beta": 10.0, "status": "stopped at rung 1", "score": 0.9}  # not compared at rung 2
    majority = dict(record(10.0, [1] * 59 + [0] * 41), above_majority=False)  # within one SE, but learned nothing
    beta, why, _ = choose_beta([record(0.1, best), majority])
    assert beta == 0.1 and why.endswith("the largest such beta among 0.1 (10: no better than the most frequent class)")
    stl_best = record(0.0, best)  # named once, as the best, not again as plain fine-tuning
    why = choose_beta([stl_best, noise])[1]
    assert "the best, 0.60 (beta 0)" in why and "plain fine-tuning" not in why
    assert choose_beta([record(0.1, best), stopped])[0] == 0.1


def test_an_accuracy_tie_for_the_best_goes_to_the_lower_validation_loss():
    same = [1] * 60 + [0] * 40
    clearly_worse = record(3.0, [1] * 45 + [0] * 55, loss=0.1)
    # 3 is more than one standard error behind the best: with 1 as the best (lower loss), 3 is still out.
    assert choose_beta([record(0.3, same, loss=0.9), record(1.0, same, loss=0.7), clearly_worse])[0] == 1.0
    assert choose_beta([record(0.1, same, loss=0.9), record(0.0, same, loss=0.7)])[0] == 0.1  # within: larger beta


def test_plain_fine_tuning_wins_when_every_transfer_clearly_hurts():
    hurt = [1] * 50 + [0] * 50
    stl = record(0.0, [1] * 50 + [1] * 10 + [0] * 40)  # 10 wins, 0 losses against the others
    beta, why, _ = choose_beta([record(0.1, hurt), stl, record(1.0, hurt)])
    assert beta == 0.0 and "validation accuracy 0.60 at half of training, the best" in why


def test_the_default_stays_when_nothing_left_the_plateau_or_reached_half_of_training():
    majority = [1] * 57 + [0] * 43
    ends = [dict(record(0.1, majority), above_majority=False), dict(record(0.3, majority), above_majority=False)]
    beta, why, chosen = choose_beta(ends)
    assert beta == 0.1 and "initial plateau" in why and chosen is None  # the final run starts from the beginning
    stalled = {"beta": 0.1, "status": "stalled", "score": None, "steps": 20}
    beta, why, chosen = choose_beta([stalled, dict(record(0.0, majority), above_majority=False)])
    assert (beta, chosen) == (0.1, None) and "stalled: beta 0.1 at step 20" in why  # kept, and says it stalled
    assert choose_beta([{**stalled, "beta": 0.3}])[:1] == (0.1,)


def test_a_candidate_at_chance_is_on_the_plateau_however_many_classes_it_predicts():
    from transformers.trainer_utils import PredictionOutput

    labels = np.r_[np.arange(10).repeat(18), [0] * 20]  # 200 digits, class 0 the most frequent (20%)

    def scored(predicted):
        logits = np.eye(10, dtype=np.float32)[predicted] * 5
        trainer = mock.Mock(predict=lambda _: PredictionOutput(logits, labels, {}))
        return beta_choice.score_candidate(trainer, None)

    rng = np.random.default_rng(0)
    at_chance = scored(rng.integers(0, 10, len(labels)))  # ten classes predicted, accuracy about 10%
    assert at_chance["predicted_classes"] == 10 and not at_chance["above_majority"]
    assert not scored(np.zeros(len(labels), int))["above_majority"]  # the most frequent class, always: 20%
    learning = np.where(rng.random(len(labels)) < 0.35, labels, rng.integers(0, 10, len(labels)))  # about 40%
    assert scored(learning)["above_majority"]
    assert not beta_choice.on_plateau([scored(learning), at_chance]) and beta_choice.on_plateau([at_chance])


def test_the_search_starts_from_the_configs_default_then_plain_fine_tuning():
    from hf_aft import AFTConfig

    assert SEARCH_ORDER[:2] == (AFTConfig(output_dir="o").beta, 0.0) == (beta_search.DEFAULT_BETA, 0.0)
    assert beta_search.rung_steps(189) == (23, 94) and beta_search.rung_steps(4) == (2, 3)


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
    # Stopped at rung 1 (step 5 of 40), where its early check falls, with nothing kept; the default goes on.
    assert stalled["status"] == "stalled" and stalled["steps"] == 5 and stalled["score"] is None
    assert result["chosen_beta"] == 0.1 and result["candidates"][0]["status"] == "at rung 2"
    assert result["checkpoint"] is None and not (tmp_path / "o").exists()  # no checkpoint_dir: nothing left
    warnings = [r.getMessage() for r in caplog.records if "stalled at step 5:" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].endswith("--beta auto drops the candidate beta = 10000.")  # not advice


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

    with mock.patch(TEACHER_RUNS, side_effect=AssertionError("a teacher ran")):
        fails(args(student_dir, teacher_dirs, train_csv, tmp_path / "a", "--beta", "auto"), "validation split")
        fails(args(student_dir, teacher_dirs, train_csv, tmp_path / "c", "--beta", "auto",
                   "--beta_validation_fraction", "0.5", "--max_steps", "3"), "it needs at least 4 (this run has 3)")
    fails(args(student_dir, teacher_dirs, train_csv, tmp_path / "b", "--beta=auto", "--transfer", "none"),
          "use --transfer aft")
    fails(args(student_dir, teacher_dirs, train_csv, tmp_path / "d", "--beta", "auto", "--resume_from_checkpoint",
               str(tmp_path)), "--beta auto cannot resume a run")
    assert not [p for p in tmp_path.iterdir() if p.name in "abcd" and any(p.iterdir())]


def three_splits(folder, validation_rows=24):
    folder.mkdir()
    for split, n, seed in (("train", 32, 0), ("validation", validation_rows, 1), ("test", 16, 2)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(folder / f"{split}.csv")
    return folder


def test_beta_auto_chooses_on_the_datasets_validation_split(student_dir, teacher_dirs, tmp_path, capsys,
                                                           monkeypatch):
    scored, score = [], _scores_by_rung(majority_until=0)
    monkeypatch.setattr(beta_search, "score_candidate", lambda trainer, validation: scored.append(
        (len(trainer.train_dataset), len(validation))) or score(trainer, validation))
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)
    out = tmp_path / "out"
    assert main(args(student_dir, teacher_dirs, three_splits(tmp_path / "data"), out, "--beta", "auto",
                     "--max_steps", "8")) == 0
    assert "--beta auto compares candidates on the 'validation' split" in capsys.readouterr().out
    assert set(scored) == {(32, 24)}  # every candidate trains on all of train and is scored on validation
    search = json.loads((out / "beta_search.json").read_text())
    assert search["validation_given"] and search["validation_split"] == "validation"
    assert (search["n_train"], search["n_validation"], search["budget"]["final_run_steps"]) == (32, 24, 8)
    card = (out / "README.md").read_text()
    assert "chosen on the dataset's `validation` split (24 examples)" in card
    assert "On the `test` split (16 examples)" in card  # the result is reported on data the choice never saw


def test_a_validation_split_that_cannot_choose_beta_is_refused(student_dir, teacher_dirs, tmp_path, capsys):
    data, small = three_splits(tmp_path / "data"), three_splits(tmp_path / "small", validation_rows=10)
    for name, dataset, extra, fragment in (
            ("a", data, ["--beta_validation_split", "test"], "'test' is the evaluation split"),
            ("b", data, ["--beta_validation_split", "train"], "'train' is the training split"),
            ("c", data, ["--beta_validation_split", "dev"], "split 'dev' not found"),
            ("d", small, [], "the validation split 'validation' holds 10 examples")):
        with mock.patch(TEACHER_RUNS, side_effect=AssertionError("a teacher ran")):
            assert main(args(student_dir, teacher_dirs, dataset, tmp_path / name, "--beta", "auto", *extra)) == 2
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hf-aft: error:")]
        assert len(errors) == 1 and fragment in errors[0], errors
        assert not (tmp_path / name).exists() or not any((tmp_path / name).iterdir())


def test_which_split_beta_is_chosen_on():
    from hf_aft.validation_split import validation_split_name

    empty = datasets.Dataset.from_dict({"label": [0]})
    three = datasets.DatasetDict(train=empty, valid=empty, test=empty)
    assert validation_split_name(three, "train", "test", None) == "valid"
    assert validation_split_name(three, "train", "test", "none") is None  # hold out part of train instead
    assert validation_split_name(three, "train", "valid", None) is None  # never the split the result is reported on
    assert validation_split_name(datasets.DatasetDict(train=empty, test=empty), "train", "test", None) is None


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
    assert beta_note(AFTConfig(output_dir="o", beta=1)).startswith("beta = 1 (set with --beta or in --config;")
    assert beta_note(AFTConfig(output_dir="o", transfer="none")).startswith("beta: not used")


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
        # late_window=None: the early check only.
        assert detector([0.69] * 60, beta=1.0, late_window=None).stalled_at is None
    warnings = [r.getMessage() for r in caplog.records if "stalled at step 50:" in r.getMessage()]
    assert len(warnings) == 1 and "at half of training" in warnings[0] and "e.g. 0.1" in warnings[0]


def test_the_stall_warning_is_a_line_of_its_own_above_the_progress_bar(capsys):
    from tqdm.auto import tqdm

    trainer = mock.Mock(train_dataset=None)
    trainer.latest_loss_terms.return_value = (0.69, 1.0)  # the transfer term dominates: the early check
    detector = StallDetector(trainer)
    detector.prior_entropy = 0.683
    state, args = mock.Mock(max_steps=100), mock.Mock(beta=1.0)
    bar = tqdm(total=100)  # as the Trainer's, on stderr
    for step in range(1, 60):
        state.global_step = step
        bar.update(1)
        detector.on_step_end(args, state, None)
    bar.close()
    err = capsys.readouterr().err
    assert detector.stalled_at is not None and "it/s]stalled at step" not in err  # not glued to the bar's line
    assert any(line.startswith("stalled at step 30:") for line in re.split(r"[\r\n]", err))  # the bar cleared first


def test_a_lora_student_continues_the_chosen_candidates_adapter(teacher_dirs, student_dir, train_csv, tmp_path,
                                                               monkeypatch):
    from peft import AutoPeftModelForSequenceClassification

    monkeypatch.setattr(beta_search, "score_candidate", _scores_by_rung(majority_until=0))
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)

    out = tmp_path / "out"
    assert main(args(student_dir, teacher_dirs, train_csv, out, "--beta", "auto", "--beta_validation_fraction", "0.5",
                     "--max_steps", "16", "--use_peft", "--lora_r", "4", "--lora_target_modules", "query")) == 0
    search = json.loads((out / "beta_search.json").read_text())
    assert search["budget"]["continued_steps"] == 8 and search["budget"]["extra"] <= 1.0
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 16
    assert not (out / "model.safetensors").exists() and not (out / "beta_search_runs").exists()
    AutoPeftModelForSequenceClassification.from_pretrained(out)


def test_rung_1_promotes_the_leader_and_the_next_stronger_transfer_still_in_the_race():
    records = [record(0.1, [1] * 40 + [0] * 60), record(0.0, [1] * 38 + [0] * 62), record(0.3, [1] * 39 + [0] * 61),
               record(1.0, [1] * 20 + [0] * 80), record(3.0, [1] * 15 + [0] * 85),
               {"beta": 10.0, "status": "stalled", "score": None}]
    # 0.3 is behind the leader at rung 1 but still learning: the next stronger transfer goes on, not the runner-up 0.
    assert [r["beta"] for r in beta_search.promotions(records)] == [0.1, 0.3]
    records[2]["above_majority"] = False  # 0.3 still on the plateau: a slow start, the challenger all the same
    assert [r["beta"] for r in beta_search.promotions(records)] == [0.1, 0.3]
    records[2] = {"beta": 0.3, "status": "stalled", "score": None}  # 0.3 stalled: the next one up, 1
    assert [r["beta"] for r in beta_search.promotions(records)] == [0.1, 1.0]
    top = [record(3.0, [1] * 40 + [0] * 60), record(1.0, [1] * 30 + [0] * 70), record(0.1, [1] * 35 + [0] * 65)]
    assert [r["beta"] for r in beta_search.promotions(top)] == [3.0, 0.1]  # nothing stronger: the runner-up


def test_the_python_api_reads_a_label_column_and_keeps_only_the_chosen_checkpoint(teacher_dirs, student_dir,
                                                                                   tmp_path, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hf_aft import AFTConfig, search_beta

    monkeypatch.setattr(beta_search, "score_candidate", _scores_by_rung(majority_until=0))
    monkeypatch.setattr(StallDetector, "check", lambda *args, **kwargs: False)
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = tiny.sentiment_dataset(48).map(lambda b: tokenizer(b["text"]), batched=True)  # a `label` column
    config = AFTConfig(output_dir=str(tmp_path / "o"), teachers=[str(teacher_dirs[0])], max_steps=16,
                       per_device_train_batch_size=8, report_to="none", disable_tqdm=True, use_cpu=True)
    result = search_beta(lambda: AutoModelForSequenceClassification.from_pretrained(student_dir), config, data, 0.5,
                         checkpoint_dir=str(tmp_path / "runs"), processing_class=tokenizer)
    kept = [p.name for p in (tmp_path / "runs").iterdir()]
    assert result["checkpoint"].endswith(f"beta-{result['chosen_beta']:g}/checkpoint-8") and kept == [
        f"beta-{result['chosen_beta']:g}"]
    with pytest.raises(ValueError, match="lacks .* pass label_column="):
        search_beta(lambda: None, config, data.rename_column("label", "y"), 0.5)


def test_search_beta_refuses_a_model_for_model_init_and_a_datasetdict(tmp_path):
    # a model instance failed inside BERT ("You must specify exactly one of input_ids or inputs_embeds")
    from transformers import BertForSequenceClassification

    from hf_aft import AFTConfig, AFTError, search_beta

    data = datasets.Dataset.from_dict({"input_ids": [[2, 5, 3]] * 8, "label": [0, 1] * 4})
    args = AFTConfig(output_dir=str(tmp_path), max_steps=4, use_cpu=True, report_to="none")
    with pytest.raises(AFTError, match="takes model_init, a function returning a fresh student .* not "
                                       "BertForSequenceClassification"):
        search_beta(BertForSequenceClassification(tiny.bert_config(16)), args, data)
    with pytest.raises(AFTError, match="not the class BertForSequenceClassification"):  # a class needs its config
        search_beta(BertForSequenceClassification, args, data)
    with pytest.raises(AFTError, match="train_dataset must be a datasets.Dataset, not DatasetDict: give one split"):
        search_beta(lambda: None, args, datasets.DatasetDict(train=data))

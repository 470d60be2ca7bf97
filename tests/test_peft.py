"""PEFT students: a LoRA student trains only its adapter and head, the transfer loss sees the adapted model's
features, and the output dir reloads with peft's AutoPeftModelForSequenceClassification."""

import pytest
import tiny
import torch
from peft import AutoPeftModelForSequenceClassification, LoraConfig, get_peft_model
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hf_aft import AFTConfig, AFTError, AFTTrainer, extract_teacher_features


@pytest.fixture(scope="module")
def train_set(teacher_dirs, student_dir, tmp_path_factory):
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    data = extract_teacher_features(tiny.sentiment_dataset(32), [str(teacher_dirs[0])],
                                    cache_dir=tmp_path_factory.mktemp("cache"))
    return data.map(lambda b: tokenizer(b["text"]), batched=True)


def lora_trainer(student_dir, out, train_set, peft_config=None, model=None):
    args = AFTConfig(output_dir=str(out), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-2, beta=1.0,
                     save_strategy="no", report_to="none", seed=0, disable_tqdm=True, use_cpu=True)
    model = model or AutoModelForSequenceClassification.from_pretrained(student_dir)
    return AFTTrainer(model=model, args=args, train_dataset=train_set, peft_config=peft_config,
                      processing_class=AutoTokenizer.from_pretrained(student_dir))


def test_lora_student_trains_adapter_and_head_only_and_reloads_with_peft(student_dir, tmp_path, train_set):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"])
    trainer = lora_trainer(student_dir, tmp_path / "out", train_set, config)
    assert config.task_type is None  # the caller's config is left alone
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = trainer.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora_B" in k for k in changed) and any("modules_to_save.default" in k for k in changed)
    assert all("lora_" in k or "modules_to_save" in k for k in changed), changed - {k for k in changed if "lora" in k}
    base = AutoModelForSequenceClassification.from_pretrained(student_dir).state_dict()
    frozen = {k.replace("base_model.model.", "").replace(".base_layer", "").replace(".original_module", ""): v
              for k, v in after.items() if "lora_" not in k and "modules_to_save" not in k}
    assert set(frozen) == set(base) and all(torch.equal(frozen[k], base[k]) for k in base)  # base weights untouched

    # The features the transfer loss sees are the adapted model's: LoRA'd encoder, trained head copy.
    model = trainer.model.eval()
    batch = AutoTokenizer.from_pretrained(student_dir)(train_set["text"][:6], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
        features = trainer.feature_capture.pop()
        pooled = model.base_model.model.bert(**batch).pooler_output
        with model.disable_adapter():
            plain = model.base_model.model.bert(**batch).pooler_output
    torch.testing.assert_close(features, pooled)
    assert not torch.allclose(features, plain, atol=1e-4)
    head = model.base_model.model.classifier.modules_to_save["default"]
    torch.testing.assert_close(logits, head(features))

    trainer.save_model()
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").exists() and (out / "transfer_state.safetensors").exists()
    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, logits)


def test_peft_config_with_an_already_wrapped_student_is_refused(student_dir, tmp_path, train_set):
    config = LoraConfig(r=2, target_modules=["query"], task_type="SEQ_CLS")
    wrapped = get_peft_model(AutoModelForSequenceClassification.from_pretrained(student_dir), config)
    with pytest.raises(AFTError, match="already a PeftModel"):
        lora_trainer(student_dir, tmp_path, train_set, config, model=wrapped)
    trainer = lora_trainer(student_dir, tmp_path, train_set, model=wrapped)  # a PeftModel alone is fine
    assert trainer.feature_capture.name.endswith("modules_to_save.default")


def test_cli_use_peft_writes_an_adapter_with_head_and_scales(student_dir, teacher_dirs, tmp_path, capsys):
    import json

    from hf_aft.commands import main

    data = tmp_path / "train.csv"
    tiny.sentiment_dataset(24).map(lambda row: {"label": ["bad", "good"][row["label"]]}).to_csv(data)
    out = tmp_path / "out"
    assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
                 str(teacher_dirs[0]), "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps",
                 "2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--use_peft", "--lora_r",
                 "4", "--lora_alpha", "8", "--lora_target_modules", "query", "key"]) == 0
    assert "trainable parameters" in capsys.readouterr().out
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert (adapter["r"], adapter["lora_alpha"], sorted(adapter["target_modules"])) == (4, 8, ["key", "query"])
    assert not (out / "model.safetensors").exists() and (out / "transfer_state.safetensors").exists()
    card = (out / "README.md").read_text()
    assert "AutoPeftModelForSequenceClassification" in card
    # the adapter's files do not hold the class names: the card's loading line passes them (else LABEL_0, LABEL_1)
    line = next(x for x in card.splitlines() if "AutoPeftModelForSequenceClassification.from_pretrained(" in x)
    kwargs = eval("dict(" + line.split('"', 2)[2].lstrip(", ").rstrip(")") + ")")
    reloaded = AutoPeftModelForSequenceClassification.from_pretrained(out, **kwargs)
    assert [reloaded.config.id2label[i] for i in range(2)] == ["bad", "good"]
    assert AutoPeftModelForSequenceClassification.from_pretrained(out).config.id2label[0] == "LABEL_0"  # why


def test_a_relative_student_path_is_saved_absolute_and_targets_peft_cannot_wrap_are_one_line(student_dir, tmp_path,
                                                                                              monkeypatch):
    """adapter_config.json kept the base as typed ("student"): the adapter loaded only from the directory it was
    trained in (or, elsewhere, from another folder of that name); a target peft cannot find was a traceback."""
    from hf_aft.student_peft import wrap_peft

    monkeypatch.chdir(student_dir.parent)
    model = AutoModelForSequenceClassification.from_pretrained(student_dir.name, num_labels=2)
    wrapped = wrap_peft(model, LoraConfig(r=2, target_modules=["query"]))
    assert wrapped.peft_config["default"].base_model_name_or_path == str(student_dir)
    model = AutoModelForSequenceClassification.from_pretrained(student_dir.name, num_labels=2)
    with pytest.raises(AFTError, match=r"peft cannot apply LoraConfig to the student \(BertForSequenceClassification"
                                       r"\): .*--lora_target_modules"):
        wrap_peft(model, LoraConfig(r=2, target_modules=["no_such_layer"]))


def test_lora_options_without_use_peft_are_refused_not_ignored(student_dir, teacher_dirs, tmp_path, capsys):
    """--lora_r 4 alone trained all of the student's weights, without a word."""
    from hf_aft.commands import main

    data = tiny.save_sentiment_files(tmp_path / "data") / "labelled"
    assert main(["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
                 str(teacher_dirs[0]), "--output_dir", str(tmp_path / "out"), "--max_steps", "1", "--report_to",
                 "none", "--use_cpu", "true", "--lora_r", "4", "--lora_target_modules", "query"]) == 2
    line = tiny.error_line(capsys)
    assert "--lora_r, --lora_target_modules shape a LoRA adapter, which only --use_peft trains" in line, line
    assert not (tmp_path / "out").exists()


def test_a_peft_checkpoint_resumed_with_other_lora_options_is_refused_naming_them(student_dir, teacher_dirs, tmp_path,
                                                                                  capsys):
    """Another --lora_alpha was accepted silently (the adapter's scaling changed mid-run); another rank failed in
    peft's words, blamed on the checkpoint."""
    from hf_aft.commands import main

    data = tiny.save_sentiment_files(tmp_path / "data") / "labelled"
    out = tmp_path / "out"
    base = ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            str(teacher_dirs[0]), "--output_dir", str(out), "--per_device_train_batch_size", "4", "--report_to",
            "none", "--use_cpu", "true", "--save_strategy", "steps", "--save_steps", "2", "--use_peft",
            "--lora_r", "2", "--lora_target_modules", "query"]
    assert main(base + ["--max_steps", "2", "--lora_alpha", "8"]) == 0
    resume = base + ["--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-2")]
    for other in (["--lora_alpha", "16"], ["--lora_alpha", "8", "--lora_r", "4"]):
        capsys.readouterr()
        assert main(resume + other) == 2
        line = tiny.error_line(capsys)
        assert "cannot resume from" in line and "it was saved by a run with --lora_" in line, line
        assert "--lora_alpha 8" in line or "--lora_r 2" in line, line
    assert main(resume + ["--lora_alpha", "8"]) == 0

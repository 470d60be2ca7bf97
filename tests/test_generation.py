"""Generated texts (`--generate_texts N --generator ID`): what a user without unlabelled data relies on.

- the generator writes new texts (none equal to a labelled or eval text, none twice), the same seed the same texts,
  cached so that a rerun loads no generator;
- the texts join the run as unlabelled rows: the task loss never reads them, the probe's targets do, and the
  summary, the printed terms and the card name the generator and its revision;
- what cannot generate (images, no generator, a generator that is not a language model) is refused in one line,
  before any teacher runs.
"""

from __future__ import annotations

import json
import re
import shutil

import datasets
import pytest
import tiny
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer, GPT2Config, GPT2LMHeadModel

from hf_aft import AFTConfig, AFTError, AFTTrainer, generation
from hf_aft.card import terms_note
from hf_aft.commands import main
from hf_aft.unlabeled import UNLABELED

ERROR = "hf-aft: error:"


def save_generator(folder, seed: int = 0):
    """A tiny random GPT-2 language model over the tiny datasets' words."""
    torch.manual_seed(seed)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny.WORDS) + 2, n_embd=12, n_layer=1, n_head=2, n_positions=128,
                               bos_token_id=1, eos_token_id=1)).save_pretrained(folder)
    tiny.word_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    return save_generator(tmp_path_factory.mktemp("generator"))


def test_generated_texts_are_new_deterministic_and_cached(generator_dir, tmp_path, monkeypatch):
    texts = tiny.sentiment_dataset(12, seed=0)["text"]
    held_out = tiny.sentiment_dataset(8, seed=1)["text"]
    state = torch.get_rng_state()
    made, revision = generation.generated_texts(str(generator_dir), texts, 10, 0, held_out, cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), state)  # the run's own random state: the same with or without a cache
    assert len(made) == 10 == len(set(made)) and not set(made) & {*texts, *held_out}
    assert all(len(text.split()) >= generation.MIN_WORDS and "\n" not in text for text in made)
    assert revision.startswith("local-")

    def no_load(*args, **kwargs):
        raise AssertionError("the generator was loaded again")

    monkeypatch.setattr(generation, "load_generator", no_load)
    assert generation.generated_texts(str(generator_dir), texts, 10, 0, held_out, cache_dir=tmp_path) == (made,
                                                                                                           revision)
    monkeypatch.undo()
    other, _ = generation.generated_texts(str(generator_dir), texts, 10, 1, held_out, cache_dir=tmp_path)
    assert other != made  # another seed is another cache entry and other texts


def test_an_interrupted_generation_goes_on_from_its_texts_and_writes_the_same(generator_dir, tmp_path,
                                                                                monkeypatch):
    """Texts were stored only once all were written: an interrupt an hour into `--generate_texts` lost them all. The
    texts so far are kept after each batch; the interrupt line says so, and a rerun goes on from them to the very
    texts an uninterrupted run writes."""
    from hf_aft import faults

    texts, held_out = tiny.sentiment_dataset(12, seed=0)["text"], tiny.sentiment_dataset(8, seed=1)["text"]
    count = 2 * generation.BATCH + 5  # three batches at least
    whole, _ = generation.generated_texts(str(generator_dir), texts, count, 0, held_out, cache_dir=tmp_path / "a")
    calls, original = [], generation._continue

    def stop_at_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(generation, "_continue", stop_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        generation.generated_texts(str(generator_dir), texts, count, 0, held_out, cache_dir=tmp_path / "b")
    line = faults.interrupted_line(KeyboardInterrupt())
    kept = len(json.loads(next((tmp_path / "b").glob("*.progress.json")).read_text())["texts"])
    faults.kept.clear()
    assert 0 < kept < count and f"the {kept} of {count} generated texts written so far in" in line
    assert "a rerun goes on from them" in line and "not kept" not in line
    monkeypatch.undo()
    resumed, _ = generation.generated_texts(str(generator_dir), texts, count, 0, held_out, cache_dir=tmp_path / "b")
    assert resumed == whole and not list((tmp_path / "b").glob("*.progress.json"))


def test_texts_that_cannot_be_kept_as_written_are_said_lost(monkeypatch, tmp_path):
    """A cache that cannot take the progress file (read-only, full): generation goes on and an interrupt says the
    texts written so far are not kept."""
    from hf_aft import faults

    calls = []

    def write_then_stop(model, tokenizer, prompts, room, ends, samples=1, sample=True):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return [f"a new text of enough words number {i}" for i in range(len(prompts) * samples)]

    def cannot_write(path, text):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(generation, "_continue", write_then_stop)
    monkeypatch.setattr(generation, "line_ends", lambda tokenizer: [])
    monkeypatch.setattr(generation, "write_atomically", cannot_write)
    with pytest.raises(KeyboardInterrupt):
        generation._sample_texts(None, None, ["one text", "two texts"], 1000, 0, set(), None,
                                 tmp_path / "x.progress.json")
    line = faults.interrupted_line(KeyboardInterrupt())
    faults.lost.clear()
    assert f"not kept: the {generation.BATCH} of 1,000 generated texts written so far" in line
    assert "a rerun writes them again" in line


@pytest.fixture(scope="module")
def labelled(student_dir):
    tokenizer = AutoTokenizer.from_pretrained(student_dir)
    return tiny.sentiment_dataset(24, seed=0).map(lambda b: tokenizer(b["text"]), batched=True)


def test_generated_texts_join_the_run_as_unlabelled_rows(student_dir, teacher_dirs, generator_dir, tmp_path,
                                                         labelled):
    args = AFTConfig(output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=2, save_strategy="no",
                     report_to="none", seed=0, disable_tqdm=True, use_cpu=True, transfer="none",
                     teachers=[str(d) for d in teacher_dirs], generate_texts=16, generator=str(generator_dir))
    trainer = AFTTrainer(model=AutoModelForSequenceClassification.from_pretrained(student_dir), args=args,
                         train_dataset=labelled, processing_class=AutoTokenizer.from_pretrained(student_dir))
    rows, data = trainer.rows, trainer.train_dataset
    assert trainer.distill == "probe"  # --distill auto: generated texts turn the probe on, as unlabelled rows do
    assert rows.n_generated == rows.n_unlabeled == len(data) - 24 == 16 and rows.n_augmented == 0
    made = data.select(range(24, len(data)))
    assert set(made["labels"]) == {UNLABELED}  # the task loss never reads a generated text
    assert all(len(ids) <= max(map(len, labelled["input_ids"])) for ids in made["input_ids"])
    assert all(t is not None for t in made["distill_targets"])
    trainer.train()
    terms = trainer.terms_summary()
    assert terms["generated_rows"] == 16 and terms["generator"] == str(generator_dir)
    assert terms["generator_revision"].startswith("local-")
    assert f"16 unlabelled rows, 16 of them written by {generator_dir}" in terms_note(terms)


def cli_args(student_dir, teacher_dirs, data, out, *extra):
    return ["train", "--model_name_or_path", str(student_dir), "--dataset_name", str(data), "--teachers",
            *map(str, teacher_dirs), "--output_dir", str(out), "--per_device_train_batch_size", "8", "--max_steps",
            "2", "--report_to", "none", "--disable_tqdm", "true", "--use_cpu", "true", "--skip_cost_report", "true",
            *extra]


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith(ERROR)]
    assert len(lines) == 1, lines
    return lines[0]


def test_train_with_generated_texts_names_the_generator_and_follows_it(student_dir, teacher_dirs, tmp_path, capsys):
    data, generator = tmp_path / "data", save_generator(tmp_path / "generator")
    for split, n, seed in (("train", 24, 0), ("test", 16, 1)):
        tiny.sentiment_dataset(n, seed=seed).to_csv(data / f"{split}.csv")
    out, new = tmp_path / "out", tmp_path / "new"
    assert main(cli_args(student_dir, teacher_dirs, data, out, "--generate_texts", "12", "--augment_copies", "1",
                         "--generator", str(generator))) == 0
    summary = json.loads((out / "transfer_summary.json").read_text())
    assert summary["generated_rows"] == 12 and summary["unlabeled_rows"] == 12 + summary["augmented_rows"]
    assert f"of them written by {generator}" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert f"12 of them texts written by the generator `{generator}` at revision `local-" in card
    recipe_text = (out / "recipe.yaml").read_text()
    assert f"# generator {generator}: revision local-" in recipe_text
    recipe = yaml.safe_load(recipe_text)  # a rerun generates the same texts (from the cache)
    assert recipe["generate_texts"] == 12 and recipe["generator"] == str(generator)
    (model,) = json.loads((out / "audit.json").read_text())["other_models"]  # what the student was made from
    assert model["role"] == "generator" and model["resolved_revision"] == summary["generator_revision"]
    assert "model.safetensors" in model["weight_files"]
    capsys.readouterr()
    assert main(["audit", str(out)]) == 0 and f"generator             {generator} requested" in capsys.readouterr().out

    assert main(["check-updates", str(out)]) == 0 and f"generator {generator}: " in capsys.readouterr().out
    save_generator(generator, seed=1)  # new weights, same folder: the texts it writes change
    assert main(["check-updates", str(out), "--retrain", str(new)]) == 1
    assert f"generator {generator}: {summary['generator_revision']} -> local-" in capsys.readouterr().out
    report = json.loads((new / "update_report.json").read_text())
    assert report["other_models"][0]["changed"] and not report["teachers"][0]["changed"]
    assert json.loads((new / "transfer_summary.json").read_text())["generator_revision"] == report["other_models"][0][
        "new"]
    assert f"- generator `{generator}`: `{summary['generator_revision']}`" in (new / "README.md").read_text()
    assert main(["check-updates", str(new)]) == 0  # the new run was made from the new generator
    shutil.rmtree(generator)  # gone: one line that names the generator, not a teacher or the Hub's repo-id rules
    capsys.readouterr()
    assert main(["check-updates", str(new)]) == 2
    assert one_error_line(capsys).startswith(f"hf-aft: error: generator '{generator}' is gone from {generator}, "
                                             "where the run read it: put it back there")


@pytest.mark.parametrize("extra, message", [
    (["--generate_texts", "4"], "--generate_texts needs --generator ID"),
    (["--generator", "gpt2"], "--generator is used by --generate_texts N only"),
    (["--generate_texts", "4", "--generator", "{gen}", "--transfer", "none", "--distill", "none"],
     "generate_texts with --transfer none and --distill none: no term reads"),
    (["--generate_texts", "4", "--generator", "{missing}"], "no such folder or file"),
    (["--generate_texts", "4", "--generator", "{gen}@v9"], "is a local folder: it cannot be pinned with @v9"),
    (["--generate_texts", "4", "--generator", "{bert}"], "is a 'bert' model, a masked language model"),
])
def test_generation_that_cannot_run_is_refused_before_any_teacher_runs(student_dir, teacher_dirs, generator_dir,
                                                                      tmp_path, capsys, monkeypatch, extra, message):
    import hf_aft.teachers

    def load(*args, **kwargs):
        raise AssertionError("a teacher was loaded")

    monkeypatch.setattr(hf_aft.teachers.TextTeacher, "load", load)
    data = tmp_path / "data"
    for split in ("train", "test"):
        tiny.sentiment_dataset(16, seed=0 if split == "train" else 1).to_csv(data / f"{split}.csv")
    extra = [e.format(gen=generator_dir, missing=tmp_path / "no-such-generator", bert=teacher_dirs[0]) for e in extra]
    assert main(cli_args(student_dir, teacher_dirs, data, tmp_path / "out", *extra)) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_local_model_pinned_with_a_revision_gets_the_teachers_refusal(generator_dir, teacher_dirs, tmp_path):
    """`FOLDER@v9` as a generator said "no such folder or file" though the folder exists; a generator, a GGUF
    generator and a distill teacher now get the teacher's refusal, with the way out."""
    from hf_aft.distillation import task_teacher_order

    pinned = "is a local folder: it cannot be pinned with @v9 (a local folder is pinned by its content hash"
    with pytest.raises(AFTError, match=r"^generator .* " + re.escape(pinned) + r".*: drop @v9\.$"):
        generation.resolve_generator(f"{generator_dir}@v9")
    with pytest.raises(AFTError, match="^generator .* is a local GGUF file: it cannot be pinned with @v9"):
        generation.resolve_generator(f"{generator_dir}@v9::model.gguf")  # the pin was ignored
    with pytest.raises(AFTError, match="^distill teacher .* " + re.escape(pinned)):
        task_teacher_order(f"{teacher_dirs[0]}@v9", ["neg", "pos"])
    with pytest.raises(AFTError, match="no such folder or file"):  # a missing folder is still named as missing
        generation.resolve_generator(f"{tmp_path / 'missing'}@v9")


def test_a_generator_that_is_not_a_language_model_or_images_are_refused(student_dir, generator_dir, tmp_path):
    image_model = tiny.save_image_teacher(tmp_path / "convnext", "convnext")
    texts = ["a good film indeed", "a bad film indeed"] * 3
    with pytest.raises(AFTError, match="is a 'convnext' model, not a text generator"):
        generation.generated_texts(str(image_model), texts, 4, cache_dir=tmp_path / "cache")
    config = AFTConfig(output_dir=str(tmp_path), generate_texts=4, generator=str(generator_dir))
    images = tiny.image_dataset(4)
    with pytest.raises(AFTError, match="--generate_texts writes texts, and this run's data are images"):
        generation.check_generation(images, config, image_column="image")
    with pytest.raises(AFTError, match="--generate_texts writes texts"):  # the Python API checks too
        generation.generated_rows(images, config, None, image_column="image")
    reviews = datasets.Dataset.from_dict({"review": texts})
    with pytest.raises(AFTError, match="reads the texts of 'text', which the training data lacks"):
        generation.generated_rows(reviews, config, None)
    words = datasets.Dataset.from_dict({"words": [t.split() for t in texts]})
    with pytest.raises(AFTError, match="--generate_texts reads texts, and 'words' holds List"):
        generation.check_generation(words, config, text_column="words")
    for bad in (-1, 1.5, True):
        with pytest.raises(AFTError, match="--generate_texts must be a whole number >= 0"):
            AFTConfig(output_dir=str(tmp_path), generate_texts=bad, generator="gpt2")
    with pytest.raises(AFTError, match=r"--generate_texts 100,000,000,000,000,000,000 is more than the 1,000,000 "):
        AFTConfig(output_dir=str(tmp_path), generate_texts=10**20, generator="gpt2")  # would write until stopped


@pytest.mark.parametrize("architecture", ["gpt2", "llama"])
def test_continuations_of_one_prompt_share_its_cache_and_decode_as_without_it(tmp_path, architecture):
    """Several continuations of a prompt reuse its computed prefix: greedy decoding then writes exactly what each
    prompt alone writes, with left padding between prompts of different lengths (positions, masks)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vocab = len(tiny.WORDS) + 2
    model = (GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=16, n_layer=2, n_head=2, n_positions=128))
             if architecture == "gpt2" else
             LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)))
    tokenizer = tiny.word_tokenizer()
    tokenizer.padding_side, tokenizer.pad_token = "left", tokenizer.pad_token or tokenizer.unk_token
    prompts = [generation.HEADER + "".join(f"- {t}\n" for t in tiny.sentiment_dataset(k, seed=k)["text"]) + "-"
               for k in (1, 3, 2)]
    ends = [1]
    calls = []
    original = model.generate
    model.generate = lambda **kw: calls.append(sorted(kw)) or original(**kw)
    shared = generation._continue(model.eval(), tokenizer, prompts, None, ends, samples=3, sample=False)
    assert any("cache" in kw or "past_key_values" in kw for kw in calls)  # the shared prefix, not the fallback
    alone = [text for p in prompts for text in generation._continue(model, tokenizer, [p], None, ends, sample=False)]
    assert shared == [text for text in alone for _ in range(3)] and any(shared)


@pytest.mark.parametrize("positions", [40, 96])
def test_prompts_are_cut_to_the_generator_context_or_refused(tmp_path, positions):
    # Four long labelled texts make a prompt longer than the context: it loses its start, never crashes.
    folder = tmp_path / f"gpt2-{positions}"
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tiny.WORDS) + 2, n_embd=12, n_layer=1, n_head=2, n_positions=positions,
                               bos_token_id=1, eos_token_id=1)).save_pretrained(folder)
    tiny.word_tokenizer().save_pretrained(folder)
    texts = [" ".join(tiny.sentiment_dataset(40, seed=i)["text"]) for i in range(6)]  # hundreds of words each
    if positions == 40:
        with pytest.raises(AFTError, match="takes 40 tokens, too few for a prompt"):
            generation.generated_texts(str(folder), texts, 4, cache_dir=tmp_path / "cache")
    else:
        made, _ = generation.generated_texts(str(folder), texts, 4, cache_dir=tmp_path / "cache")
        assert len(made) == 4
